// SPDX-License-Identifier: Apache-2.0
// Digest lists against the real tools: manifests written by sha256sum/sha384sum/sha512sum
// (escaped names included), signatures by `openssl dgst -sha256 -sign`, dpkg md5sums written by
// md5sum, rpm packages built by rpmbuild and signed by rpmsign with a gpg key made in a temporary
// GNUPGHOME and imported into a temporary rpm keyring with rpmkeys.
#include "appraise/digest_list.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstring>

#include "appraise_test_util.h"
#include "confine/parser.h"
#include "measure/hasher.h"

namespace nsima::appraise {
namespace {

using measure::Digest;
using measure::HashAlgo;
using namespace testing;

Digest sha256_of(std::string_view s) {
  auto d = measure::hash_bytes(HashAlgo::kSha256,
                               {reinterpret_cast<const uint8_t*>(s.data()), s.size()});
  EXPECT_TRUE(d);
  return *d;
}

class DigestListTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = new TempDir();
    rsa_ = new TestKey(make_key(dir_->path(), "rsa", "rsa:2048"));
    ec_ = new TestKey(make_key(dir_->path(), "ec", "ec -pkeyopt ec_paramgen_curve:prime256v1"));
    other_ = new TestKey(make_key(dir_->path(), "other", "ec -pkeyopt ec_paramgen_curve:prime256v1"));
  }
  static void TearDownTestSuite() {
    delete rsa_;
    delete ec_;
    delete other_;
    delete dir_;
  }
  static Keyring ring_of(std::initializer_list<const TestKey*> keys) {
    Keyring ring;
    for (const TestKey* k : keys) {
      auto key = Key::from_file(k->der);
      EXPECT_TRUE(key);
      EXPECT_TRUE(ring.add(*key));
    }
    return ring;
  }
  static TempDir* dir_;
  static TestKey *rsa_, *ec_, *other_;
};
TempDir* DigestListTest::dir_ = nullptr;
TestKey *DigestListTest::rsa_, *DigestListTest::ec_, *DigestListTest::other_;

// ------------------------------------------------------------------ manifests

TEST_F(DigestListTest, ParsesAndRewritesCoreutilsOutputByteForByte) {
  TempDir t;
  const fs::path d = t.path() / "files";
  fs::create_directories(d);
  const std::vector<std::pair<std::string, std::string>> files = {
      {"plain", "plain content"},   {"with space", "space"},  {"back\\slash", "backslash"},
      {"new\nline", "newline"},     {"car\rriage", "cr"},     {"empty", ""}};
  for (const auto& [name, content] : files) write_file(d / name, content);
  for (std::string tool : {"sha256sum", "sha384sum", "sha512sum"}) {
    for (std::string mode : {"", "-b"}) {
      std::string out = must("cd " + d.string() + " && " + tool + " " + mode + " *");
      auto m = parse_manifest(out, tool);
      ASSERT_TRUE(m) << m.error().to_string() << "\n" << out;
      ASSERT_EQ(m->entries.size(), files.size()) << out;
      for (const auto& e : m->entries) {
        auto it = std::find_if(files.begin(), files.end(),
                               [&](const auto& f) { return f.first == e.path; });
        ASSERT_NE(it, files.end()) << "unescaped name not found: " << e.path;
        auto want = measure::hash_bytes(e.digest.algo(),
                                        {reinterpret_cast<const uint8_t*>(it->second.data()),
                                         it->second.size()});
        EXPECT_EQ(e.digest, *want) << e.path;
        EXPECT_EQ(e.binary, mode == "-b");
        const HashAlgo expect = tool == "sha256sum"   ? HashAlgo::kSha256
                                : tool == "sha384sum" ? HashAlgo::kSha384
                                                      : HashAlgo::kSha512;
        EXPECT_EQ(e.digest.algo(), expect);
      }
      EXPECT_EQ(format_manifest(*m), out) << tool << " " << mode;
    }
  }
}

TEST_F(DigestListTest, ManifestErrorsNameFileAndLine) {
  const std::string good = sha256_of("x").hex() + "  /x\n";
  const std::pair<std::string, std::string> cases[] = {
      {good + std::string(40, 'a') + "  /sha1\n", "40 hex digits"},
      {good + sha256_of("y").hex() + " /y\n", "two spaces"},
      {good + sha256_of("y").hex() + "\n", "two spaces"},
      {good + "zz" + sha256_of("y").hex() + "  /y\n", "hex digest"},
      {good + "\\" + sha256_of("y").hex() + "  /a\\tb\n", "unknown escape"},
      {good + "\\" + sha256_of("y").hex() + "  /a\\\n", "lone backslash"},
      {good + "SHA256 (/y) = " + sha256_of("y").hex() + "\n", "BSD-style"},
      {good + "# comment\n", "hex digest"},
  };
  for (const auto& [text, want] : cases) {
    auto m = parse_manifest(text, "list.sha256");
    ASSERT_FALSE(m) << text;
    EXPECT_EQ(m.error().where, "list.sha256:2") << text;
    EXPECT_NE(m.error().message.find(want), std::string::npos) << m.error().message;
  }
  auto ok = parse_manifest(good + "\n" + good, "f");  // blank lines are fine
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->entries.size(), 2u);
}

