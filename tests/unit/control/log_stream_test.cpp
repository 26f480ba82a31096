// SPDX-License-Identifier: Apache-2.0
// The "log" command streams a namespace's list over the control connection (nsimactl reads no
// file of nsimad's): binary chunks that put together are the list file byte for byte, ascii
// chunks equal to the whole-list renderer's output, chunks of whole entries with contiguous
// indexes, "from", "follow" (new entries arrive, the stream ends when the client leaves or
// nsimad stops) and errors in the stream. A real pipeline without BPF or TPM, in a private
// cgroup2 mount (as tests/tpm/pipeline_test.cpp; needs root).
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include <gtest/gtest.h>

#include "control/base64.h"
#include "control/handlers.h"
#include "nsima/control_protocol.h"

namespace nsima::control {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

class LogStreamTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/nsima-logstream-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    cg_ = dir_ + "/cg";
    fs::create_directories(cg_);
    ASSERT_EQ(::mount("none", cg_.c_str(), "cgroup2", 0, nullptr), 0)
        << "mount cgroup2: " << strerror(errno) << " (tests run as root)";
    mounted_ = true;
    fs::create_directories(dir_ + "/files");
    ns::PipelineOptions o;
    o.cgroup_root = cg_;
    o.state_dir = dir_ + "/state";
    o.run_dir = dir_ + "/run";
    o.host_tcti = "";  // no TPM: lists only
    p_ = std::make_unique<ns::Pipeline>(o, nullptr);
    auto r = p_->init();
    ASSERT_TRUE(r) << r.error().to_string();
    p_->start();
    ASSERT_TRUE(p_->load_policy("host", "measure func=FILE_CHECK mask=^MAY_READ\n", "t.policy"));
    ctx_.pipeline = p_.get();
    ctx_.stopping = [this] { return stopping_.load(); };
  }
  void TearDown() override {
    if (p_) p_->stop();
    p_.reset();
    if (mounted_) ::umount(cg_.c_str());
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  // A file read by root in the host namespace, measured before this returns. The path is long
  // on purpose: chunks of 256 entries then span many pages.
  std::string measure_file(int i) {
    std::string path = dir_ + "/files/f" + std::to_string(i) + "-" + std::string(200, 'p');
    std::ofstream(path) << "content " << i;
    Event ev;
    ev.hook = Hook::kFileOpen;
    ev.ns_id = ns::kHostNsId;
    ev.tgid = ev.pid = static_cast<uint32_t>(::getpid());
    struct stat st {}, self {};
    EXPECT_EQ(::stat(path.c_str(), &st), 0);
    ::stat("/proc/self/ns/mnt", &self);
    ev.mnt_ns = static_cast<uint32_t>(self.st_ino);
    ev.kdev = dev_to_kdev(st.st_dev);
    ev.ino = st.st_ino;
    int fd = ::open(path.c_str(), O_RDONLY);
    int gen = 0;
    ::ioctl(fd, FS_IOC_GETVERSION, &gen);
    ::close(fd);
    ev.generation = static_cast<uint32_t>(gen);
    ev.i_mode = st.st_mode;
    ev.stamp = Stamp{st.st_ctim.tv_sec, static_cast<uint32_t>(st.st_ctim.tv_nsec), 0,
                     static_cast<uint64_t>(st.st_size)};
    struct statfs sfs {};
    ::statfs(path.c_str(), &sfs);
    ev.fs_magic = static_cast<uint64_t>(sfs.f_type);
    ev.mask = NSIMA_MAY_READ;
    ev.path = path;
    p_->submit(std::move(ev));
    p_->drain();
    return path;
  }

  std::string list_file() {
    auto v = p_->list_view("host");
    EXPECT_TRUE(v);
    std::ifstream in(v->path, std::ios::binary);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  // Runs one request on a socketpair in its own thread (as the server does); the test is the
  // client end.
  void start_request(const json& req) {
    int sv[2];
    ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    client_.emplace(UniqueFd{sv[1]});
    handler_done_ = false;
    handler_ = std::thread([this, req, fd = sv[0]] {
      Connection server{UniqueFd{fd}};
      handle_request(ctx_, req, server);
      handler_done_ = true;
    });
  }
  json next_line() {
    auto line = client_->read_line(kMaxRequestBytes, std::chrono::seconds(10));
    EXPECT_TRUE(line) << client_->error();
    if (!line) return json();
    auto j = json::parse(*line, nullptr, false);
    EXPECT_TRUE(j.is_object()) << *line;
    return j;
  }
  void finish_request() {
    client_.reset();  // closes the client end
    if (handler_.joinable()) handler_.join();
  }

  struct Streamed {
    json header;
    std::string bytes;
    std::vector<std::pair<uint64_t, uint64_t>> chunks;  // [from, next)
    json last;                                          // the "end" or error line
  };
  // Reads a whole stream without follow.
  Streamed stream(const json& req) {
    Streamed s;
    start_request(req);
    s.header = next_line();
    for (;;) {
      json j = next_line();
      if (!j.contains(kFieldData)) {
        s.last = j;
        break;
      }
      auto b = base64_decode(j[kFieldData].get<std::string>());
      EXPECT_TRUE(b) << "chunk is not base64";
      s.bytes += b.value_or("");
      s.chunks.emplace_back(j[kFieldFrom].get<uint64_t>(), j[kFieldNext].get<uint64_t>());
    }
    finish_request();
    return s;
  }

  std::string dir_, cg_;
  bool mounted_ = false;
  std::unique_ptr<ns::Pipeline> p_;
  DaemonContext ctx_;
  std::atomic<bool> stopping_{false};
  std::optional<Connection> client_;
  std::thread handler_;
  std::atomic<bool> handler_done_{false};
};

TEST_F(LogStreamTest, BinaryIsTheFileAndAsciiTheKernelRenderingInChunksOfWholeEntries) {
  for (int i = 0; i < 600; ++i) measure_file(i);
  const uint64_t entries = p_->list_view("host")->entries;
  ASSERT_EQ(entries, 601u);  // boot_aggregate + 600

  Streamed bin = stream({{"cmd", "log"}, {"ns", "host"}, {"format", "binary"}});
  EXPECT_EQ(bin.header, json({{"ok", true}, {"ns", "host"}, {"format", "binary"}, {"from", 0},
                              {"entries", entries}}));
  EXPECT_TRUE(bin.bytes == list_file()) << bin.bytes.size() << " vs " << list_file().size();
  EXPECT_EQ(bin.last, json({{"end", true}, {"next", entries}}));
  // Contiguous chunks of at most kLogChunkEntries entries.
  ASSERT_EQ(bin.chunks.size(), 3u);
  uint64_t at = 0;
  for (auto [from, next] : bin.chunks) {
    EXPECT_EQ(from, at);
    EXPECT_LE(next - from, kLogChunkEntries);
    at = next;
  }
  EXPECT_EQ(at, entries);

  // ascii (the default format) equals the whole-list renderer (another code path:
  // MeasurementList::render_ascii), one line per entry.
  Streamed ascii = stream({{"cmd", "log"}, {"ns", "host"}});
  auto whole = p_->render_list("host", true);
  ASSERT_TRUE(whole);
  EXPECT_EQ(ascii.header.value("format", ""), "ascii");
  EXPECT_EQ(ascii.bytes, *whole);
  EXPECT_EQ(static_cast<uint64_t>(std::count(ascii.bytes.begin(), ascii.bytes.end(), '\n')),
            entries);
  EXPECT_NE(ascii.bytes.find(" ima-ng sha256:"), std::string::npos);
  EXPECT_EQ(ascii.bytes.substr(0, 3), "23 ");  // the host's PCR

  // from: the tail only, starting at that entry's line.
  Streamed tail = stream({{"cmd", "log"}, {"ns", "host"}, {"from", 590}});
  EXPECT_EQ(tail.header.value("from", 0), 590);
  size_t pos = 0;
  for (int line = 0; line < 590; ++line) pos = whole->find('\n', pos) + 1;
  EXPECT_EQ(tail.bytes, whole->substr(pos));
  Streamed beyond = stream({{"cmd", "log"}, {"ns", "host"}, {"from", 10000}});
  EXPECT_EQ(beyond.bytes, "");
  EXPECT_TRUE(beyond.last.value("end", false));
}

TEST_F(LogStreamTest, FollowSendsNewEntriesUntilTheClientLeavesOrNsimadStops) {
  const std::string first = measure_file(1);
  start_request({{"cmd", "log"}, {"ns", "host"}, {"follow", true}});
  EXPECT_EQ(next_line().value("entries", 0), 2);
  json chunk = next_line();
  EXPECT_EQ(chunk.value("next", 0), 2);
  EXPECT_NE(base64_decode(chunk.value("data", ""))->find(first + "\n"), std::string::npos);
  // A new entry comes down the same stream, from where the last chunk ended.
  const std::string late = measure_file(2);
  chunk = next_line();
  EXPECT_EQ(chunk.value("from", 0), 2);
  EXPECT_EQ(chunk.value("next", 0), 3);
  auto data = base64_decode(chunk.value("data", ""));
  ASSERT_TRUE(data);
  EXPECT_EQ(data->find(first), std::string::npos);
  EXPECT_NE(data->find(late + "\n"), std::string::npos) << *data;
  // The client leaves: the handler notices and returns.
  client_.reset();
  for (int i = 0; i < 50 && !handler_done_; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_TRUE(handler_done_) << "the follow stream outlived its client";
  finish_request();

  // nsimad stopping ends a follow stream with the end line.
  start_request({{"cmd", "log"}, {"ns", "host"}, {"follow", true}, {"format", "binary"}});
  next_line();
  EXPECT_EQ(next_line().value("next", 0), 3);
  stopping_ = true;
  EXPECT_EQ(next_line(), json({{"end", true}, {"next", 3}}));
  finish_request();
}

TEST_F(LogStreamTest, ErrorsAreAnsweredInTheStream) {
  start_request({{"cmd", "log"}, {"ns", "nope"}});
  json j = next_line();
  EXPECT_EQ(j.value("ok", true), false);
  EXPECT_NE(j.value("error", "").find("no such namespace"), std::string::npos) << j.dump();
  finish_request();
}

}  // namespace
}  // namespace nsima::control
