// SPDX-License-Identifier: Apache-2.0
// The control server's contract beyond one request (docs/control-protocol.md): the versioned
// hello, who may do what (root everything, the read-only group reading commands, others
// refused, from SO_PEERCRED of real peers that setuid in a child), and the limits: many clients
// that send half a line and wait do not keep `status` from being answered (eviction at the
// connection cap), a begun line has a deadline (also when trickled), an idle connection is
// closed, and bytes buffered across connections have a budget that closing gives back; the
// group's request lines are parsed by the confined worker, whose failure refuses one request.
#include <grp.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <functional>
#include <cstring>
#include <filesystem>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "confine/parser.h"
#include "control/server.h"
#include "nsima/control_protocol.h"

namespace nsima::control {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr gid_t kReadGid = 64123;  // a group no user of this host has
constexpr uid_t kNobody = 65534;

class ServerLimitsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/nsima-srv-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    ::chmod(dir_.c_str(), 0711);  // children that setuid must reach the socket
    socket_ = dir_ + "/run/nsimad.sock";
  }
  void TearDown() override {
    if (server_) server_->stop();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  // A server whose handler answers every request {"ok":true,"cmd":...} (status: after no wait).
  void start(ServerOptions o) {
    o.server_name = "nsimad test";
    server_ = std::make_unique<Server>(
        socket_,
        [](const json& req, Connection& conn) {
          conn.send({{kFieldOk, true}, {kFieldCmd, req.value(kFieldCmd, "")}});
        },
        o);
    auto r = server_->start();
    ASSERT_TRUE(r) << r.error().to_string();
  }
  Connection connect() {
    auto c = connect_to(socket_);
    EXPECT_TRUE(c) << c.error().to_string();
    return std::move(*c);
  }
  static json answer(Connection& c, std::chrono::milliseconds t = std::chrono::seconds(5)) {
    auto line = c.read_line(kMaxRequestBytes, t);
    if (!line) return json{{"read_error", c.error()}};
    return json::parse(*line, nullptr, false);
  }

  std::string dir_, socket_;
  std::unique_ptr<Server> server_;
};

TEST_F(ServerLimitsTest, HelloStatesTheVersionAndAccessAndRefusesOtherVersions) {
  start({});
  Connection c = connect();
  ASSERT_TRUE(c.send({{kFieldCmd, kCmdHello}, {kFieldVersion, kProtocolVersion},
                      {"client", "test"}}));
  json a = answer(c);
  EXPECT_EQ(a.value(kFieldOk, false), true) << a;
  EXPECT_EQ(a.value(kFieldVersion, 0), kProtocolVersion);
  EXPECT_EQ(a.value("server", ""), "nsimad test");
  EXPECT_EQ(a.value("access", ""), "full");
  EXPECT_NE(a["commands"].dump().find("\"ns_create\""), std::string::npos) << a;
  ASSERT_TRUE(c.send({{kFieldCmd, kCmdStatus}}));  // the same connection goes on
  EXPECT_EQ(answer(c).value(kFieldCmd, ""), "status");

  Connection old = connect();
  ASSERT_TRUE(old.send({{kFieldCmd, kCmdHello}, {kFieldVersion, 2}}));
  EXPECT_EQ(answer(old).value(kFieldError, ""),
            "protocol version 2 is not supported: nsimad speaks version 1");
  EXPECT_EQ(answer(old).value("read_error", ""), kErrClosed) << "closed after the refusal";

  Connection bad = connect();
  ASSERT_TRUE(bad.send({{kFieldCmd, kCmdHello}, {kFieldVersion, "one"}}));
  EXPECT_EQ(answer(bad).value(kFieldError, ""),
            "field \"version\" must be a non-negative integer, got string");
}