TEST_F(DigestListTest, SignedManifestVerifiesWithOpensslSignatures) {
  TempDir t;
  const fs::path m = t.path() / "list.sha256";
  write_file(t.path() / "a", "aaa");
  write_file(m, must("cd " + t.path().string() + " && sha256sum a"));
  Keyring ring = ring_of({ec_, rsa_});
  for (const TestKey* k : {rsa_, ec_}) {
    must("openssl dgst -sha256 -sign " + k->key.string() + " -out " + m.string() + ".sig " +
         m.string());
    auto loaded = load_manifest(m, &ring);
    ASSERT_TRUE(loaded) << loaded.error().to_string();
    EXPECT_TRUE(loaded->is_signed);
    EXPECT_EQ(loaded->signer->keyid_hex, k->skid_tail);
    EXPECT_EQ(loaded->manifest.entries.size(), 1u);
    EXPECT_EQ(loaded->manifest.entries[0].digest, sha256_of("aaa"));
    // The same bytes, checked by openssl itself, for the record.
    const fs::path pub = t.path() / "pub.pem";
    must("openssl x509 -in " + k->pem.string() + " -pubkey -noout > " + pub.string());
    must("openssl dgst -sha256 -verify " + pub.string() + " -signature " + m.string() + ".sig " +
         m.string() + " | grep -q OK");
  }
}

TEST_F(DigestListTest, BadOrMissingManifestSignaturesAreErrorsNotUnsigned) {
  TempDir t;
  const fs::path m = t.path() / "list.sha256";
  write_file(m, sha256_of("a").hex() + "  a\n");
  Keyring ring = ring_of({rsa_});

  auto unsigned_ok = load_manifest(m, &ring);
  ASSERT_TRUE(unsigned_ok);
  EXPECT_FALSE(unsigned_ok->is_signed);
  auto required = load_manifest(m, &ring, SignaturePolicy::kRequired);
  ASSERT_FALSE(required);
  EXPECT_EQ(required.error().code, ENOENT);

  // Signed by a key the namespace does not hold.
  must("openssl dgst -sha256 -sign " + other_->key.string() + " -out " + m.string() + ".sig " +
       m.string());
  auto foreign = load_manifest(m, &ring);
  ASSERT_FALSE(foreign);
  EXPECT_EQ(foreign.error().code, EKEYREJECTED);
  EXPECT_EQ(foreign.error().where, m.string() + ".sig");

  // Signed by our key, then one byte of the manifest changed.
  must("openssl dgst -sha256 -sign " + rsa_->key.string() + " -out " + m.string() + ".sig " +
       m.string());
  ASSERT_TRUE(load_manifest(m, &ring));
  std::string text = read_file(m);
  text[3] = text[3] == '0' ? '1' : '0';
  write_file(m, text);
  auto tampered = load_manifest(m, &ring);
  ASSERT_FALSE(tampered);
  EXPECT_EQ(tampered.error().code, EKEYREJECTED);

  auto no_keys = load_manifest(m, nullptr);
  ASSERT_FALSE(no_keys);
  EXPECT_EQ(no_keys.error().code, ENOKEY);
  auto ignored = load_manifest(m, nullptr, SignaturePolicy::kIgnore);
  ASSERT_TRUE(ignored);
  EXPECT_FALSE(ignored->is_signed);
}

// ------------------------------------------------------------------ store

