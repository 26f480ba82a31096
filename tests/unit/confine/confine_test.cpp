// SPDX-License-Identifier: Apache-2.0
// daemon/confine: the worker parses what the in-process parsers parse (the unit test vectors and
// the fuzz corpora, and every truncation of them), it runs confined (uid, groups, capabilities,
// NoNewPrivs, seccomp, descriptors, from /proc/PID), a forbidden system call kills it, a crash
// or a hang is one failed parse and the next parse works, a lying reply is refused, and many
// threads share a pool of workers.
#include <gtest/gtest.h>

#include <algorithm>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include "appraise/appraiser.h"
#include "appraise/digest_list.h"
#include "appraise/ima_xattr.h"
#include "confine/parser.h"
#include "confine/protocol.h"
#include "confine/sandbox.h"
#include "confine/wire.h"
#include "control/schema.h"
#include "hook/oci_state.h"

namespace nsima::confine {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

std::vector<uint8_t> file_bytes(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), {}};
}

std::vector<fs::path> corpus(const std::string& dir) {
  std::vector<fs::path> out;
  for (const auto& e : fs::directory_iterator(fs::path(NSIMA_SOURCE_DIR) / "tests/fuzz/corpus" / dir))
    out.push_back(e.path());
  std::sort(out.begin(), out.end());
  EXPECT_FALSE(out.empty()) << dir;
  return out;
}

ParserOptions opts(std::chrono::milliseconds deadline = 2000ms, unsigned workers = 1) {
  return ParserOptions{NSIMA_PARSE_TEST_BIN, deadline, workers};
}

std::string describe(const appraise::XattrResult& x) {
  if (!x)
    return "error " + std::string(appraise::xattr_error_kind_name(x.error().kind)) + ": " +
           x.error().reason;
  std::ostringstream s;
  s << "type " << int(x->type) << " algo " << int(x->algo) << " v" << int(x->version) << " key "
    << x->keyid << " digest " << x->digest.size() << " sig " << x->signature.size() << " raw "
    << x->raw.size();
  return s.str() + (x->digest.empty() ? "" : " " + std::string(x->digest.begin(), x->digest.end())) +
         std::string(x->signature.begin(), x->signature.end());
}

template <class T>
std::string describe_result(const Result<T>& r, std::string (*ok)(const T&)) {
  return r ? ok(*r) : "error " + std::to_string(r.error().code) + " " + r.error().to_string();
}

std::string describe_manifest(const appraise::Manifest& m) {
  std::string s = std::to_string(m.entries.size()) + " entries\n";
  for (const auto& e : m.entries)
    s += e.digest.to_string() + (e.binary ? " *" : "  ") + e.path + "\n";
  return s;
}

std::string describe_state(const hook::OciState& st) {
  std::string s = st.oci_version + "|" + st.id + "|" + st.status + "|" +
                  (st.pid ? std::to_string(*st.pid) : "none") + "|" + st.bundle;
  for (const auto& [k, v] : st.annotations) s += "|" + k + "=" + v;
  return s;
}

// Every prefix and a few byte changes of each seed: the worker's answer is the in-process one.
TEST(ConfinedParser, ImaXattrSameAsInProcess) {
  Parser p(opts());
  size_t n = 0;
  for (const auto& f : corpus("appraise")) {
    if (f.filename().string().starts_with("manifest")) continue;
    const auto seed = file_bytes(f);
    std::vector<std::vector<uint8_t>> inputs;
    for (size_t len = 0; len <= seed.size(); ++len) inputs.emplace_back(seed.begin(), seed.begin() + len);
    for (size_t i = 0; i < std::min<size_t>(seed.size(), 12); ++i)
      for (uint8_t b : {0x00, 0x02, 0x05, 0x07, 0x17, 0xff}) {
        auto v = seed;
        v[i] = b;
        inputs.push_back(v);
      }
    for (const auto& v : inputs) {
      auto got = p.ima_xattr(v);
      ASSERT_TRUE(got) << f << " len " << v.size() << ": " << got.error().to_string();
      ASSERT_EQ(describe(*got), describe(appraise::parse_ima_xattr(v))) << f << " len " << v.size();
      ++n;
    }
  }
  std::vector<uint8_t> huge(appraise::kXattrSizeMax + 1, 0x04);
  auto got = p.ima_xattr(huge);
  ASSERT_TRUE(got);
  EXPECT_EQ(describe(*got), describe(appraise::parse_ima_xattr(huge)));
  EXPECT_GT(n, 500u);
}

