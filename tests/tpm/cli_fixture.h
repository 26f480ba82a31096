// SPDX-License-Identifier: Apache-2.0
// nsimactl against a pipeline of pipeline_fixture.h served on a control socket by the test's
// own process, nsimactl (and the tools that check its output) run as children through bash:
// shared by cli_evmctl_test.cpp and cli_verify_test.cpp.
#pragma once

#include <sys/wait.h>

#include <cstdio>
#include <memory>
#include <string>

#include "control/handlers.h"
#include "control/server.h"
#include "pipeline_fixture.h"

namespace nsima::ns::pipetest {

struct Out {
  int rc = -1;
  std::string text;  // stdout and stderr
};

// `cmd` through bash -o pipefail (a pipeline fails when any part does), with a 60 s timeout,
// stdout and stderr together.
inline Out sh(const std::string& cmd) {
  Out o;
  std::string q;  // the command single-quoted for bash -c
  for (char ch : "timeout 60 " + cmd + " 2>&1") q += ch == '\'' ? std::string("'\\''") : std::string(1, ch);
  FILE* f = ::popen(("bash -o pipefail -c '" + q + "'").c_str(), "r");
  if (!f) return o;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) o.text.append(buf, n);
  int st = ::pclose(f);
  o.rc = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return o;
}

// A PipelineTest whose pipeline is also served on dir_/run/nsimad.sock (serve()).
class CliServedTest : public PipelineTest {
 protected:
  void serve() {
    ctx_.pipeline = p_.get();
    socket_ = dir_ + "/run/nsimad.sock";
    server_ = std::make_unique<control::Server>(
        socket_, [this](const nlohmann::json& req, control::Connection& conn) {
          control::handle_request(ctx_, req, conn);
        });
    ctx_.stopping = [this] { return server_->stopping(); };
    auto s = server_->start();
    ASSERT_TRUE(s) << s.error().to_string();
  }
  void TearDown() override {
    if (server_) server_->stop();
    server_.reset();
    PipelineTest::TearDown();
  }
  // The shell words of `nsimactl --socket SOCKET ARGS`.
  std::string nsimactl(const std::string& args) {
    return std::string(NSIMACTL) + " --socket " + socket_ + " " + args;
  }

  control::DaemonContext ctx_;
  std::unique_ptr<control::Server> server_;
  std::string socket_;
};

}  // namespace nsima::ns::pipetest