TEST_F(DigestListTest, StoreListsSignsRevokesAndPersists) {
  TempDir state;
  const fs::path dir = namespace_digests_dir(state.path(), 3);
  EXPECT_EQ(dir, state.path() / "ns/3/digests");
  Manifest unsigned_m, signed_m;
  for (int i = 0; i < 5; ++i)
    unsigned_m.entries.push_back({sha256_of("u" + std::to_string(i)), "/u", false});
  signed_m.entries.push_back({sha256_of("u0"), "/u0", false});  // upgrades u0
  signed_m.entries.push_back({sha256_of("s"), "/s", false});
  auto sha512 = measure::hash_bytes(HashAlgo::kSha512, std::vector<uint8_t>{1, 2, 3});
  signed_m.entries.push_back({*sha512, "/big", false});
  {
    auto store = DigestStore::open(dir);
    ASSERT_TRUE(store) << store.error().to_string();
    auto a = store->add(unsigned_m, false);
    ASSERT_TRUE(a);
    EXPECT_EQ(a->added, 5u);
    auto b = store->add(signed_m, true);
    ASSERT_TRUE(b);
    EXPECT_EQ(b->added, 2u);
    EXPECT_EQ(b->upgraded, 1u);
    auto c = store->add(signed_m, true);
    ASSERT_TRUE(c);
    EXPECT_EQ(c->already, 3u);
    auto r = store->revoke(sha256_of("u1"));
    ASSERT_TRUE(r && *r);
    r = store->revoke(sha256_of("u1"));
    ASSERT_TRUE(r);
    EXPECT_FALSE(*r);
    auto never_listed = store->revoke(sha256_of("evil"));
    ASSERT_TRUE(never_listed && *never_listed);
  }
  auto store = DigestStore::open(dir);  // a restart
  ASSERT_TRUE(store) << store.error().to_string();
  EXPECT_EQ(store->listed_count(), 7u);
  EXPECT_EQ(store->signed_count(), 3u);
  EXPECT_EQ(store->revoked_count(), 2u);
  auto l = store->lookup(sha256_of("u2"));
  EXPECT_TRUE(l.listed);
  EXPECT_FALSE(l.signed_listed);
  EXPECT_FALSE(l.revoked);
  l = store->lookup(sha256_of("u0"));
  EXPECT_TRUE(l.listed && l.signed_listed);
  l = store->lookup(*sha512);
  EXPECT_TRUE(l.listed && l.signed_listed);
  l = store->lookup(sha256_of("u1"));
  EXPECT_TRUE(l.listed && l.revoked);
  l = store->lookup(sha256_of("evil"));
  EXPECT_TRUE(l.revoked);
  EXPECT_FALSE(l.listed);
  l = store->lookup(sha256_of("nothing"));
  EXPECT_FALSE(l.listed || l.revoked);
  // Several digests of one file: revoked if any is.
  const Digest both[] = {*sha512, sha256_of("evil")};
  l = store->lookup(both);
  EXPECT_TRUE(l.revoked && l.listed);
  auto un = store->unrevoke(sha256_of("u1"));
  ASSERT_TRUE(un && *un);
  EXPECT_FALSE(store->lookup(sha256_of("u1")).revoked);

  // A corrupt store file fails to open, naming FILE:LINE.
  write_file(dir / "listed", "# header\nl sha256:abcd\n");
  auto bad = DigestStore::open(dir);
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().where, (dir / "listed").string() + ":2");
}

TEST_F(DigestListTest, StoreHandlesALargeManifest) {
  Manifest m;
  for (int i = 0; i < 50000; ++i) m.entries.push_back({sha256_of(std::to_string(i)), "/f", false});
  DigestStore store = DigestStore::in_memory();
  auto a = store.add(m, false);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->added, 50000u);
  for (int i = 0; i < 50000; i += 97) EXPECT_TRUE(store.lookup(sha256_of(std::to_string(i))).listed);
  EXPECT_FALSE(store.lookup(sha256_of("50000")).listed);
  // Adding again in another order changes nothing.
  std::reverse(m.entries.begin(), m.entries.end());
  a = store.add(m, false);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->already, 50000u);
  EXPECT_EQ(store.listed_count(), 50000u);
  // Duplicates inside one manifest count once.
  Manifest twice = m;
  twice.entries.insert(twice.entries.end(), m.entries.begin(), m.entries.end());
  twice.entries.push_back({sha256_of("new one"), "/n", false});
  twice.entries.push_back({sha256_of("new one"), "/n2", false});
  a = store.add(twice, true);
  ASSERT_TRUE(a);
  EXPECT_EQ(a->added, 1u);
  EXPECT_EQ(a->upgraded, 50000u);
  EXPECT_EQ(store.signed_count(), 50001u);
}

// ------------------------------------------------------------------ rootfs

TEST_F(DigestListTest, RootfsManifestIsSortedAndNeverLeavesTheRoot) {
  TempDir t;
  const fs::path root = t.path() / "rootfs";
  fs::create_directories(root / "usr/bin");
  fs::create_directories(root / "etc");
  write_file(root / "usr/bin/tool", "#!/bin/sh\necho tool\n");
  write_file(root / "etc/conf", "conf");
  write_file(root / "z top", "top");
  write_file(t.path() / "outside", "outside the root");
  fs::create_symlink(t.path() / "outside", root / "etc/escape");   // absolute, outside
  fs::create_symlink("../../outside", root / "usr/relative-escape");
  fs::create_symlink(t.path(), root / "dirlink");                   // a directory outside
  ASSERT_EQ(::mkfifo((root / "fifo").c_str(), 0600), 0);            // must not block
  auto g = manifest_from_rootfs(root);
  ASSERT_TRUE(g) << g.error().to_string();
  EXPECT_TRUE(g->ok()) << g->problems.size();
  std::vector<std::string> paths;
  for (const auto& e : g->manifest.entries) paths.push_back(e.path);
  EXPECT_EQ(paths, (std::vector<std::string>{"/etc/conf", "/usr/bin/tool", "/z top"}));
  // Digests as sha256sum computes them in the root.
  std::string want = must("cd " + root.string() + " && sha256sum etc/conf usr/bin/tool 'z top' | "
                          "sed 's#  #  /#'");
  EXPECT_EQ(format_manifest(g->manifest), want);
  for (const auto& e : g->manifest.entries) EXPECT_NE(e.digest, sha256_of("outside the root"));
}

