// SPDX-License-Identifier: Apache-2.0
#include "control/server.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "common/log.h"
#include "confine/parser.h"
#include "control/schema.h"
#include "nsima/control_protocol.h"

namespace nsima::control {

namespace {

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// One line to a peer we are about to close, without blocking on a full socket.
void tell(int fd, const nlohmann::json& j) {
  std::string line = j.dump() + "\n";
  (void)::send(fd, line.data(), line.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
}

nlohmann::json fail(const std::string& msg) { return {{kFieldOk, false}, {kFieldError, msg}}; }

std::string list_text(const std::vector<std::string_view>& v) {
  std::string out;
  for (auto s : v) out += (out.empty() ? "" : ", ") + std::string(s);
  return out;
}

}  // namespace

Server::Server(std::string socket_path, Handler handler, ServerOptions options)
    : path_(std::move(socket_path)),
      handler_(std::move(handler)),
      opts_(std::move(options)),
      budget_(std::max(opts_.max_buffered_bytes, kMaxRequestBytes + 1)) {}

Server::~Server() { stop(); }

Result<void> Server::start() {
  std::error_code ec;
  auto dir = std::filesystem::path(path_).parent_path();
  std::filesystem::create_directories(dir, ec);
  if (ec) return make_error(ec.value(), "cannot create the socket directory: " + ec.message(),
                            dir.string());
  // Read-only group members must reach the socket: the directory and socket are theirs to
  // traverse and connect to; SO_PEERCRED decides what they may do.
  bool group = !opts_.read_gids.empty();
  ::chmod(dir.c_str(), group ? 0711 : 0700);
  ::unlink(path_.c_str());

  listen_fd_.reset(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!listen_fd_) return make_error(errno, strerror(errno), "socket");
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path_.size() >= sizeof addr.sun_path)
    return make_error(ENAMETOOLONG, "socket path too long", path_);
  std::strcpy(addr.sun_path, path_.c_str());
  mode_t old = ::umask(0177);
  int rc = ::bind(listen_fd_.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  ::umask(old);
  if (rc != 0) return make_error(errno, std::string("bind failed: ") + strerror(errno), path_);
  if (group) {
    if (::chown(path_.c_str(), 0, opts_.read_gids.front()) != 0 ||
        ::chmod(path_.c_str(), 0660) != 0)
      return make_error(errno, std::string("cannot give the socket to group ") +
                                   opts_.read_group + ": " + strerror(errno),
                        path_);
  }
  if (::listen(listen_fd_.get(), 128) != 0)
    return make_error(errno, std::string("listen failed: ") + strerror(errno), path_);
  accept_thread_ = std::thread([this] { accept_loop(); });
  logger("control")->info("listening on {} (at most {} connections{})", path_,
                          opts_.max_connections,
                          group ? ", group " + opts_.read_group + " may read" : "");
  return {};
}

void Server::stop() {
  if (stop_.exchange(true)) return;
  if (accept_thread_.joinable()) accept_thread_.join();
  std::list<Client> clients;
  {
    std::lock_guard lock(mu_);
    clients.swap(clients_);
  }
  for (auto& c : clients)
    if (c.thread.joinable()) c.thread.join();
  ::unlink(path_.c_str());
}

Server::Stats Server::stats() {
  Stats s;
  s.accepted = accepted_;
  s.refused_peer = refused_peer_;
  s.refused_full = refused_full_;
  s.evicted = evicted_;
  s.line_timeouts = line_timeouts_;
  s.idle_timeouts = idle_timeouts_;
  s.budget_refusals = budget_refusals_;
  s.buffered_bytes = budget_.used.load();
  std::lock_guard lock(mu_);
  s.threads = clients_.size();
  for (auto& c : clients_) {
    if (c.state->done.load() || c.state->evicted.load()) continue;
    ++s.connections;
    if (c.state->access == Access::kRead) ++s.read_connections;
  }
  return s;
}

Result<Access> Server::check_peer(int fd, std::string* who) {
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
    return make_error(errno, "permission denied: the peer's credentials are unknown");
  *who = "uid " + std::to_string(cred.uid) + " pid " + std::to_string(cred.pid);
  if (cred.uid == 0) return Access::kFull;
  if (!opts_.read_gids.empty()) {
    std::vector<gid_t> groups(64);
    socklen_t glen = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
    if (::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &glen) != 0 &&
        errno == ERANGE) {
      groups.resize(glen / sizeof(gid_t));
      ::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &glen);
    }
    groups.resize(glen / sizeof(gid_t));
    groups.push_back(cred.gid);
    for (gid_t g : groups)
      if (std::find(opts_.read_gids.begin(), opts_.read_gids.end(), g) != opts_.read_gids.end())
        return Access::kRead;
    return make_error(EACCES, "permission denied: nsimad accepts root, and members of group " +
                                  opts_.read_group + " for reading commands");
  }
  return make_error(EACCES, "permission denied: nsimad accepts root only (no read-only group "
                            "is configured: [control] read_group)");
}

