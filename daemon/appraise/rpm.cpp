// SPDX-License-Identifier: Apache-2.0
// manifest_from_rpm(): rpm package headers through librpm (Debian's librpm-dev, rpm 4.18).
//
// Split in two (confine/README.md): the trusted side (rpm_trusted_keys) reads the OpenPGP keys
// of the gpg-pubkey headers in RpmOptions::dbpath (where `rpmkeys --dbpath DIR --import` put
// them) and each package's first kRpmReadMax bytes; the untrusted bytes are parsed by
// rpm_read_header, in nsima-parse when RpmOptions::read says so. There the package is read with
// rpmReadPackageFile() from a memfd, on a transaction set whose keyring holds those keys only and
// whose verify level is RPMSIG_SIGNATURE_TYPE, so librpm itself refuses a package without a
// valid signature (and, because rpm 4.18 does not enforce that level in rpmReadPackageFile, a
// package without a header signature tag is refused here); anything but RPMRC_OK (NOKEY: signed
// by a key not in the database, NOTTRUSTED, FAIL: bad signature or header digest, NOTFOUND: not
// an rpm) is a problem and gives no entries. Only the header is read: its signature covers the
// file digests taken from it, whatever the payload holds (a corrupted payload changes nothing
// that is trusted). librpm keeps global state (macros, config), so calls are serialised.
#include <fcntl.h>
#include <rpm/header.h>
#include <rpm/rpmbase64.h>
#include <rpm/rpmcrypto.h>
#include <rpm/rpmdb.h>
#include <rpm/rpmfiles.h>
#include <rpm/rpmio.h>
#include <rpm/rpmkeyring.h>
#include <rpm/rpmlib.h>
#include <rpm/rpmlog.h>
#include <rpm/rpmmacro.h>
#include <rpm/rpmpgp.h>
#include <rpm/rpmts.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <memory>
#include <mutex>

#include "appraise/digest_list.h"

namespace nsima::appraise {

using measure::Digest;
using measure::HashAlgo;

namespace {

// One deleter for every librpm handle: its own free function (whose result is ignored).
template <auto Free>
struct RpmFree {
  template <typename T>
  void operator()(T* p) const noexcept {
    Free(p);
  }
};
template <typename Handle, auto Free>
using RpmPtr = std::unique_ptr<std::remove_pointer_t<Handle>, RpmFree<Free>>;
using TsPtr = RpmPtr<rpmts, rpmtsFree>;
using HeaderPtr = RpmPtr<Header, headerFree>;
using FdPtr = RpmPtr<FD_t, Fclose>;
using KeyringPtr = RpmPtr<rpmKeyring, rpmKeyringFree>;
using PubkeyPtr = RpmPtr<rpmPubkey, rpmPubkeyFree>;
using MiPtr = RpmPtr<rpmdbMatchIterator, rpmdbFreeIterator>;
using FilesPtr = RpmPtr<rpmfiles, rpmfilesFree>;

std::mutex& rpm_mutex() {
  static std::mutex m;
  return m;
}

std::string_view pgp_hash_name(int algo) {
  switch (algo) {
    case PGPHASHALGO_MD5: return "md5";
    case PGPHASHALGO_SHA1: return "sha1";
    case PGPHASHALGO_SHA224: return "sha224";
    case PGPHASHALGO_SHA256: return "sha256";
    case PGPHASHALGO_SHA384: return "sha384";
    case PGPHASHALGO_SHA512: return "sha512";
    default: return "unknown";
  }
}

std::string_view rc_meaning(rpmRC rc) {
  switch (rc) {
    case RPMRC_NOTFOUND: return "not an rpm package";
    case RPMRC_FAIL: return "signature or digest check failed (unsigned, tampered or bad signature)";
    case RPMRC_NOTTRUSTED: return "signed by a key that is not trusted";
    case RPMRC_NOKEY: return "signed by a key that is not in the rpm keyring";
    default: return "unexpected result";
  }
}

// Keeps the `_dbpath` macro for the lifetime of one call.
class MacroScope {
 public:
  MacroScope(const char* name, const std::string& value) : name_(name) {
    rpmPushMacro(nullptr, name_, nullptr, value.c_str(), RMIL_GLOBAL);
  }
  ~MacroScope() { rpmPopMacro(nullptr, name_); }
  MacroScope(const MacroScope&) = delete;
  MacroScope& operator=(const MacroScope&) = delete;