// ------------------------------------------------------------------ dpkg

TEST_F(DigestListTest, DpkgChecksMd5BeforeTrustingSha256) {
  TempDir t;
  const fs::path root = t.path() / "root";
  fs::create_directories(root / "usr/bin");
  fs::create_directories(root / "usr/share/doc/pkg");
  fs::create_directories(root / "var/lib/dpkg/info");
  fs::create_symlink("usr/bin", root / "bin");  // usrmerge: bin/x resolves inside the root
  write_file(root / "usr/bin/good", "good binary");
  write_file(root / "usr/bin/merged", "merged path");
  write_file(root / "usr/share/doc/pkg/changed", "original");
  write_file(root / "usr/bin/gone", "soon gone");
  write_file(t.path() / "passwd", "host file");
  // md5sums exactly as dpkg writes them: md5sum output, paths relative to /.
  must("cd " + root.string() + " && md5sum usr/bin/good usr/share/doc/pkg/changed usr/bin/gone "
       "> var/lib/dpkg/info/pkg.md5sums && md5sum usr/bin/merged | sed 's#usr/bin#bin#' "
       "> var/lib/dpkg/info/other.md5sums");
  // The escape: an md5sums line naming a symlink that points outside the root, with the md5 of
  // its target: it must never be followed.
  fs::create_symlink(t.path() / "passwd", root / "usr/bin/evil");
  must("cd " + t.path().string() + " && printf '%s  usr/bin/evil\\n' $(md5sum < passwd | cut "
       "-c1-32) >> root/var/lib/dpkg/info/pkg.md5sums");
  write_file(root / "var/lib/dpkg/info/pkg.md5sums",
             read_file(root / "var/lib/dpkg/info/pkg.md5sums") + "not a line\n");
  write_file(root / "usr/share/doc/pkg/changed", "modified after install");
  fs::remove(root / "usr/bin/gone");

  auto g = manifest_from_dpkg(root);
  ASSERT_TRUE(g) << g.error().to_string();
  EXPECT_EQ(g->sources, 2u);
  std::map<std::string, std::string> problems;
  for (const auto& p : g->problems) problems[p.where] = p.what;
  ASSERT_EQ(g->manifest.entries.size(), 2u) << format_manifest(g->manifest);
  EXPECT_EQ(g->manifest.entries[0].path, "/bin/merged");
  EXPECT_EQ(g->manifest.entries[0].digest, sha256_of("merged path"));
  EXPECT_EQ(g->manifest.entries[1].path, "/usr/bin/good");
  EXPECT_EQ(g->manifest.entries[1].digest, sha256_of("good binary"));
  ASSERT_EQ(problems.size(), 4u);
  EXPECT_NE(problems["/usr/share/doc/pkg/changed"].find("md5 mismatch"), std::string::npos);
  EXPECT_EQ(problems["/usr/bin/gone"], "missing");
  EXPECT_TRUE(problems.count("/usr/bin/evil")) << "a symlink out of the root was followed";
  EXPECT_TRUE(problems.count((root / "var/lib/dpkg/info/pkg.md5sums").string() + ":5"));
}