// Runs `fn` in a child that drops to uid nobody with `groups`; its exit status is the result.
int as_user(const std::vector<gid_t>& groups, gid_t gid, const std::function<int()>& fn) {
  pid_t pid = ::fork();
  if (pid == 0) {
    if (::setgroups(groups.size(), groups.data()) != 0 || ::setgid(gid) != 0 ||
        ::setuid(kNobody) != 0)
      _exit(100);
    _exit(fn());
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : 200;
}

TEST_F(ServerLimitsTest, RootEverythingReadGroupReadsOnlyOthersRefused) {
  ServerOptions o;
  o.read_gids = {kReadGid};
  o.read_group = "nsima-readers";
  start(o);
  struct stat st {};
  ASSERT_EQ(::stat(socket_.c_str(), &st), 0);
  EXPECT_EQ(st.st_gid, kReadGid);
  EXPECT_EQ(st.st_mode & 0777, 0660u);

  // A supplementary member: reads, is refused a change.
  auto member = [this]() -> int {
    auto c = connect_to(socket_);
    if (!c) return 1;
    c->send({{kFieldCmd, kCmdHello}, {kFieldVersion, kProtocolVersion}});
    json h = answer(*c);
    if (h.value("access", "") != "read") return 2;
    if (h["commands"].dump().find("ns_create") != std::string::npos) return 3;
    c->send({{kFieldCmd, kCmdStatus}});
    if (answer(*c).value(kFieldCmd, "") != "status") return 4;
    c->send({{kFieldCmd, kCmdLog}, {kFieldNs, "host"}});
    if (answer(*c).value(kFieldCmd, "") != "log") return 5;
    c->send({{kFieldCmd, kCmdPolicyLoad}, {kFieldNs, "host"}, {kFieldBuiltin, "tcb"}});
    json d = answer(*c);
    if (d.value(kFieldOk, true) ||
        d.value(kFieldError, "").find("permission denied: \"policy_load\" is for root; group "
                                      "nsima-readers may use hello, status") != 0)
      return 6;
    c->send({{kFieldCmd, kCmdWatch}, {kFieldCgroup, "/x"}});  // reads (never creates)
    if (answer(*c).value(kFieldCmd, "") != "watch") return 7;
    c->send({{kFieldCmd, kCmdVerdict}, {kFieldCgroup, "/x"}, {kFieldPath, "/f"},
             {kFieldVerdict, "deny"}});
    if (answer(*c).value(kFieldError, "").find("permission denied") != 0) return 8;
    return 0;
  };
  EXPECT_EQ(as_user({kReadGid}, kNobody, member), 0);
  EXPECT_EQ(as_user({}, kReadGid, member), 0) << "the primary group counts too";
  // Not a member: the socket's mode keeps it out; opened to all, SO_PEERCRED refuses it, and
  // says why.
  ASSERT_EQ(::chmod(socket_.c_str(), 0666), 0);
  EXPECT_EQ(as_user({}, kNobody, [this]() -> int {
              auto c = connect_to(socket_);
              if (!c) return 1;
              json a = answer(*c);
              return a.value(kFieldError, "") ==
                             "permission denied: nsimad accepts root, and members of group "
                             "nsima-readers for reading commands"
                         ? 0
                         : 2;
            }),
            0);
  EXPECT_EQ(server_->stats().refused_peer, 1u);
}

TEST_F(ServerLimitsTest, ReadGroupRequestsAreParsedByTheConfinedWorker) {
  confine::Parser parser(confine::ParserOptions{NSIMA_PARSE_TEST_BIN, std::chrono::seconds(2), 1});
  ASSERT_TRUE(parser.start());
  ServerOptions o;
  o.read_gids = {kReadGid};
  o.read_group = "nsima-readers";
  o.parser = &parser;
  start(o);
  auto raw = [](Connection& c, const std::string& line) {
    return ::send(c.fd(), line.data(), line.size(), MSG_NOSIGNAL) ==
           static_cast<ssize_t>(line.size());
  };
  const auto parses0 = parser.stats().parses;
  EXPECT_EQ(as_user({kReadGid}, kNobody, [&]() -> int {
              auto c = connect_to(socket_);
              if (!c) return 1;
              c->send({{kFieldCmd, kCmdStatus}});
              json a = answer(*c);
              if (a.value(kFieldCmd, "") != "status") return 2;
              if (!raw(*c, "\x01\xff garbage \x7f\n")) return 3;
              if (answer(*c).value(kFieldError, "") !=
                  "bad request: not JSON (expected a JSON object with a \"cmd\" string)")
                return 4;
              // the worker dies on this one: that request is refused, the connection goes on
              if (!raw(*c, "{\"cmd\":\"nsima-test:abort\"}\n")) return 5;
              const std::string e = answer(*c).value(kFieldError, "");
              if (e.find("bad request: nsimad's confined parser failed on it (parser-crashed") != 0)
                return 6;
              c->send({{kFieldCmd, kCmdLog}, {kFieldNs, "host"}});
              if (answer(*c).value(kFieldCmd, "") != "log") return 7;
              return 0;
            }),
            0);
  const auto st = parser.stats();
  EXPECT_EQ(st.parses - parses0, 4u) << "every line of the member went through the worker";
  EXPECT_EQ(st.crashed, 1u);
  // root's lines are parsed in process
  Connection c = connect();
  ASSERT_TRUE(c.send({{kFieldCmd, kCmdStatus}}));
  EXPECT_EQ(answer(c).value(kFieldCmd, ""), "status");
  EXPECT_EQ(parser.stats().parses, st.parses);
}

// 300 clients each send half a request and wait; `status` is still answered at once: at the
// connection cap (32 here) the longest-waiting of them is closed for the newcomer. Their lines
// would only time out after 60 s, so the timeout is not what lets status in.
TEST_F(ServerLimitsTest, StalledClientsDoNotHoldStatus) {
  rlimit rl{4096, 4096};
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &rl), 0);  // 300 client ends + at most ~64 server ends
  ServerOptions o;
  o.max_connections = 32;
  o.line_timeout = std::chrono::seconds(60);
  start(o);
  std::vector<Connection> stalled;
  for (int i = 0; i < 300; ++i) {
    stalled.push_back(connect());
    // Half a line, raw (send_line would end it).
    ASSERT_EQ(::send(stalled.back().fd(), "{\"cmd\":", 7, MSG_NOSIGNAL), 7);
  }
  auto t0 = Clock::now();
  Connection c = connect();
  ASSERT_TRUE(c.send({{kFieldCmd, kCmdStatus}}));
  json a = answer(c, std::chrono::seconds(2));
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
  EXPECT_EQ(a.value(kFieldCmd, ""), "status") << a;
  EXPECT_LT(ms, 2000);
  RecordProperty("status_ms_with_300_stalled", std::to_string(ms));
  // The evicted connections' threads end on their own; the cap holds once they have.
  auto deadline = Clock::now() + std::chrono::seconds(5);
  while (server_->stats().connections > 33 && Clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  auto s = server_->stats();
  EXPECT_LE(s.connections, 33u);
  EXPECT_GE(s.evicted, 300u - 32u);
  EXPECT_EQ(s.refused_full, 0u);
}

