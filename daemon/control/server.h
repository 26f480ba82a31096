// SPDX-License-Identifier: Apache-2.0
// nsimad's control socket: AF_UNIX stream, mode 0600 in a 0700 directory, peers checked with
// SO_PEERCRED (root only). One thread per connection; each request line goes to the handler.
#pragma once

#include <atomic>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include <nlohmann/json.hpp>

#include "common/result.h"
#include "common/unique_fd.h"
#include "control/connection.h"

namespace nsima::control {

class Server {
 public:
  // The handler answers on the connection; it may keep it (streaming) until the peer closes.
  using Handler = std::function<void(const nlohmann::json& request, Connection& conn)>;

  Server(std::string socket_path, Handler handler);
  ~Server();

  Result<void> start();
  void stop();
  bool stopping() const { return stop_.load(); }

 private:
  void accept_loop();
  void serve(Connection conn);

  std::string path_;
  Handler handler_;
  UniqueFd listen_fd_;
  std::thread accept_thread_;
  std::atomic<bool> stop_{false};
  struct Client {
    std::thread thread;
    std::shared_ptr<std::atomic<bool>> done;
  };
  void reap_locked();  // joins the threads of connections that ended

  std::mutex mu_;
  std::list<Client> clients_;
  std::atomic<int> active_{0};
};

}  // namespace nsima::control