TEST(ConfinedParser, ManifestSameAsInProcess) {
  Parser p(opts());
  std::vector<std::pair<std::string, std::string>> inputs;
  for (const auto& dir : {"digest_list", "appraise"})
    for (const auto& f : corpus(dir)) {
      const auto b = file_bytes(f);
      inputs.emplace_back(f.string(), std::string(b.begin(), b.end()));
    }
  const std::string hex(64, 'a');
  for (std::string t : std::vector<std::string>{hex + "  /a\n" + hex + " */b c\n\n\\" + hex + "  /x\\ny\\\\z\r\n",
                        hex + "  /a\r\n" + std::string(96, 'b') + "  /b\n" + std::string(128, 'c') + "  /c",
                        std::string("SHA256 (x) = ") + hex, hex.substr(0, 40) + "  /sha1",
                        hex + " /one-space", "\\" + hex + "  /bad\\q", "", "\n\n", "# comment"})
    inputs.emplace_back("vector", t);
  for (const auto& [name, text] : inputs) {
    auto got = p.manifest(text, name);
    ASSERT_TRUE(got) << name << ": " << got.error().to_string();
    EXPECT_EQ(describe_result(*got, describe_manifest),
              describe_result(appraise::parse_manifest(text, name), describe_manifest))
        << name;
  }
}

TEST(ConfinedParser, OciStateSameAsInProcess) {
  Parser p(opts());
  const std::string runc =
      R"({"ociVersion":"1.0.2-dev","id":"t1","status":"creating","pid":21592,"bundle":"/w/ctr/bundle","annotations":{"org.nsima.builtin":"container-measure","b":"é"}})";
  std::vector<std::string> inputs = {
      runc,
      R"({"ociVersion":"1.0","id":"c1","pid":0,"root":"rootfs","bundle":"/w/ctr/bundle","status":"stopped"})",
      R"({"ociVersion":"1.0.2-dev","id":"t1","status":"stopped","bundle":"/w/ctr/bundle"})",
      R"({"ociVersion":"1.0","id":"../x","pid":1})", R"({"ociVersion":"1.0","id":"a","pid":-1})",
      R"({"ociVersion":"1.0","id":"a","annotations":{"k":1}})", R"([1,2])", "", "  \n"};
  for (size_t len = 0; len < runc.size(); len += 7) inputs.push_back(runc.substr(0, len));
  for (const auto& f : corpus("state")) {
    const auto b = file_bytes(f);
    inputs.emplace_back(b.begin(), b.end());
  }
  for (const auto& t : inputs) {
    auto got = p.oci_state(t);
    ASSERT_TRUE(got) << t << ": " << got.error().to_string();
    EXPECT_EQ(describe_result(*got, describe_state),
              describe_result(hook::parse_state(t), describe_state))
        << t;
  }
}

// A group member's control request: what the schema says of the worker's form is what it says
// of the line parsed in process (the same refusal sentence, or the same accepted request).
std::string schema_view(const nlohmann::json& j) {
  auto ok = control::validate_request(j);
  return ok ? "accepted " + j.dump() : "refused: " + ok.error().message;
}