 private:
  const char* name_;
};

// rpmlog's records stay in librpm: nothing is written to a descriptor (in the worker only fd 3
// is open, and a write elsewhere is a seccomp kill); results are values.
int quiet_log(rpmlogRec, rpmlogCallbackData) noexcept { return 0; }

void quiet_rpmlog() {
  rpmlogSetMask(RPMLOG_UPTO(RPMLOG_CRIT));
  rpmlogSetCallback(quiet_log, nullptr);
}

// Reads the trusted rpm configuration once (the trusted side: the rpm database's macros).
int read_config() {
  static const int config = [] {
    quiet_rpmlog();
    return rpmReadConfigFiles(nullptr, nullptr);
  }();
  return config;
}

// An FD_t over `bytes`: a memfd (librpm reads packages from descriptors only).
FdPtr memory_fd(std::span<const uint8_t> bytes, std::string& why) {
  const int mfd = ::memfd_create("nsima-rpm", MFD_CLOEXEC);
  if (mfd < 0) {
    why = std::string("memfd_create: ") + std::strerror(errno);
    return nullptr;
  }
  size_t off = 0;
  while (off < bytes.size()) {
    const ssize_t n = ::write(mfd, bytes.data() + off, bytes.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      why = std::string("writing the memfd: ") + std::strerror(errno);
      ::close(mfd);
      return nullptr;
    }
    off += static_cast<size_t>(n);
  }
  if (::lseek(mfd, 0, SEEK_SET) != 0) {
    why = std::string("lseek: ") + std::strerror(errno);
    ::close(mfd);
    return nullptr;
  }
  FdPtr fd(fdDup(mfd));  // rpmio's only way from a descriptor to an FD_t
  ::close(mfd);
  if (!fd || Ferror(fd.get())) {
    why = "fdDup failed";
    return nullptr;
  }
  return fd;
}

RpmHeaderResult read_header_locked(std::span<const std::vector<uint8_t>> keys,
                                   std::span<const uint8_t> package) {
  KeyringPtr keyring(rpmKeyringNew());
  for (const auto& k : keys) {
    PubkeyPtr key(rpmPubkeyNew(k.data(), k.size()));
    if (!key) continue;  // as librpm's own keyring load skips a key it cannot parse
    rpmKeyringAddKey(keyring.get(), key.get());
    int n = 0;
    if (rpmPubkey* subs = rpmGetSubkeys(key.get(), &n)) {
      for (int i = 0; i < n; ++i) {
        rpmKeyringAddKey(keyring.get(), subs[i]);
        rpmPubkeyFree(subs[i]);
      }
      free(subs);
    }
  }
  TsPtr ts(rpmtsCreate());
  if (!ts) return tl::unexpected(std::string("not read: rpmtsCreate failed"));
  rpmtsSetKeyring(ts.get(), keyring.get());  // never the rpm database's
  rpmtsSetVSFlags(ts.get(), RPMVSF_DEFAULT);
  rpmtsSetVfyLevel(ts.get(), RPMSIG_SIGNATURE_TYPE | RPMSIG_DIGEST_TYPE);

  std::string why;
  FdPtr fd = memory_fd(package, why);
  if (!fd) return tl::unexpected("not read: " + why);
  Header raw = nullptr;
  const rpmRC rc = rpmReadPackageFile(ts.get(), fd.get(), "package", &raw);
  HeaderPtr h(raw);
  if (rc != RPMRC_OK) return tl::unexpected("refused: " + std::string(rc_meaning(rc)));
  if (!h) return tl::unexpected(std::string("refused: no header"));
  // librpm 4.18 returns RPMRC_OK for a package that carries no signature at all (the verify
  // level is not enforced by rpmReadPackageFile), so require one: a present signature was
  // verified above (a missing key is NOKEY, a bad one FAIL).
  if (!headerIsEntry(h.get(), RPMTAG_RSAHEADER) && !headerIsEntry(h.get(), RPMTAG_DSAHEADER) &&
      !headerIsEntry(h.get(), RPMTAG_SIGPGP) && !headerIsEntry(h.get(), RPMTAG_SIGGPG))
    return tl::unexpected(std::string("refused: unsigned package"));
  RpmFiles out;
  FilesPtr files(rpmfilesNew(nullptr, h.get(), RPMTAG_BASENAMES, RPMFI_FLAGS_QUERY));
  const int count = files ? static_cast<int>(rpmfilesFC(files.get())) : 0;
  if (count == 0) return out;  // a package without files lists nothing
  const int algo = rpmfilesDigestAlgo(files.get());
  if (algo != PGPHASHALGO_SHA256)
    return tl::unexpected("file digests are " + std::string(pgp_hash_name(algo)) +
                          " (RPMTAG_FILEDIGESTALGO " + std::to_string(algo) +
                          "), not sha256: no entries; install the package and use from-rootfs");
  for (int i = 0; i < count; ++i) {
    if (!S_ISREG(rpmfilesFMode(files.get(), i))) continue;
    if (rpmfilesFFlags(files.get(), i) & RPMFILE_GHOST) continue;  // not in the payload
    int falgo = 0;
    size_t len = 0;
    const unsigned char* d = rpmfilesFDigest(files.get(), i, &falgo, &len);
    char* fn = rpmfilesFN(files.get(), i);
    std::string path = fn ? fn : "";
    free(fn);
    if (!d || falgo != PGPHASHALGO_SHA256) {
      out.problems.push_back({std::move(path), "regular file without a sha256 digest"});
      continue;
    }
    auto digest = Digest::from_bytes(HashAlgo::kSha256, {d, len});
    if (!digest) {
      out.problems.push_back({std::move(path), digest.error().message});
      continue;
    }
    out.entries.push_back({*digest, std::move(path), false});
  }
  return out;
}

// Up to kRpmReadMax bytes of `path`; `whole` false when the file is longer.
Result<std::vector<uint8_t>> read_prefix(const std::filesystem::path& path, bool& whole) {
  std::ifstream in(path, std::ios::binary);
  if (!in)
    return make_error(errno ? errno : EIO, std::string("cannot open: ") + std::strerror(errno));
  // Grown as read (not kRpmReadMax zeroed up front for every package): a typical package
  // header is kilobytes, and its payload beyond the cap is never read.
  std::vector<uint8_t> out;
  std::error_code ec;
  const uintmax_t size = std::filesystem::file_size(path, ec);
  out.reserve(static_cast<size_t>(std::min<uintmax_t>(ec ? 0 : size, kRpmReadMax) + 1));
  while (out.size() <= kRpmReadMax) {
    const size_t at = out.size();
    const size_t chunk = std::min<size_t>(size_t{1} << 20, kRpmReadMax + 1 - at);
    out.resize(at + chunk);
    in.read(reinterpret_cast<char*>(out.data() + at), static_cast<std::streamsize>(chunk));
    out.resize(at + static_cast<size_t>(in.gcount()));
    if (in.bad()) return make_error(EIO, "cannot read");
    if (!in) break;  // end of file
  }
  whole = out.size() <= kRpmReadMax;
  if (!whole) out.resize(kRpmReadMax);
  return out;
}

}  // namespace

void rpm_prepare_confined() {
  quiet_rpmlog();
  rpmInitCrypto();  // libgcrypt's init (it reads /proc/sys/crypto/fips_enabled)
  // One digest of each kind a header check uses, so nothing is loaded lazily later.
  for (int algo : {PGPHASHALGO_SHA1, PGPHASHALGO_SHA256, PGPHASHALGO_SHA512, PGPHASHALGO_MD5}) {
    if (DIGEST_CTX c = rpmDigestInit(algo, RPMDIGEST_NONE)) rpmDigestFinal(c, nullptr, nullptr, 0);
  }
  rpmtsFree(rpmtsCreate());
}

RpmHeaderResult rpm_read_header(std::span<const std::vector<uint8_t>> keys,
                                std::span<const uint8_t> package) {
  std::lock_guard lock(rpm_mutex());
  return read_header_locked(keys, package);
}

Result<std::vector<std::vector<uint8_t>>> rpm_trusted_keys(const std::filesystem::path& dbpath) {
  std::lock_guard lock(rpm_mutex());
  if (read_config() != 0) return make_error(EIO, "rpmReadConfigFiles failed");
  MacroScope macro("_dbpath", std::filesystem::absolute(dbpath).string());
  TsPtr ts(rpmtsCreate());
  if (!ts) return make_error(ENOMEM, "rpmtsCreate failed");
  rpmtsSetRootDir(ts.get(), "/");
  std::vector<std::vector<uint8_t>> keys;
  MiPtr mi(rpmtsInitIterator(ts.get(), RPMDBI_NAME, "gpg-pubkey", 0));
  while (Header h = mi ? rpmdbNextIterator(mi.get()) : nullptr) {  // owned by the iterator
    rpmtd td = rpmtdNew();
    if (headerGet(h, RPMTAG_PUBKEYS, td, HEADERGET_MINMEM)) {
      while (const char* b64 = rpmtdNextString(td)) {
        void* data = nullptr;
        size_t len = 0;
        if (rpmBase64Decode(b64, &data, &len) == 0 && data) {
          const auto* p = static_cast<const uint8_t*>(data);
          keys.emplace_back(p, p + len);
        }
        free(data);
      }
    }
    rpmtdFreeData(td);
    rpmtdFree(td);
  }
  return keys;
}

Result<GeneratedManifest> manifest_from_rpm(std::span<const std::filesystem::path> packages,
                                            const RpmOptions& options) {
  if (options.dbpath.empty())
    return make_error(EINVAL, "an rpm database holding the trusted keys is required (dbpath)");
  std::error_code ec;
  if (!std::filesystem::is_directory(options.dbpath, ec))
    return make_error(ENOENT, "rpm database directory does not exist", options.dbpath.string());
  auto keys = rpm_trusted_keys(options.dbpath);
  if (!keys) return tl::unexpected(keys.error());
  const RpmReader in_process = [](std::span<const std::vector<uint8_t>> k,
                                  std::span<const uint8_t> b) { return rpm_read_header(k, b); };
  const RpmReader& read = options.read ? options.read : in_process;

  GeneratedManifest out;
  for (const auto& pkg : packages) {
    ++out.sources;
    const std::string name = pkg.string();
    bool whole = true;
    auto bytes = read_prefix(pkg, whole);
    if (!bytes) {
      out.problems.push_back({name, bytes.error().message});
      continue;
    }
    auto files = read(*keys, *bytes);
    if (!files) {
      std::string what = std::move(files.error());
      if (!whole)
        what += " (only its first " + std::to_string(kRpmReadMax >> 20) +
                " MiB were read: the lead and headers must fit in them)";
      out.problems.push_back({name, std::move(what)});
      continue;
    }
    for (auto& p : files->problems)
      out.problems.push_back({name + ":" + p.where, std::move(p.what)});
    for (auto& e : files->entries) out.manifest.entries.push_back(std::move(e));
  }
  std::sort(out.manifest.entries.begin(), out.manifest.entries.end(),
            [](const ManifestEntry& a, const ManifestEntry& b) { return a.path < b.path; });
  return out;
}

}  // namespace nsima::appraise
