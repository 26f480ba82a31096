// SPDX-License-Identifier: Apache-2.0
// daemon/model's encoders against tests/unit/model/vectors.txt, which gen_vectors.py computes
// with Python's hashlib from docs/model-encoding.md alone. The inputs below are the script's,
// case by case; every field of every line is compared (encoding, H(COE), H(CELL), coefficient,
// measurement, state), and every case of the file must be one the test knows.
#include <gtest/gtest.h>

#include <fstream>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "common/hex.h"
#include "model/coefficient.h"
#include "model/model.h"

namespace nsima::model {
namespace {

std::vector<uint8_t> bytes(std::string_view s) { return {s.begin(), s.end()}; }
Digest H(std::string_view s) { return sha256(bytes(s)); }
Digest digest_hex(const std::string& hex) {
  auto b = from_hex(hex);
  EXPECT_TRUE(b && b->size() == kDigestSize) << hex;
  Digest d{};
  if (b && b->size() == kDigestSize) std::copy(b->begin(), b->end(), d.begin());
  return d;
}
std::array<uint8_t, 16> uuid_hex(const std::string& hex) {
  auto b = from_hex(hex);
  std::array<uint8_t, 16> u{};
  std::copy(b->begin(), b->end(), u.begin());
  return u;
}

std::vector<std::vector<std::string>> read_vectors() {
  std::ifstream in(NSIMA_SOURCE_DIR "/tests/unit/model/vectors.txt");
  EXPECT_TRUE(in) << "tests/unit/model/vectors.txt is missing";
  std::vector<std::vector<std::string>> out;
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    std::istringstream ss(line);
    std::vector<std::string> f;
    for (std::string w; ss >> w;) f.push_back(w);
    out.push_back(f);
  }
  return out;
}

const std::map<std::string, Coe>& coes() {
  static const std::map<std::string, Coe> m = {
      {"root", Coe{0, 0, 0, 0, 0, 0, 0, 0, 0x000001ffffffffffull}},
      {"user", Coe{1000, 1000, 1000, 1000, 1000, 1000, 1000, 1000, 0}},
      {"setuid", Coe{1000, 0, 0, 1000, 1000, 1000, 0, 1000, 0x400}},
  };
  return m;
}

struct Case {
  EventType type;
  Cell cell;
};

// The script's cases, with the TASK_IDs it derives (task1: exec of busybox by an unseen
// process; task2: its child exec'ing it set-uid).
std::map<std::string, Case> cases(const Digest& task1, const Digest& task2) {
  const auto uuid = uuid_hex("00112233445566778899aabbccddeeff");
  const InodeCell ext4_exe{0, 0, 0100755, 0xEF53, uuid};
  const FileCell exe{0x8020, ext4_exe, "/bin/busybox", H("busybox content")};
  std::map<std::string, Case> m;
  m["exec_busybox"] = {EventType::kBprmCommittedCreds, exe};
  m["exec_child_setuid"] = {EventType::kBprmCommittedCreds, exe};
  m["open_passwd"] = {EventType::kFileOpen,
                      FileCell{0x8000, InodeCell{0, 0, 0100644, 0xEF53, uuid}, "/etc/passwd",
                               H("root:x:0:0::/root:/bin/sh\n")}};
  m["open_tmpfs_write"] = {
      EventType::kFileOpen,
      FileCell{0x8241,
               InodeCell{1000, 1000, 0100600, kTmpfsMagic,
                         uuid_hex("ffeeddccbbaa99887766554433221100")},
               "/tmp/out", H("")}};
  m["open_overlay"] = {EventType::kFileOpen,
                       FileCell{0x8000, InodeCell{0, 0, 0100755, 0x794C7630, {}},
                                "/usr/lib/libc.so.6", H("libc")}};
  m["mmap_exec_file"] = {EventType::kMmapFile,
                         MmapCell{FileCell{0x8000, ext4_exe, "/bin/busybox", H("busybox content")},
                                  5, 0x802}};
  m["mmap_exec_anon"] = {EventType::kMmapFile, MmapCell{std::nullopt, 7, 0x22}};
  m["mprotect_file"] = {EventType::kFileMprotect, MprotectCell{ext4_exe, 5, 5}};
  m["mprotect_anon"] = {EventType::kFileMprotect, MprotectCell{std::nullopt, 7, 7}};
  m["ptrace_attach"] = {EventType::kPtraceAccessCheck, PtraceCell{task2, 0x0a}};
  m["ptrace_traceme"] = {EventType::kPtraceTraceme, TracemeCell{task1}};
  m["kill_cross"] = {EventType::kTaskKill, KillCell{task2, 9, 1}};
  m["kill_unknown_target"] = {EventType::kTaskKill, KillCell{kZeroDigest, 15, 0}};
  m["socket_tcp"] = {EventType::kSocketCreate, SocketCreateCell{2, 1, 6, 0}};
  SocketAddrCell inet{kAfInet, 1, 6, 443, {93, 184, 216, 34}, 0, 0, {}};
  m["connect_inet"] = {EventType::kSocketConnect, inet};
  SocketAddrCell inet6{kAfInet6, 2, 17, 53, {}, 0x12345, 2, {}};
  inet6.addr[15] = 1;
  m["bind_inet6"] = {EventType::kSocketBind, inet6};
  m["connect_unix"] = {EventType::kSocketConnect,
                       SocketAddrCell{kAfUnix, 1, 0, 0, {}, 0, 0, bytes("/run/app.sock")}};
  std::vector<uint8_t> abstract = bytes("abstract");
  abstract.insert(abstract.begin(), 0);
  m["connect_unix_abstract"] = {EventType::kSocketConnect,
                                SocketAddrCell{kAfUnix, 5, 0, 0, {}, 0, 0, abstract}};
  m["bind_netlink"] = {EventType::kSocketBind,
                       SocketAddrCell{16, 3, 0, 0, {}, 0, 0, *from_hex("00003930000001000000")}};
  return m;
}

TEST(VectorsTest, CoeEncodingAndDigest) {
  size_t n = 0;
  for (const auto& f : read_vectors()) {
    if (f[0] != "coe") continue;
    ASSERT_EQ(f.size(), 4u);
    ASSERT_TRUE(coes().count(f[1])) << "vectors.txt has a COE the test does not know: " << f[1];
    auto enc = encode_coe(coes().at(f[1]));
    EXPECT_EQ(to_hex(enc), f[2]) << f[1];
    EXPECT_EQ(to_hex(sha256(enc)), f[3]) << f[1];
    ++n;
  }
  EXPECT_EQ(n, coes().size());
}

TEST(VectorsTest, CellsAndCoefficients) {
  const Digest task1 = task_id(kZeroDigest, coes().at("root"),
                               std::get<FileCell>(cases({}, {}).at("exec_busybox").cell));
  const Digest task2 = task_id(task1, coes().at("setuid"),
                               std::get<FileCell>(cases({}, {}).at("exec_busybox").cell));
  auto all = cases(task1, task2);
  std::set<std::string> checked;
  for (const auto& f : read_vectors()) {
    if (f[0] != "cell") continue;
    ASSERT_EQ(f.size(), 9u);
    const std::string& name = f[1];
    ASSERT_TRUE(all.count(name)) << "vectors.txt has a case the test does not know: " << name;
    const Case& c = all.at(name);
    EXPECT_EQ(event_name(c.type), f[2]) << name;
    const Coe& coe = coes().at(f[3]);
    Digest ptask = digest_hex(f[4]), task = digest_hex(f[5]);
    auto enc = encode_cell(c.type, c.cell);
    ASSERT_TRUE(enc) << name << ": " << enc.error().to_string();
    EXPECT_EQ(to_hex(*enc), f[6]) << name;
    EXPECT_EQ(to_hex(sha256(*enc)), f[7]) << name;
    auto coeff = coefficient(c.type, ptask, task, coe, c.cell);
    ASSERT_TRUE(coeff);
    EXPECT_EQ(to_hex(*coeff), f[8]) << name;
    if (c.type == EventType::kBprmCommittedCreds) {
      EXPECT_EQ(to_hex(task_id(ptask, coe, std::get<FileCell>(c.cell))), f[8])
          << name << ": the exec coefficient is the TASK_ID";
    }
    checked.insert(name);
  }
  EXPECT_EQ(checked.size(), all.size()) << "a case of the test is missing from vectors.txt";
}

TEST(VectorsTest, MeasurementAndState) {
  size_t n = 0;
  for (const auto& f : read_vectors()) {
    if (f[0] != "state") continue;
    ASSERT_EQ(f.size(), 7u);
    Digest base = digest_hex(f[2]), agg = digest_hex(f[3]);
    std::vector<Digest> pts;
    if (f[4] != "-") {
      std::stringstream ss(f[4]);
      for (std::string h; std::getline(ss, h, ',');) pts.push_back(digest_hex(h));
    }
    EXPECT_EQ(to_hex(compute_measurement(base, agg, pts)), f[5]) << f[1];
    EXPECT_EQ(to_hex(compute_state(base, agg, pts)), f[6]) << f[1];
    // the same through a learning Model fed in that order
    Model m(base, agg);
    for (const auto& p : pts) m.observe(p, EventType::kFileOpen);
    EXPECT_EQ(to_hex(m.measurement()), f[5]) << f[1];
    EXPECT_EQ(to_hex(m.state()), f[6]) << f[1];
    ++n;
  }
  EXPECT_EQ(n, 5u);
}

TEST(VectorsTest, CellOfTheWrongKindIsRefused) {
  auto r = encode_cell(EventType::kTaskKill, FileCell{});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, EINVAL);
  EXPECT_EQ(r.error().where, "task_kill");
  EXPECT_NE(r.error().message.find("file cell"), std::string::npos) << r.error().message;
  SocketAddrCell big{kAfUnix, 1, 0, 0, {}, 0, 0, std::vector<uint8_t>(kMaxSockaddrData + 1, 'a')};
  auto r2 = encode_cell(EventType::kSocketBind, big);
  ASSERT_FALSE(r2);
  EXPECT_EQ(r2.error().where, "socket_bind");
}

TEST(VectorsTest, EventNamesRoundTrip) {
  for (size_t i = 0; i < kEventTypeCount; ++i) {
    auto t = static_cast<EventType>(i);
    EXPECT_EQ(event_from_name(event_name(t)), t);
  }
  EXPECT_FALSE(event_from_name("file_open "));
  EXPECT_FALSE(event_from_name("inode_create"));
}

}  // namespace
}  // namespace nsima::model