// A real dpkg database: two packages built by dpkg-deb (md5sums as dh_md5sums writes them),
// installed by dpkg itself into a root of their own; then one installed file modified and
// one removed. What nsima trusts is each intact file's sha256 (as sha256sum computes it); the
// modified file is not trusted, and it is exactly the file `dpkg --verify` flags for its md5.
// The same through the command line: `nsimactl digests from-dpkg --root DIR`.
TEST_F(DigestListTest, DpkgDatabaseInstalledByDpkg) {
  if (run("command -v dpkg-deb && command -v dpkg").rc != 0) GTEST_FAIL() << "dpkg not installed";
  TempDir t;
  const fs::path root = t.path() / "root";
  fs::create_directories(root / "var/lib/dpkg/info");
  fs::create_directories(root / "var/lib/dpkg/updates");
  write_file(root / "var/lib/dpkg/status", "");
  auto build = [&](const std::string& pkg, const std::string& files_script) {
    const fs::path d = t.path() / pkg;
    fs::create_directories(d / "DEBIAN");
    must("cd " + d.string() + " && " + files_script);
    write_file(d / "DEBIAN/control", "Package: " + pkg +
                                         "\nVersion: 1.0\nArchitecture: all\nMaintainer: nsima "
                                         "<t@example.invalid>\nDescription: nsima test\n");
    must("cd " + d.string() + " && find usr -type f -exec md5sum {} + | sort -k2 > DEBIAN/md5sums");
    must("dpkg-deb --root-owner-group --build " + d.string() + " " + (t.path() / (pkg + ".deb")).string());
  };
  build("nsimatest-a",
        "mkdir -p usr/bin usr/share/nsimatest-a && printf '#!/bin/sh\\necho a\\n' > usr/bin/nsima-a "
        "&& chmod 755 usr/bin/nsima-a && echo 'data a' > usr/share/nsimatest-a/data.txt && "
        "echo 'conf a' > usr/share/nsimatest-a/changed.txt");
  build("nsimatest-b",
        "mkdir -p usr/lib/nsimatest-b && echo 'lib b' > usr/lib/nsimatest-b/lib.so && "
        "echo 'gone b' > usr/lib/nsimatest-b/gone.txt && echo 'name with space' > "
        "'usr/lib/nsimatest-b/a file'");
  must("timeout 120 dpkg --root=" + root.string() + " --log=" + (t.path() / "dpkg.log").string() +
       " --force-not-root -i " + (t.path() / "nsimatest-a.deb").string() + " " +
       (t.path() / "nsimatest-b.deb").string());
  ASSERT_TRUE(fs::exists(root / "var/lib/dpkg/info/nsimatest-a.md5sums"));
  ASSERT_TRUE(fs::exists(root / "var/lib/dpkg/info/nsimatest-b.md5sums"));
  // the files' sha256 as installed, before anything changes (sha256sum's own format)
  const std::string intact = "usr/bin/nsima-a usr/share/nsimatest-a/data.txt "
                             "'usr/lib/nsimatest-b/a file' usr/lib/nsimatest-b/lib.so";
  write_file(root / "usr/share/nsimatest-a/changed.txt", "modified after install\n");
  fs::remove(root / "usr/lib/nsimatest-b/gone.txt");

  auto g = manifest_from_dpkg(root);
  ASSERT_TRUE(g) << g.error().to_string();
  EXPECT_EQ(g->sources, 2u);
  std::string want = must("cd " + root.string() + " && sha256sum " + intact +
                          " | sed 's#  #  /#' | LC_ALL=C sort -k2");
  EXPECT_EQ(format_manifest(g->manifest), want);
  std::map<std::string, std::string> problems;
  for (const auto& p : g->problems) problems[p.where] = p.what;
  ASSERT_EQ(problems.size(), 2u);
  EXPECT_NE(problems["/usr/share/nsimatest-a/changed.txt"].find("md5 mismatch"), std::string::npos);
  EXPECT_EQ(problems["/usr/lib/nsimatest-b/gone.txt"], "missing");
  for (const auto& e : g->manifest.entries)
    EXPECT_NE(e.path, "/usr/share/nsimatest-a/changed.txt") << "a file whose md5 differs is trusted";
  // dpkg's own check flags the same file for its digest (the 3rd column is '5')
  CommandResult v = run("dpkg --root=" + root.string() + " --verify nsimatest-a");
  // one line per flagged file: "??5??????" (the md5 differs), the conffile column, the path
  EXPECT_EQ(v.output.rfind("??5??????", 0), 0u) << v.output;
  EXPECT_NE(v.output.find(" /usr/share/nsimatest-a/changed.txt\n"), std::string::npos)
      << v.output;
  EXPECT_EQ(std::count(v.output.begin(), v.output.end(), '\n'), 1) << v.output;
  EXPECT_EQ(v.output.find("nsima-a"), std::string::npos) << v.output;

  // the command line: the same manifest on stdout, the problems on stderr, exit status 1
  const std::string ctl = std::string(NSIMA_BINARY_DIR) + "/daemon/nsimactl";
  ASSERT_TRUE(fs::exists(ctl)) << ctl << " not built";
  CommandResult c = run(ctl + " digests from-dpkg --root " + root.string() + " 2>" +
                        (t.path() / "err").string());
  EXPECT_EQ(c.rc, 1) << "problems must fail the command";
  EXPECT_EQ(c.output, want);
  const std::string err = read_file(t.path() / "err");
  EXPECT_NE(err.find("/usr/share/nsimatest-a/changed.txt: md5 mismatch"), std::string::npos) << err;
  EXPECT_NE(err.find("/usr/lib/nsimatest-b/gone.txt: missing"), std::string::npos) << err;
}

// ------------------------------------------------------------------ rpm