TEST(ConfinedParser, ControlRequestSameAsInProcessForTheSchema) {
  Parser p(opts());
  const std::string status = R"({"cmd":"status","json":true})";
  std::vector<std::string> inputs = {
      status,
      R"({"cmd":"list"})",
      R"({"cmd":"audit","ns":"2","follow":true,"from":7})",
      R"({"cmd":"audit","ns":"2","from":-1})",
      R"({"cmd":"audit","ns":"2","from":-0})",  // a signed zero (found by fuzz.control)
      R"({"cmd":"audit","ns":"2","from":1.5})",
      R"({"cmd":"audit","ns":{"a":1}})",
      R"({"cmd":"audit","ns":null})",
      R"({"cmd":"audit","ns":["2"]})",
      R"({"cmd":"keys_add","ns":"2","certs":["a",1,null]})",
      R"({"cmd":"status","unknown":1})",
      R"({"cmd":7})",
      R"({"cmd":"st\u0000atus"})",
      R"({"cmd":"status","cmd":"list"})",
      R"({"cmd":"é"})",
      R"([1,2])", R"("status")", "null", "{}", "", "{\"cmd\":\"sta", "\x01\xff garbage \x7f",
      "{\"cmd\":\"\xff\"}"};
  for (size_t len = 0; len < status.size(); len += 5) inputs.push_back(status.substr(0, len));
  for (const auto& f : corpus("control")) {
    const auto b = file_bytes(f);
    inputs.emplace_back(b.begin(), b.end());
  }
  for (const auto& t : inputs) {
    auto in = nlohmann::json::parse(t, nullptr, /*allow_exceptions=*/false);
    auto got = p.control_request(t);
    ASSERT_TRUE(got) << t << ": " << got.error().to_string();
    if (in.is_discarded()) {
      ASSERT_FALSE(*got) << t << ": accepted what is not JSON";
      EXPECT_EQ(got->error().message, "not JSON (expected a JSON object with a \"cmd\" string)");
      continue;
    }
    ASSERT_TRUE(*got) << t << ": " << got->error().to_string();
    EXPECT_EQ(schema_view(**got), schema_view(in)) << t;
  }
  // Forged replies: each refused by the strict decoding.
  auto member = [](uint8_t tag, std::initializer_list<uint8_t> value) {
    Writer w;
    w.u8(0);
    w.u8(1);
    w.u32(1);
    w.str("cmd");
    w.u8(tag);
    for (uint8_t b : value) w.u8(b);
    return w.out();
  };
  Writer twice;
  twice.u8(0);
  twice.u8(1);
  twice.u32(2);
  for (int i = 0; i < 2; ++i) {
    twice.str("cmd");
    twice.u8('n');
  }
  Writer utf8;
  utf8.u8(0);
  utf8.u8(1);
  utf8.u32(1);
  utf8.str("cmd");
  utf8.u8('s');
  utf8.str("\xff");
  const std::vector<std::vector<uint8_t>> lies = {
      member('b', {2}),                 // a bool of 2
      member('?', {}),                  // an unknown tag
      member('n', {0}),                 // a byte left over
      member('u', {1, 0}),              // cut short
      {0, 2},                           // an unknown kind
      {0, 0, 'n', 0},                   // a non-object with a byte more
      {0, 0, 'o'},                      // a non-object that is an object
      {0, 1, 0, 0, 0, 0, 1},            // no member, a byte more
      {0, 1, 0xff, 0xff, 0xff, 0xff},   // 4 billion members
      twice.out(),                      // one name twice
      utf8.out(),                       // a string that is not UTF-8
  };
  for (const auto& lie : lies) EXPECT_FALSE(decode_control_request(lie)) << "accepted a forged reply";
  auto body = p.call(Op::kTestReply, lies[0]);
  ASSERT_TRUE(body) << body.error().to_string();
}

std::map<std::string, std::string> proc_status(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::map<std::string, std::string> out;
  for (std::string line; std::getline(in, line);) {
    auto c = line.find(':');
    if (c == std::string::npos) continue;
    auto v = line.substr(c + 1);
    v.erase(0, v.find_first_not_of(" \t"));
    out[line.substr(0, c)] = v;
  }
  return out;
}

