// SPDX-License-Identifier: Apache-2.0
// nsima-model-agent: the reference external modeling agent (docs/model-agent-protocol.md).
//   nsima-model-agent serve --model FILE --socket PATH [--keys DIR] [--allow-uid UID] [--log FILE]
//     enforces a saved model for the nsimad that connects (one connection at a time), logging
//     every decision as a JSON line (stderr by default)
//   nsima-model-agent state --offline FILE [--aggregate HEX]
//     the state and measurement of a model file, computed from the file alone
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <cstring>
#include <iostream>

#include <CLI/CLI.hpp>

#include "appraise/keyring.h"
#include "common/hex.h"
#include "common/unique_fd.h"
#include "model/agent/agent.h"
#include "model/model_file.h"

namespace {

using namespace nsima;
using namespace nsima::model;

int fail(const std::string& message) {
  std::fprintf(stderr, "nsima-model-agent: %s\n", message.c_str());
  return 1;
}

int cmd_state(const std::string& file, const std::string& aggregate_hex) {
  std::optional<Digest> aggregate;
  if (!aggregate_hex.empty()) {
    auto b = from_hex(aggregate_hex);
    if (!b || b->size() != kDigestSize) return fail("--aggregate: expected 64 hex digits");
    Digest d{};
    std::copy(b->begin(), b->end(), d.begin());
    aggregate = d;
  }
  // Offline: the signature (if any) is not checked here; `serve` and nsimad check it.
  std::FILE* f = std::fopen(file.c_str(), "rb");
  if (!f) return fail(file + ": " + std::strerror(errno));
  std::string text;
  char buf[65536];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, f)) > 0;) text.append(buf, n);
  std::fclose(f);
  auto parsed = parse_model(text, file);
  if (!parsed) return fail(parsed.error().to_string());
  OfflineValues v = offline_values(*parsed, aggregate);
  std::printf("state %s\nmeasurement %s\npoints %zu\n", to_hex(v.state).c_str(),
              to_hex(v.measurement).c_str(), v.points);
  return 0;
}

int cmd_serve(const std::string& model_path, const std::string& socket_path,
              const std::string& keys_dir, uid_t allow_uid, const std::string& log_path) {
  appraise::Keyring keys;
  if (!keys_dir.empty()) {
    auto store = appraise::KeyStore::open(keys_dir);
    if (!store) return fail(store.error().to_string());
    auto ring = store->load();
    if (!ring) return fail(ring.error().to_string());
    keys = *ring;
  }
  auto file = read_model_file(model_path, keys);
  if (!file) return fail(file.error().to_string());
  auto model = model_from_file(*file, Mode::kEnforce);
  if (!model) return fail(model.error().to_string());

  std::FILE* log = stderr;
  if (!log_path.empty() && log_path != "-") {
    log = std::fopen(log_path.c_str(), "a");
    if (!log) return fail(log_path + ": " + std::strerror(errno));
  }
  auto write_log = [log](std::string_view line) {
    std::fprintf(log, "%.*s\n", static_cast<int>(line.size()), line.data());
    std::fflush(log);
  };
  agent::ModelAgent agent(Modeler(std::move(*model)), "nsima-model-agent", write_log);

  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof addr.sun_path) return fail(socket_path + ": path too long");
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size() + 1);
  UniqueFd lfd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!lfd) return fail(std::string("socket: ") + std::strerror(errno));
  ::unlink(socket_path.c_str());
  mode_t old = ::umask(0077);  // only the owner (nsimad's uid is checked again by SO_PEERCRED)
  int rc = ::bind(lfd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  ::umask(old);
  if (rc != 0) return fail(socket_path + ": bind: " + std::strerror(errno));
  if (::listen(lfd.get(), 4) != 0) return fail(std::string("listen: ") + std::strerror(errno));
  std::signal(SIGPIPE, SIG_IGN);
  write_log(std::string("{\"agent\":\"ready\",\"points\":") +
            std::to_string(agent.modeler().model().known_count()) + ",\"state\":\"" +
            to_hex(agent.modeler().model().state()) + "\"}");
  for (;;) {
    UniqueFd c(::accept4(lfd.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!c) {
      if (errno == EINTR) continue;
      return fail(std::string("accept: ") + std::strerror(errno));
    }
    auto r = agent::serve_agent(c.get(), agent, allow_uid);
    if (!r) write_log(std::string("{\"connection\":\"closed\",\"error\":\"") + r.error().to_string() + "\"}");
  }
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"nsima reference modeling agent"};
  app.require_subcommand(1);
  auto* serve = app.add_subcommand("serve", "enforce a saved model for nsimad");
  std::string model_path, socket_path, keys_dir, log_path;
  uid_t allow_uid = 0;
  serve->add_option("--model", model_path, "model file (nsimactl model save)")->required();
  serve->add_option("--socket", socket_path, "unix socket to listen on")->required();
  serve->add_option("--keys", keys_dir, "key store directory: the model must be signed by one");
  serve->add_option("--allow-uid", allow_uid, "uid nsimad runs as (SO_PEERCRED)");
  serve->add_option("--log", log_path, "decision log (JSON lines; default stderr)");
  auto* state = app.add_subcommand("state", "state and measurement of a model file");
  std::string offline, aggregate;
  state->add_option("--offline", offline, "model file")->required();
  state->add_option("--aggregate", aggregate, "hardware aggregate to use instead of the file's");
  CLI11_PARSE(app, argc, argv);
  if (*serve) return cmd_serve(model_path, socket_path, keys_dir, allow_uid, log_path);
  return cmd_state(offline, aggregate);
}