// rpmbuild + rpmsign with a gpg key made here. Debian 12's rpm macros name /usr/bin/gpg2 as
// %__gpg, which Debian does not ship: --define "__gpg /usr/bin/gpg" is needed.
class RpmTest : public DigestListTest {
 protected:
  void SetUp() override {
    w_ = t_.path();
    gnupg_ = w_ / "gnupg";
    fs::create_directories(gnupg_);
    fs::permissions(gnupg_, fs::perms::owner_all);
    for (const char* who : {"trusted", "stranger"}) {
      write_file(w_ / "keyparams",
                 std::string("%no-protection\nKey-Type: RSA\nKey-Length: 2048\nName-Real: nsima "
                             "rpm ") + who + "\nName-Email: " + who +
                     "@example.invalid\nExpire-Date: 0\n%commit\n");
      must(env() + "gpg --batch --gen-key " + (w_ / "keyparams").string());
    }
    must(env() + "gpg --export --armor trusted@example.invalid > " + (w_ / "trusted.asc").string());
    keydb_ = w_ / "keydb";
    fs::create_directories(keydb_);
    must("rpmkeys --dbpath " + keydb_.string() + " --import " + (w_ / "trusted.asc").string());
    fs::create_directories(w_ / "top/SPECS");
    write_file(w_ / "top/SPECS/t.spec",
               "Name: nsimatest\nVersion: 1.0\nRelease: 1\nSummary: t\nLicense: MIT\n"
               "BuildArch: noarch\n%description\nt\n%install\n"
               "mkdir -p %{buildroot}/usr/share/nsimatest %{buildroot}/usr/bin\n"
               "printf 'hello rpm\\n' > %{buildroot}/usr/share/nsimatest/hello.txt\n"
               "printf '#!/bin/sh\\necho hi\\n' > %{buildroot}/usr/bin/nsimatest\n"
               "chmod 755 %{buildroot}/usr/bin/nsimatest\n"
               "ln -s hello.txt %{buildroot}/usr/share/nsimatest/link\n"
               "%files\n/usr/share/nsimatest\n/usr/bin/nsimatest\n"
               "%ghost /usr/share/nsimatest/ghost.log\n");
    must("rpmbuild --quiet --define '_topdir " + (w_ / "top").string() + "' --define '_dbpath " +
         (w_ / "builddb").string() + "' -bb " + (w_ / "top/SPECS/t.spec").string());
    built_ = w_ / "top/RPMS/noarch/nsimatest-1.0-1.noarch.rpm";
    ASSERT_TRUE(fs::exists(built_));
  }
  void TearDown() override { run(env() + "gpgconf --kill gpg-agent"); }  // started by gpg
  std::string env() const { return "GNUPGHOME=" + gnupg_.string() + " "; }
  fs::path sign(const std::string& who, const std::string& name) {
    fs::path out = w_ / name;
    fs::copy_file(built_, out, fs::copy_options::overwrite_existing);
    must(env() + "rpmsign --define '__gpg /usr/bin/gpg' --define '_gpg_name " + who +
         "@example.invalid' --addsign " + out.string() + " </dev/null");
    return out;
  }
  // What nsimactl does: the package bytes parsed in the confined worker.
  RpmOptions confined() { return RpmOptions{keydb_, confine::rpm_reader(parser_)}; }
  confine::Parser parser_{
      confine::ParserOptions{NSIMA_PARSE_TEST_BIN, std::chrono::milliseconds(5000), 1}};
  TempDir t_;
  fs::path w_, gnupg_, keydb_, built_;
};

std::map<std::string, std::string> problems_of(const GeneratedManifest& g) {
  std::map<std::string, std::string> out;
  for (const auto& p : g.problems) out[p.where] = p.what;
  return out;
}

TEST_F(RpmTest, SignedPackageGivesItsSha256FileDigests) {
  fs::path pkg = sign("trusted", "signed.rpm");
  // rpm itself agrees that it is signed by the imported key.
  std::string check = must("rpmkeys --dbpath " + keydb_.string() + " --checksig -v " + pkg.string());
  EXPECT_NE(check.find("Signature, key ID"), std::string::npos) << check;
  const fs::path pkgs[] = {pkg};
  auto g = manifest_from_rpm(pkgs, confined());
  ASSERT_TRUE(g) << g.error().to_string();
  EXPECT_TRUE(g->ok()) << g->problems[0].where << ": " << g->problems[0].what;
  ASSERT_EQ(g->manifest.entries.size(), 2u) << format_manifest(g->manifest);
  EXPECT_EQ(g->manifest.entries[0].path, "/usr/bin/nsimatest");
  EXPECT_EQ(g->manifest.entries[0].digest, sha256_of("#!/bin/sh\necho hi\n"));
  EXPECT_EQ(g->manifest.entries[1].path, "/usr/share/nsimatest/hello.txt");
  EXPECT_EQ(g->manifest.entries[1].digest, sha256_of("hello rpm\n"));
  // And rpm's own query prints the same digests.
  std::string q = must("rpm -qp --qf '[%{FILEDIGESTS}\\n]' " + pkg.string() + " 2>/dev/null");
  EXPECT_NE(q.find(sha256_of("hello rpm\n").hex()), std::string::npos) << q;
}