// The worker, as /proc shows it: not root, no groups, no capability, NoNewPrivs, seccomp
// filter mode, its socket as its only descriptor.
TEST(ConfinedParser, WorkerIsConfined) {
  Parser p(ParserOptions{NSIMA_PARSE_BIN, 2000ms, 1});
  ASSERT_TRUE(p.start());
  auto pids = p.worker_pids();
  ASSERT_EQ(pids.size(), 1u);
  auto st = proc_status(pids[0]);
  ASSERT_FALSE(st.empty());
  for (const char* id : {"Uid", "Gid"}) {
    std::istringstream ids(st[id]);
    for (int i = 0; i < 4; ++i) {
      long v = -1;
      ids >> v;
      EXPECT_GT(v, 0) << id << ": " << st[id];
    }
  }
  EXPECT_EQ(st["Groups"], "");
  for (const char* cap : {"CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"})
    EXPECT_EQ(st[cap], "0000000000000000") << cap;
  EXPECT_EQ(st["NoNewPrivs"], "1");
  EXPECT_EQ(st["Seccomp"], "2");
  std::vector<std::string> fds;
  for (const auto& e : fs::directory_iterator("/proc/" + std::to_string(pids[0]) + "/fd"))
    fds.push_back(e.path().filename());
  std::sort(fds.begin(), fds.end());
  // (a sanitizer build keeps 0-2 for its runtime's reports)
  if (under_sanitizer()) EXPECT_EQ(fds, (std::vector<std::string>{"0", "1", "2", "3"}));
  else EXPECT_EQ(fds, std::vector<std::string>{"3"});
  // And it still parses.
  auto x = p.ima_xattr(std::vector<uint8_t>(33, 0x04));
  ASSERT_TRUE(x);
}

// open, socket and execve are outside the allow-list: the kernel kills the worker (SIGSYS),
// the parse fails as parser-crashed, the next parse is served by a new worker.
TEST(ConfinedParser, ForbiddenSystemCallsKillTheWorker) {
  Parser p(opts());
  const std::vector<uint8_t> good = file_bytes(fs::path(NSIMA_SOURCE_DIR) / "tests/fuzz/corpus/appraise/hash-sha256");
  for (Op op : {Op::kTestOpen, Op::kTestSocket, Op::kTestExecve}) {
    ASSERT_TRUE(p.ima_xattr(good));
    const pid_t before = p.worker_pids().at(0);
    auto r = p.call(op, {});
    ASSERT_FALSE(r) << "op " << int(op) << " was answered: the filter let it through";
    EXPECT_EQ(r.error().kind, FailureKind::kCrashed) << r.error().to_string();
    EXPECT_NE(r.error().reason.find("SIGSYS"), std::string::npos) << r.error().to_string();
    EXPECT_TRUE(p.worker_pids().empty());
    auto next = p.ima_xattr(good);
    ASSERT_TRUE(next) << next.error().to_string();
    EXPECT_TRUE(*next);
    EXPECT_NE(p.worker_pids().at(0), before);
  }
  EXPECT_EQ(p.stats().crashed, 3u);
}

TEST(ConfinedParser, CrashAndHangAreOneFailedParse) {
  Parser p(opts(300ms));
  const std::vector<uint8_t> good(33, 0x04);
  auto crash = p.call(Op::kTestAbort, {});
  ASSERT_FALSE(crash);
  EXPECT_EQ(crash.error().kind, FailureKind::kCrashed);
  EXPECT_EQ(failure_kind_name(crash.error().kind), "parser-crashed");
  EXPECT_NE(crash.error().reason.find("SIGABRT"), std::string::npos) << crash.error().to_string();
  ASSERT_TRUE(p.ima_xattr(good));

  const auto t0 = std::chrono::steady_clock::now();
  auto hang = p.call(Op::kTestLoop, {});
  const auto took = std::chrono::steady_clock::now() - t0;
  ASSERT_FALSE(hang);
  EXPECT_EQ(hang.error().kind, FailureKind::kTimeout);
  EXPECT_EQ(failure_kind_name(hang.error().kind), "parser-timeout");
  EXPECT_GE(took, 300ms);
  EXPECT_LT(took, 2000ms);
  const pid_t hung = std::stoi(hang.error().reason.substr(hang.error().reason.find("pid ") + 4));
  EXPECT_NE(::kill(hung, 0), 0) << "the hung worker is still alive";
  auto next = p.ima_xattr(good);
  ASSERT_TRUE(next) << next.error().to_string();
  EXPECT_EQ(p.stats().timeouts, 1u);
}

