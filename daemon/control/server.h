// SPDX-License-Identifier: Apache-2.0
// nsimad's control socket: AF_UNIX stream, a 0700 directory, peers checked with SO_PEERCRED:
// root may use every command, members of the configured read-only group the reading commands
// (control/access.h), everyone else is refused. One thread per connection; each request line
// goes to the handler. Limits keep one client from starving the others (docs/
// control-protocol.md, "Limits"): a cap on connections (at the cap, the connection that has
// waited longest without a whole request is closed for the newcomer), a deadline for a begun
// request line, an idle timeout between requests, and a budget of bytes buffered across all
// connections. The versioned hello is answered here.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.h"
#include "common/unique_fd.h"
#include "control/access.h"
#include "control/connection.h"

namespace nsima::confine {
class Parser;
}

namespace nsima::control {

struct ServerOptions {
  std::string server_name = "nsimad";  // hello's "server"
  // Members of these groups (primary or supplementary, SO_PEERGROUPS) may use the reading
  // commands; `read_group` names them in messages ("" = no such group: root only).
  std::vector<gid_t> read_gids;
  std::string read_group;
  size_t max_connections = 128;
  // Of those, slots only root may take: the read-only group's connections (streams: watch,
  // log --follow) stop at max_connections - root_reserve, so they never lock root out.
  size_t root_reserve = 8;
  std::chrono::milliseconds line_timeout{5000};   // a begun request line must end within this
  std::chrono::milliseconds idle_timeout{60000};  // a connection without a request is closed
  size_t max_buffered_bytes = size_t{64} << 20;   // >= kMaxRequestBytes
  // The read-only group's request lines are parsed by this confined worker (confine/), not
  // here: its failure refuses the request, never ends nsimad. Null: parsed in process (root's
  // are, always).
  confine::Parser* parser = nullptr;
};

class Server {
 public:
  // The handler answers on the connection; it may keep it (streaming) until the peer closes.
  using Handler = std::function<void(const nlohmann::json& request, Connection& conn)>;

  Server(std::string socket_path, Handler handler, ServerOptions options = {});
  ~Server();

  Result<void> start();
  void stop();
  bool stopping() const { return stop_.load(); }

  struct Stats {
    uint64_t accepted = 0, refused_peer = 0, refused_full = 0, evicted = 0, line_timeouts = 0,
             idle_timeouts = 0, budget_refusals = 0;
    size_t connections = 0, read_connections = 0, buffered_bytes = 0;
    size_t threads = 0;  // connection threads not joined yet (ended ones are joined within 200 ms)
  };
  Stats stats();

 private:
  struct ClientState {
    std::mutex mu;
    bool closed = false;  // under mu: the fd is about to close, never shut it down
    int fd = -1;
    std::atomic<bool> done{false};
    std::atomic<bool> busy{false};  // in the handler (a request, or a stream)
    // Shut down to make room (make_room_locked): its thread is ending; it no longer holds a
    // slot, so the newcomer it made room for does not count it too.
    std::atomic<bool> evicted{false};
    std::atomic<int64_t> waiting_since_ms{0};  // steady clock; since the last request ended
    Access access = Access::kFull;
  };
  struct Client {
    std::thread thread;
    std::shared_ptr<ClientState> state;
  };

  void accept_loop();
  void serve(Connection& conn, ClientState& st, Access access);
  // Whether a peer may connect, and with which access; the refusal sentence otherwise.
  Result<Access> check_peer(int fd, std::string* who);
  // At a cap: evicts the longest-waiting idle connection (of the read group only, with
  // `read_only`). False: every candidate is busy.
  bool make_room_locked(bool read_only);
  void reap_locked();       // joins the threads of connections that ended

  std::string path_;
  Handler handler_;
  ServerOptions opts_;
  ByteBudget budget_;
  UniqueFd listen_fd_;
  std::thread accept_thread_;
  std::atomic<bool> stop_{false};
  std::mutex mu_;
  std::list<Client> clients_;
  std::atomic<uint64_t> accepted_{0}, refused_peer_{0}, refused_full_{0}, evicted_{0},
      line_timeouts_{0}, idle_timeouts_{0}, budget_refusals_{0};
};

}  // namespace nsima::control