TEST_F(RpmTest, UnsignedUnknownKeyAndTamperedPackagesAreRefused) {
  fs::path unsigned_pkg = w_ / "unsigned.rpm";
  fs::copy_file(built_, unsigned_pkg);
  fs::path stranger = sign("stranger", "stranger.rpm");
  fs::path header_tampered = sign("trusted", "header.rpm");
  std::string bytes = read_file(header_tampered);
  const size_t at = bytes.find("nsimatest", 0x400);  // a name inside the signed header
  ASSERT_NE(at, std::string::npos);
  bytes[at] = 'N';
  write_file(header_tampered, bytes);
  fs::path not_rpm = w_ / "not.rpm";
  write_file(not_rpm, "not an rpm");
  fs::path good = sign("trusted", "good.rpm");

  const fs::path pkgs[] = {unsigned_pkg, stranger, header_tampered, not_rpm, good};
  auto g = manifest_from_rpm(pkgs, confined());
  ASSERT_TRUE(g) << g.error().to_string();
  EXPECT_EQ(g->sources, 5u);
  std::map<std::string, std::string> problems;
  for (const auto& p : g->problems) problems[p.where] = p.what;
  EXPECT_EQ(problems.size(), 4u);
  for (const auto& p : {unsigned_pkg, stranger, header_tampered, not_rpm})
    EXPECT_TRUE(problems[p.string()].starts_with("refused")) << p << ": " << problems[p.string()];
  EXPECT_EQ(problems[unsigned_pkg.string()], "refused: unsigned package");
  EXPECT_NE(problems[stranger.string()].find("not in the rpm keyring"), std::string::npos)
      << problems[stranger.string()];
  EXPECT_EQ(g->manifest.entries.size(), 2u);  // only the good package's files
}

// Only the signed header is trusted: a damaged payload does not change the digests taken from it
// (they still describe what the signer built, and a file unpacked from that payload will not
// match them).
TEST_F(RpmTest, PayloadDamageDoesNotChangeTheSignedDigests) {
  fs::path pkg = sign("trusted", "payload.rpm");
  std::string bytes = read_file(pkg);
  bytes[bytes.size() - 100] ^= 0x01;  // inside the compressed payload
  write_file(pkg, bytes);
  const fs::path pkgs[] = {pkg};
  auto g = manifest_from_rpm(pkgs, confined());
  ASSERT_TRUE(g) << g.error().to_string();
  ASSERT_EQ(g->manifest.entries.size(), 2u);
  EXPECT_EQ(g->manifest.entries[1].digest, sha256_of("hello rpm\n"));
}

// A package whose file digests are not sha256 (built with %_binary_filedigest_algorithm 10,
// sha512) gives no entries and says why.
TEST_F(RpmTest, NonSha256FileDigestsAreAProblem) {
  must("rpmbuild --quiet --define '_topdir " + (w_ / "top512").string() + "' --define '_dbpath " +
       (w_ / "builddb").string() + "' --define '_binary_filedigest_algorithm 10' -bb " +
       (w_ / "top/SPECS/t.spec").string());
  fs::path pkg = w_ / "sha512.rpm";
  fs::copy_file(w_ / "top512/RPMS/noarch/nsimatest-1.0-1.noarch.rpm", pkg);
  must(env() + "rpmsign --define '__gpg /usr/bin/gpg' --define '_gpg_name trusted@example.invalid'"
       " --addsign " + pkg.string() + " </dev/null");
  const fs::path pkgs[] = {pkg};
  auto g = manifest_from_rpm(pkgs, confined());
  ASSERT_TRUE(g) << g.error().to_string();
  ASSERT_EQ(g->problems.size(), 1u);
  EXPECT_NE(g->problems[0].what.find("sha512"), std::string::npos) << g->problems[0].what;
  EXPECT_TRUE(g->manifest.entries.empty());
}

TEST_F(RpmTest, NoKeyringIsAnError) {
  const fs::path pkgs[] = {built_};
  auto g = manifest_from_rpm(pkgs, RpmOptions{});
  ASSERT_FALSE(g);
  g = manifest_from_rpm(pkgs, RpmOptions{w_ / "nonexistent", {}});
  ASSERT_FALSE(g);
  EXPECT_EQ(g.error().code, ENOENT);
}

// The worker's answer is the in-process one, package by package: good, unsigned, unknown key,
// tampered, not an rpm, truncated, garbage after a real lead.
TEST_F(RpmTest, ConfinedSameAsInProcess) {
  fs::path good = sign("trusted", "good.rpm");
  fs::path stranger = sign("stranger", "stranger.rpm");
  fs::path unsigned_pkg = w_ / "unsigned.rpm";
  fs::copy_file(built_, unsigned_pkg);
  const std::string bytes = read_file(good);
  fs::path cut = w_ / "cut.rpm";
  write_file(cut, bytes.substr(0, bytes.size() / 3));
  fs::path garbage = w_ / "garbage.rpm";
  std::string g = bytes.substr(0, 96);  // the lead, then noise
  for (int i = 0; i < 4096; ++i) g.push_back(static_cast<char>((i * 131 + 7) & 0xff));
  write_file(garbage, g);
  const fs::path pkgs[] = {good, stranger, unsigned_pkg, cut, garbage};
  auto in = manifest_from_rpm(pkgs, RpmOptions{keydb_, {}});
  auto out = manifest_from_rpm(pkgs, confined());
  ASSERT_TRUE(in) << in.error().to_string();
  ASSERT_TRUE(out) << out.error().to_string();
  EXPECT_EQ(format_manifest(out->manifest), format_manifest(in->manifest));
  EXPECT_EQ(out->manifest.entries.size(), 2u);
  EXPECT_EQ(problems_of(*out), problems_of(*in));
  EXPECT_EQ(out->problems.size(), 4u);
  EXPECT_EQ(parser_.stats().crashed + parser_.stats().bad_replies + parser_.stats().timeouts, 0u);
}

