// SPDX-License-Identifier: Apache-2.0
#include "ns/agent_link.h"

#include <cerrno>

#include "common/log.h"

namespace nsima::ns {

namespace agent = model::agent;

AgentLink::AgentLink(AgentLinkOptions o, OnVerdict on_verdict)
    : o_(std::move(o)), on_verdict_(std::move(on_verdict)) {
  thread_ = std::thread([this] { run(); });
}

AgentLink::~AgentLink() {
  {
    std::lock_guard l(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  thread_.join();
}

void AgentLink::submit(agent::Message m) {
  bool full = false;
  {
    std::lock_guard l(mu_);
    if (q_.size() >= o_.queue_capacity) {
      full = true;
      stats_.queue_full++;
    } else {
      q_.push_back(std::move(m));
    }
  }
  if (full) {
    fail(m, Error{ETIMEDOUT, "the agent's queue is full", o_.socket});
    return;
  }
  cv_.notify_one();
}

void AgentLink::set_mode(model::Mode m) {
  std::lock_guard l(mu_);
  o_.mode = m;
}

AgentLink::Stats AgentLink::stats() const {
  std::lock_guard l(mu_);
  return stats_;
}

void AgentLink::fail(const agent::Message& m, const Error& e) {
  const auto* ev = std::get_if<agent::Event>(&m);
  if (!ev) return;  // lineage: nothing to decide
  {
    std::lock_guard l(mu_);
    stats_.failures++;
    stats_.last_error = e.to_string();
  }
  on_verdict_(ev->proc, agent::failure_verdict(o_.fail, ev->seq, e));
}

void AgentLink::run() {
  auto log = logger("ns");
  std::optional<agent::AgentClient> client;
  auto next_try = std::chrono::steady_clock::time_point{};
  for (;;) {
    agent::Message m;
    model::Mode mode;
    {
      std::unique_lock l(mu_);
      cv_.wait(l, [&] { return stop_ || !q_.empty(); });
      if (stop_) return;
      m = std::move(q_.front());
      q_.pop_front();
      mode = o_.mode;
    }
    // (re)connect, at most every second: a dead agent fails events at once, never slowly
    if (!client || !client->connected()) {
      client.reset();
      if (std::chrono::steady_clock::now() >= next_try) {
        next_try = std::chrono::steady_clock::now() + std::chrono::seconds(1);
        auto c = agent::AgentClient::connect(o_.socket, o_.agent_uid);
        if (c) {
          agent::Hello h;
          h.ns = o_.ns_id;
          h.mode = mode;
          auto r = c->hello(h, o_.timeout * 5);
          if (r) {
            client.emplace(std::move(*c));
            std::lock_guard l(mu_);
            stats_.connects++;
            log->info("namespace {}: model agent {} at {} ({} points)", o_.ns_id, r->agent,
                      o_.socket, r->points);
          } else {
            std::lock_guard l(mu_);
            stats_.last_error = r.error().to_string();
          }
        } else {
          std::lock_guard l(mu_);
          stats_.last_error = c.error().to_string();
        }
      }
      std::lock_guard l(mu_);
      stats_.connected = client.has_value();
    }
    if (!client) {
      fail(m, Error{EPIPE, "the model agent is not connected", o_.socket});
      continue;
    }
    if (std::holds_alternative<agent::Event>(m)) {
      auto& ev = std::get<agent::Event>(m);
      ev.seq = ++seq_;
      auto v = client->judge(ev, o_.timeout);
      {
        std::lock_guard l(mu_);
        stats_.sent++;
      }
      if (!v) {
        fail(m, v.error());
        continue;
      }
      {
        std::lock_guard l(mu_);
        stats_.verdicts++;
      }
      on_verdict_(ev.proc, *v);
    } else {
      if (auto* f = std::get_if<agent::Fork>(&m)) f->seq = ++seq_;
      if (auto* x = std::get_if<agent::Exit>(&m)) x->seq = ++seq_;
      if (auto r = client->notify(m, o_.timeout); !r) {
        std::lock_guard l(mu_);
        stats_.last_error = r.error().to_string();
      }
    }
  }
}

}  // namespace nsima::ns