void Server::accept_loop() {
  auto log = logger("control");
  while (!stop_.load()) {
    pollfd p{listen_fd_.get(), POLLIN, 0};
    int r = ::poll(&p, 1, 200);
    if (r <= 0) {
      // Quiet: join the threads of connections that ended (their fds are closed already).
      std::lock_guard lock(mu_);
      reap_locked();
      continue;
    }
    UniqueFd fd(::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!fd) {
      // Out of descriptors (EMFILE/ENFILE): the pending connection stays; never spin on it.
      if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    std::string who;
    auto access = check_peer(fd.get(), &who);
    if (!access) {
      tell(fd.get(), fail(access.error().message));
      ++refused_peer_;
      log->warn("refused control connection from {}", who);
      continue;
    }
    std::lock_guard lock(mu_);
    reap_locked();
    // The read group stops below the cap (root_reserve slots are root's); root takes any slot.
    const size_t group_cap =
        opts_.max_connections - std::min(opts_.root_reserve, opts_.max_connections - 1);
    size_t readers = 0, holding = 0;
    for (auto& c : clients_) {
      if (c.state->evicted.load()) continue;  // its slot is already given up
      ++holding;
      readers += c.state->access == Access::kRead ? 1 : 0;
    }
    bool room = true;
    if (*access == Access::kRead && readers >= group_cap)
      room = make_room_locked(/*read_only=*/true);
    else if (holding >= opts_.max_connections)
      room = make_room_locked(/*read_only=*/false);
    if (!room) {
      tell(fd.get(),
           fail(*access == Access::kRead
                    ? "too many connections: nsimad serves group " + opts_.read_group +
                          " at most " + std::to_string(group_cap) +
                          " at once and every one is busy; try again"
                    : "too many connections: nsimad serves at most " +
                          std::to_string(opts_.max_connections) +
                          " at once and every one is busy; try again"));
      ++refused_full_;
      continue;
    }
    ++accepted_;
    auto st = std::make_shared<ClientState>();
    st->fd = fd.get();
    st->waiting_since_ms = now_ms();
    st->access = *access;
    Connection conn(std::move(fd));
    conn.set_budget(&budget_);
    conn.set_line_timeout(opts_.line_timeout);
    std::thread t([this, st, a = *access, c = std::move(conn)]() mutable {
      serve(c, *st, a);
      {
        std::lock_guard l(st->mu);
        st->closed = true;  // c's fd closes when this lambda ends: no shutdown() after this
      }
      st->done.store(true);
    });
    clients_.push_back(Client{std::move(t), st});
  }
}

bool Server::make_room_locked(bool read_only) {
  ClientState* oldest = nullptr;
  for (auto& c : clients_) {
    auto& s = *c.state;
    // One already evicted never makes room twice: its thread may still be ending (closed but
    // not yet done), or may have read a line just before it was picked and cleared busy after.
    if (s.done || s.busy || s.evicted) continue;
    if (read_only && s.access != Access::kRead) continue;
    if (!oldest || s.waiting_since_ms < oldest->waiting_since_ms) oldest = &s;
  }
  if (!oldest) return false;
  std::lock_guard l(oldest->mu);
  if (oldest->closed) {  // ending anyway: its slot frees now
    oldest->evicted = true;
    return true;
  }
  tell(oldest->fd, fail("closed: nsimad needed this connection's slot (" +
                        std::to_string(opts_.max_connections) +
                        " connections at most) and this one had no whole request"));
  ::shutdown(oldest->fd, SHUT_RDWR);
  oldest->busy = true;  // never picked twice; its thread ends on the shutdown
  oldest->evicted = true;
  ++evicted_;
  return true;
}

void Server::reap_locked() {
  for (auto it = clients_.begin(); it != clients_.end();) {
    if (it->state->done.load()) {
      it->thread.join();
      it = clients_.erase(it);
    } else {
      ++it;
    }
  }
}

void Server::serve(Connection& conn, ClientState& st, Access access) {
  auto log = logger("control");
  int64_t idle_since = now_ms();
  while (!stop_.load()) {
    auto line = conn.read_line(kMaxRequestBytes, std::chrono::milliseconds(200));
    if (!line) {
      const std::string& err = conn.error();
      if (err == kErrTimedOut) {
        if (conn.buffered() == 0 && now_ms() - idle_since > opts_.idle_timeout.count()) {
          ++idle_timeouts_;
          conn.send(fail("closed: no request within " +
                         std::to_string(opts_.idle_timeout.count()) + " ms"));
          return;
        }
        continue;
      }
      if (err == kErrClosed) return;
      if (err.starts_with("request line not completed")) ++line_timeouts_;
      if (err.starts_with("nsimad's request buffers are full")) ++budget_refusals_;
      conn.send(fail(err));
      return;
    }
    if (line->empty()) continue;
    st.busy = true;
    nlohmann::json req;
    std::string bad;  // the request is refused with this sentence
    if (access == Access::kRead && opts_.parser) {
      auto parsed = opts_.parser->control_request(*line);
      if (!parsed)
        bad = "bad request: nsimad's confined parser failed on it (" + parsed.error().to_string() +
              ")";
      else if (!*parsed)
        bad = "bad request: " + parsed->error().message;
      else
        req = std::move(**parsed);
    } else {
      req = nlohmann::json::parse(*line, nullptr, /*allow_exceptions=*/false);
      if (req.is_discarded())
        bad = "bad request: not JSON (expected a JSON object with a \"cmd\" string)";
    }
    if (!bad.empty()) {
      conn.send(fail(bad));
    } else {
      const auto* cmd = req.is_object() && req.contains(kFieldCmd) && req[kFieldCmd].is_string()
                            ? &req[kFieldCmd].get_ref<const std::string&>()
                            : nullptr;
      if (cmd && *cmd == kCmdHello) {
        // The versioned hello (docs/control-protocol.md): an unknown version ends the
        // connection, so nothing is misread under another version's rules.
        if (auto ok = validate_request(req); !ok) {
          conn.send(fail(ok.error().message));
        } else if (req[kFieldVersion].get<uint64_t>() != kProtocolVersion) {
          conn.send(fail("protocol version " + req[kFieldVersion].dump() +
                         " is not supported: nsimad speaks version " +
                         std::to_string(kProtocolVersion)));
          return;
        } else {
          nlohmann::json allowed = nlohmann::json::array();
          for (const auto& c : command_specs())
            if (access == Access::kFull || is_read_command(c.name))
              allowed.push_back(std::string(c.name));
          conn.send({{kFieldOk, true},
                     {kFieldVersion, kProtocolVersion},
                     {"server", opts_.server_name},
                     {"access", access_name(access)},
                     {"commands", allowed}});
        }
      } else if (cmd && access == Access::kRead && find_command(*cmd) &&
                 !is_read_command(*cmd)) {
        conn.send(fail("permission denied: \"" + *cmd + "\" is for root; group " +
                       opts_.read_group + " may use " + list_text(read_commands())));
      } else {
        // The handler checks the request against its command's schema (control/schema.h).
        try {
          handler_(req, conn);
        } catch (const std::exception& e) {
          conn.send(fail(std::string("internal error: ") + e.what()));
        }
      }
    }
    st.waiting_since_ms = idle_since = now_ms();
    st.busy = false;
  }
}

}  // namespace nsima::control