// Bytes that are not a whole rpm are refused with librpm's reason, each naming its file: every
// cut of a signed package, an empty file, a few bytes.
TEST_F(RpmTest, TruncatedAndGarbageBytesAreRefused) {
  fs::path good = sign("trusted", "good.rpm");
  const std::string bytes = read_file(good);
  std::vector<fs::path> pkgs;
  for (size_t n : {size_t{0}, size_t{4}, size_t{95}, size_t{96}, size_t{200}, size_t{1000},
                   bytes.size() / 2}) {
    pkgs.push_back(w_ / ("cut" + std::to_string(n) + ".rpm"));
    write_file(pkgs.back(), bytes.substr(0, n));
  }
  pkgs.push_back(w_ / "text.rpm");
  write_file(pkgs.back(), std::string(70000, 'x'));
  pkgs.push_back(good);
  auto g = manifest_from_rpm(pkgs, confined());
  ASSERT_TRUE(g) << g.error().to_string();
  auto problems = problems_of(*g);
  EXPECT_EQ(problems.size(), pkgs.size() - 1);
  for (size_t i = 0; i + 1 < pkgs.size(); ++i)
    EXPECT_TRUE(problems[pkgs[i].string()].starts_with("refused: "))
        << pkgs[i] << ": " << problems[pkgs[i].string()];
  EXPECT_EQ(g->manifest.entries.size(), 2u);  // the whole package still gives its files
  EXPECT_EQ(parser_.stats().crashed + parser_.stats().bad_replies, 0u);
}

// A package whose parse crashes or hangs the worker is a problem naming it and the worker's
// fate; the packages after it are still read (by a new worker).
TEST_F(RpmTest, WorkerFailureIsAProblemOfThatPackageOnly) {
  confine::Parser p(
      confine::ParserOptions{NSIMA_PARSE_TEST_BIN, std::chrono::milliseconds(1500), 1});
  fs::path crash = w_ / "crash.rpm", hang = w_ / "hang.rpm";
  write_file(crash, "nsima-test:abort");
  write_file(hang, "nsima-test:loop");
  fs::path a = sign("trusted", "a.rpm");
  fs::path b = sign("trusted", "b.rpm");
  const fs::path pkgs[] = {crash, a, hang, b};
  // The test worker's hooks read the package bytes right after a zero key count.
  const auto reader = confine::rpm_reader(p);
  RpmOptions o{keydb_, [&reader](std::span<const std::vector<uint8_t>> keys,
                                 std::span<const uint8_t> package) {
                 const bool hook =
                     package.size() > 11 && std::memcmp(package.data(), "nsima-test:", 11) == 0;
                 return hook ? reader({}, package) : reader(keys, package);
               }};
  auto g = manifest_from_rpm(pkgs, o);
  ASSERT_TRUE(g) << g.error().to_string();
  auto problems = problems_of(*g);
  ASSERT_EQ(problems.size(), 2u);
  EXPECT_TRUE(problems[crash.string()].starts_with("not read: parser-crashed: "))
      << problems[crash.string()];
  EXPECT_NE(problems[crash.string()].find("SIGABRT"), std::string::npos)
      << problems[crash.string()];
  EXPECT_TRUE(problems[hang.string()].starts_with("not read: parser-timeout: "))
      << problems[hang.string()];
  EXPECT_EQ(g->sources, 4u);
  EXPECT_EQ(g->manifest.entries.size(), 4u);  // a's and b's files: read by the replacements
  EXPECT_EQ(p.stats().crashed, 1u);
  EXPECT_EQ(p.stats().timeouts, 1u);
  EXPECT_EQ(p.stats().spawned, 3u);
}

// nsimactl digests from-rpm: the installed worker (nsima-parse) reads the packages.
TEST_F(RpmTest, NsimactlReadsPackagesInTheWorker) {
  fs::path good = sign("trusted", "good.rpm");
  fs::path not_rpm = w_ / "not.rpm";
  write_file(not_rpm, "not an rpm");
  const std::string ctl = std::string(NSIMA_BINARY_DIR) + "/daemon/nsimactl";
  ASSERT_TRUE(fs::exists(ctl)) << ctl << " not built";
  CommandResult c = run(ctl + " digests from-rpm --dbpath " + keydb_.string() + " " +
                        good.string() + " " + not_rpm.string() + " 2>" + (w_ / "err").string());
  EXPECT_EQ(c.rc, 1) << "problems must fail the command";
  EXPECT_EQ(c.output, sha256_of("#!/bin/sh\necho hi\n").hex() + "  /usr/bin/nsimatest\n" +
                          sha256_of("hello rpm\n").hex() + "  /usr/share/nsimatest/hello.txt\n");
  const std::string err = read_file(w_ / "err");
  EXPECT_NE(err.find(not_rpm.string() + ": refused: not an rpm package"), std::string::npos) << err;
}

}  // namespace
}  // namespace nsima::appraise