// What the appraisal makes of it: a failed appraisal naming the parser's fate, not a pass and
// not a crash of the caller.
TEST(ConfinedParser, CrashedOrHungParseIsAFailedAppraisal) {
  Parser p(opts(300ms));
  policy::Decision d;
  d.appraise = true;
  const auto file = measure::Digest::filled(measure::HashAlgo::kSha256, 0x11);
  const std::vector<measure::Digest> digests{file};
  auto kind_of = [&](std::string_view value) {
    const std::vector<uint8_t> v(value.begin(), value.end());
    const appraise::XattrResult parsed = ima_xattr_or_failure(p, v);
    appraise::AppraiseInput in;
    in.decision = &d;
    in.file_digests = digests;
    in.ima_xattr = std::span<const uint8_t>(v);
    in.ima_xattr_parsed = &parsed;
    const appraise::Appraisal a = appraise::appraise(in);
    EXPECT_FALSE(a.pass) << a.reason;
    EXPECT_EQ(a.status_str(), "invalid-hash") << a.reason;
    return a.malformed ? std::string(appraise::xattr_error_kind_name(*a.malformed)) + " / " + a.reason
                       : "not malformed: " + a.reason;
  };
  auto crashed = kind_of("\x04nsima-test:abort");
  EXPECT_TRUE(crashed.starts_with("parser-crashed / ")) << crashed;
  EXPECT_NE(crashed.find("SIGABRT"), std::string::npos) << crashed;
  auto hung = kind_of("\x04nsima-test:loop");
  EXPECT_TRUE(hung.starts_with("parser-timeout / ")) << hung;
  // The next value is parsed and passes on its merits.
  std::vector<uint8_t> good{0x04, 0x04};
  good.insert(good.end(), file.data(), file.data() + file.size());
  const appraise::XattrResult parsed = ima_xattr_or_failure(p, good);
  ASSERT_TRUE(parsed) << parsed.error().reason;
  appraise::AppraiseInput in;
  in.decision = &d;
  in.file_digests = digests;
  in.ima_xattr = std::span<const uint8_t>(good);
  in.ima_xattr_parsed = &parsed;
  EXPECT_TRUE(appraise::appraise(in).pass);
}

TEST(ConfinedParser, LyingRepliesAreRefused) {
  Parser p(opts());
  auto huge = p.call(Op::kTestHuge, {});
  ASSERT_FALSE(huge);
  EXPECT_EQ(huge.error().kind, FailureKind::kBadReply);
  // Replies a worker could forge, each refused by the daemon's strict decoding.
  std::vector<uint8_t> value = {0x04, 0x04};  // a sha256 digest value
  value.resize(34, 0x5a);
  auto forge = [](std::initializer_list<uint8_t> head, std::vector<uint8_t> digest,
                  std::vector<uint8_t> sig) {
    Writer w;
    for (uint8_t b : head) w.u8(b);
    w.u32(0);
    w.bytes(digest);
    w.bytes(sig);
    return w.out();
  };
  const std::vector<std::vector<uint8_t>> lies = {
      forge({0, 0x04, 0x04, 0}, std::vector<uint8_t>(20, 1), {}),  // sha256 with 20 bytes
      forge({0, 0x01, 0x02, 0}, std::vector<uint8_t>(20, 1), {}),  // type differs from input
      forge({0, 0x04, 0x40, 0}, std::vector<uint8_t>(32, 1), {}),  // algorithm 64
      forge({0, 0x04, 0x04, 0}, std::vector<uint8_t>(32, 1), {9}), // a digest with a signature
      {0, 0x04},                                                   // cut short
      {7},                                                         // unknown status
      {1, 99, 0, 0, 0, 0},                                         // unknown error kind
      {1, 4, 3, 0, 0, 0, 'a', '\n', 'b'},                          // reason with a newline
  };
  for (const auto& lie : lies) {
    EXPECT_FALSE(decode_ima_xattr(lie, value)) << "accepted a forged reply";
    std::vector<uint8_t> req = lie;
    auto body = p.call(Op::kTestReply, req);
    ASSERT_TRUE(body) << body.error().to_string();
    EXPECT_EQ(*body, lie);
  }
  Writer m;
  m.u8(0);
  m.u32(1);
  m.u8(static_cast<uint8_t>(measure::HashAlgo::kMd5));
  m.u8(0);
  m.bytes(std::vector<uint8_t>(16, 1));
  m.str("/x");
  EXPECT_FALSE(decode_manifest(m.out())) << "an md5 manifest entry was accepted";
  Writer o;
  o.u8(0);
  for (const char* s : {"1.0", "../../etc", "created"}) o.str(s);
  o.u8(1);
  o.u64(1);
  o.str("/b");
  o.u32(0);
  EXPECT_FALSE(decode_oci_state(o.out())) << "a container id with slashes was accepted";
}