TEST_F(ServerLimitsTest, ABegunLineHasADeadlineEvenWhenTrickled) {
  ServerOptions o;
  o.line_timeout = std::chrono::milliseconds(400);
  start(o);
  Connection half = connect();
  ASSERT_EQ(::send(half.fd(), "{\"cmd\":", 7, MSG_NOSIGNAL), 7);
  // A slow client: one byte every 100 ms never leaves the server's read idle for long.
  Connection slow = connect();
  auto t0 = Clock::now();
  std::thread trickle([&] {
    for (int i = 0; i < 30; ++i) {
      if (::send(slow.fd(), " ", 1, MSG_NOSIGNAL) != 1) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  });
  EXPECT_EQ(answer(half).value(kFieldError, ""), "request line not completed within 400 ms");
  EXPECT_EQ(answer(half).value("read_error", ""), kErrClosed);
  EXPECT_EQ(answer(slow).value(kFieldError, ""), "request line not completed within 400 ms");
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count();
  EXPECT_LT(ms, 2500) << "the trickled line was cut at its deadline, not after 3 s of bytes";
  trickle.join();
  EXPECT_EQ(server_->stats().line_timeouts, 2u);
}

TEST_F(ServerLimitsTest, AnIdleConnectionIsClosed) {
  ServerOptions o;
  o.idle_timeout = std::chrono::milliseconds(300);
  start(o);
  Connection c = connect();
  ASSERT_TRUE(c.send({{kFieldCmd, kCmdStatus}}));
  EXPECT_EQ(answer(c).value(kFieldCmd, ""), "status");
  EXPECT_EQ(answer(c).value(kFieldError, ""), "closed: no request within 300 ms");
  EXPECT_EQ(server_->stats().idle_timeouts, 1u);
}

// The budget (its floor is one maximal request, kMaxRequestBytes + 1): two clients holding
// 10 MiB of unfinished lines each exceed it; the second is refused, and closing gives it back.
TEST_F(ServerLimitsTest, BufferedBytesHaveABudgetThatClosingGivesBack) {
  ServerOptions o;
  o.max_buffered_bytes = 0;  // the floor: 16 MiB + 1
  o.line_timeout = std::chrono::seconds(30);
  start(o);
  const std::string chunk(10u << 20, 'x');
  auto push = [&](Connection& c) {
    size_t off = 0;
    while (off < chunk.size()) {
      ssize_t n = ::send(c.fd(), chunk.data() + off, chunk.size() - off, MSG_NOSIGNAL);
      if (n <= 0) return false;
      off += static_cast<size_t>(n);
    }
    return true;
  };
  {
    Connection a = connect();
    ASSERT_TRUE(push(a));
    auto deadline = Clock::now() + std::chrono::seconds(5);
    while (server_->stats().buffered_bytes < chunk.size() && Clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    EXPECT_EQ(server_->stats().buffered_bytes, chunk.size());
    Connection b = connect();
    push(b);  // may end early: the server closes b
    EXPECT_NE(answer(b).value(kFieldError, "").find("nsimad's request buffers are full"),
              std::string::npos);
    EXPECT_EQ(server_->stats().budget_refusals, 1u);
  }
  auto deadline = Clock::now() + std::chrono::seconds(5);
  while (server_->stats().buffered_bytes != 0 && Clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  EXPECT_EQ(server_->stats().buffered_bytes, 0u) << "closed connections gave their bytes back";
  Connection c = connect();
  ASSERT_TRUE(c.send({{kFieldCmd, kCmdStatus}}));
  EXPECT_EQ(answer(c).value(kFieldCmd, ""), "status");
}

}  // namespace
}  // namespace nsima::control
