// SPDX-License-Identifier: Apache-2.0
#include "control/server.h"

#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "common/log.h"
#include "nsima/control_protocol.h"

namespace nsima::control {

Server::Server(std::string socket_path, Handler handler)
    : path_(std::move(socket_path)), handler_(std::move(handler)) {}

Server::~Server() { stop(); }

Result<void> Server::start() {
  std::error_code ec;
  auto dir = std::filesystem::path(path_).parent_path();
  std::filesystem::create_directories(dir, ec);
  if (ec) return make_error(ec.value(), "cannot create the socket directory: " + ec.message(),
                            dir.string());
  ::chmod(dir.c_str(), 0700);
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
  if (::listen(listen_fd_.get(), 64) != 0)
    return make_error(errno, std::string("listen failed: ") + strerror(errno), path_);
  accept_thread_ = std::thread([this] { accept_loop(); });
  logger("control")->info("listening on {}", path_);
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

void Server::accept_loop() {
  auto log = logger("control");
  while (!stop_.load()) {
    pollfd p{listen_fd_.get(), POLLIN, 0};
    int r = ::poll(&p, 1, 200);
    if (r <= 0) continue;
    UniqueFd fd(::accept4(listen_fd_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!fd) continue;
    ucred cred{};
    socklen_t len = sizeof cred;
    Connection conn(std::move(fd));
    if (::getsockopt(conn.fd(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0 || cred.uid != 0) {
      conn.send({{kFieldOk, false}, {kFieldError, "permission denied: nsimad accepts root only"}});
      log->warn("refused control connection from uid {} pid {}", cred.uid, cred.pid);
      continue;
    }
    std::lock_guard lock(mu_);
    reap_locked();
    auto done = std::make_shared<std::atomic<bool>>(false);
    std::thread t([this, done, c = std::move(conn)]() mutable {
      serve(std::move(c));
      done->store(true);
    });
    clients_.push_back(Client{std::move(t), done});
  }
}

void Server::reap_locked() {
  for (auto it = clients_.begin(); it != clients_.end();) {
    if (it->done->load()) {
      it->thread.join();
      it = clients_.erase(it);
    } else {
      ++it;
    }
  }
}

void Server::serve(Connection conn) {
  while (!stop_.load()) {
    auto line = conn.read_line(kMaxRequestBytes, std::chrono::milliseconds(500));
    if (!line) {
      if (conn.error() == "timed out") continue;
      if (conn.error() != "connection closed")
        conn.send({{kFieldOk, false}, {kFieldError, conn.error()}});
      return;
    }
    if (line->empty()) continue;
    auto req = nlohmann::json::parse(*line, nullptr, /*allow_exceptions=*/false);
    if (req.is_discarded()) {
      conn.send({{kFieldOk, false},
                 {kFieldError, "bad request: not JSON (expected a JSON object with a \"cmd\" "
                               "string)"}});
      continue;
    }
    // The handler checks the request against its command's schema (control/schema.h).
    try {
      handler_(req, conn);
    } catch (const std::exception& e) {
      conn.send({{kFieldOk, false}, {kFieldError, std::string("internal error: ") + e.what()}});
    }
  }
}

}  // namespace nsima::control