// Forged rpm replies (Op::kRpmHeader), each refused; the well-formed one beside them decodes.
TEST(ConfinedParser, RpmHeaderLyingRepliesAreRefused) {
  struct Entry {
    std::vector<uint8_t> digest;
    std::string path;
  };
  auto reply = [](std::vector<Entry> entries,
                  std::vector<std::pair<std::string, std::string>> problems,
                  std::vector<uint8_t> tail = {}) {
    Writer w;
    w.u8(0);
    w.u32(static_cast<uint32_t>(entries.size()));
    for (const auto& e : entries) {
      w.bytes(e.digest);
      w.str(e.path);
    }
    w.u32(static_cast<uint32_t>(problems.size()));
    for (const auto& [where, what] : problems) {
      w.str(where);
      w.str(what);
    }
    for (uint8_t b : tail) w.u8(b);
    return w.out();
  };
  auto refusal = [](uint32_t code, std::string msg, std::string where) {
    Writer w;
    w.u8(1);
    w.u32(code);
    w.str(msg);
    w.str(where);
    return w.out();
  };
  const std::vector<uint8_t> d32(32, 0xab);
  auto good = decode_rpm_header(
      reply({{d32, "/usr/bin/x"}}, {{"/usr/lib/y", "regular file without a sha256 digest"}}));
  ASSERT_TRUE(good) << good.error();
  ASSERT_TRUE(*good);
  ASSERT_EQ((*good)->entries.size(), 1u);
  EXPECT_EQ((*good)->entries[0].path, "/usr/bin/x");
  EXPECT_EQ((*good)->entries[0].digest.algo(), measure::HashAlgo::kSha256);
  ASSERT_EQ((*good)->problems.size(), 1u);
  auto refused = decode_rpm_header(refusal(EBADMSG, "refused: unsigned package", ""));
  ASSERT_TRUE(refused) << refused.error();
  ASSERT_FALSE(*refused);
  EXPECT_EQ(refused->error(), "refused: unsigned package");

  std::vector<uint8_t> huge_count = {0, 0xff, 0xff, 0xff, 0xff};
  const std::vector<std::pair<const char*, std::vector<uint8_t>>> lies = {
      {"a 20-byte digest", reply({{std::vector<uint8_t>(20, 1), "/x"}}, {})},
      {"a 64-byte digest", reply({{std::vector<uint8_t>(64, 1), "/x"}}, {})},
      {"an empty path", reply({{d32, ""}}, {})},
      {"a path with a NUL", reply({{d32, std::string("/a\0b", 4)}}, {})},
      {"a problem with a newline", reply({}, {{"/x", "bad\nline"}})},
      {"a problem without a reason", reply({}, {{"/x", ""}})},
      {"trailing bytes", reply({{d32, "/x"}}, {}, {0})},
      {"an entry count past the frame", huge_count},
      {"cut short", {0, 1, 0, 0, 0, 32, 0, 0, 0}},
      {"unknown status", {7}},
      {"empty", {}},
      {"a refusal with another errno", refusal(EINVAL, "refused: x", "")},
      {"a refusal naming a place", refusal(EBADMSG, "refused: x", "/etc/passwd")},
      {"a refusal on two lines", refusal(EBADMSG, "refused:\nx", "")},
  };
  for (const auto& [what, lie] : lies) EXPECT_FALSE(decode_rpm_header(lie)) << "accepted " << what;
  // Through a worker: a forged reply is a bad reply, and that worker is killed.
  Parser p(opts());
  auto body = p.call(Op::kTestReply, lies[0].second);
  ASSERT_TRUE(body) << body.error().to_string();
  EXPECT_FALSE(decode_rpm_header(*body));
  // The worker refuses a request that does not decode, with a reason, and lives on.
  const std::vector<uint8_t> junk = {5, 0, 0};
  auto r = p.call(Op::kRpmHeader, junk);
  ASSERT_TRUE(r) << r.error().to_string();
  auto d = decode_rpm_header(*r);
  ASSERT_TRUE(d) << d.error();
  ASSERT_FALSE(*d);
  EXPECT_EQ(d->error(), "the rpm request does not decode");
  // Bytes that are no rpm: librpm's refusal, in the installed worker (its filter, no keys).
  Parser installed(ParserOptions{NSIMA_PARSE_BIN, 2000ms, 1});
  const std::string text = "not an rpm package at all";
  auto n = installed.rpm_header(
      {}, std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(text.data()), text.size()));
  ASSERT_TRUE(n) << n.error().to_string();
  ASSERT_FALSE(*n);
  EXPECT_EQ(n->error(), "refused: not an rpm package");
  EXPECT_EQ(installed.stats().crashed, 0u);
}

TEST(ConfinedParser, ThreadsShareThePool) {
  Parser p(opts(2000ms, 2));
  std::vector<std::thread> ts;
  std::atomic<int> bad{0};
  const std::string hex(64, 'e');
  for (int t = 0; t < 6; ++t)
    ts.emplace_back([&, t] {
      for (int i = 0; i < 100; ++i) {
        std::vector<uint8_t> v = {0x04, 0x04};
        v.resize(34, static_cast<uint8_t>(t * 100 + i));
        auto x = p.ima_xattr(v);
        if (!x || !*x || (*x)->digest != std::vector<uint8_t>(v.begin() + 2, v.end())) bad++;
        auto m = p.manifest(hex + "  /f" + std::to_string(i) + "\n", "m");
        if (!m || !*m || (*m)->entries.at(0).path != "/f" + std::to_string(i)) bad++;
      }
    });
  for (auto& t : ts) t.join();
  EXPECT_EQ(bad, 0);
  EXPECT_EQ(p.stats().spawned, 2u);
  EXPECT_EQ(p.worker_pids().size(), 2u);
}

TEST(ConfinedParser, WorkerKilledWhileIdleIsReplacedQuietly) {
  std::vector<std::vector<pid_t>> seen;  // outlives the Parser
  Parser p(opts());
  p.on_pids_changed([&](const std::vector<pid_t>& pids) { seen.push_back(pids); });
  ASSERT_TRUE(p.start());
  const pid_t first = p.worker_pids().at(0);
  ASSERT_EQ(::kill(first, SIGKILL), 0);
  for (int i = 0; i < 200 && ::kill(first, 0) == 0; ++i) {
    // a zombie until reaped: wait until it is dead
    if (std::ifstream("/proc/" + std::to_string(first) + "/stat").peek() == EOF) break;
    std::string stat;
    std::getline(std::ifstream("/proc/" + std::to_string(first) + "/stat"), stat);
    if (stat.find(") Z") != std::string::npos) break;
    std::this_thread::sleep_for(5ms);
  }
  auto x = p.ima_xattr(std::vector<uint8_t>(33, 0x04));
  ASSERT_TRUE(x) << x.error().to_string();
  EXPECT_NE(p.worker_pids().at(0), first);
  ASSERT_GE(seen.size(), 3u);  // started, reaped, started
  EXPECT_EQ(seen[0], std::vector<pid_t>{first});
  EXPECT_TRUE(seen[1].empty());
}

TEST(ConfinedParser, MissingWorkerIsUnavailable) {
  Parser p(ParserOptions{"/nonexistent/nsima-parse", 500ms, 1});
  auto s = p.start();
  ASSERT_FALSE(s);
  EXPECT_NE(s.error().to_string().find("/nonexistent/nsima-parse"), std::string::npos);
  auto x = p.ima_xattr(std::vector<uint8_t>(33, 0x04));
  ASSERT_FALSE(x);
  EXPECT_EQ(x.error().kind, FailureKind::kUnavailable);
}

}  // namespace
}  // namespace nsima::confine
