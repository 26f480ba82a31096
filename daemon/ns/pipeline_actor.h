// SPDX-License-Identifier: Apache-2.0
// Internal to daemon/ns: how the pipeline's control tasks run on its thread (pipeline*.cpp).
#pragma once

#include <chrono>
#include <future>
#include <memory>
#include <thread>
#include <type_traits>

#include "ns/pipeline.h"

namespace nsima::ns {

// Time left until `deadline`, never negative.
inline std::chrono::milliseconds time_left(std::chrono::steady_clock::time_point deadline) {
  auto d = std::chrono::duration_cast<std::chrono::milliseconds>(deadline -
                                                                 std::chrono::steady_clock::now());
  return d.count() > 0 ? d : std::chrono::milliseconds(0);
}

// Runs `f` on the pipeline thread (or here when it is not running) and returns its value.
template <class F>
auto Pipeline::call(F&& f) -> decltype(f()) {
  using R = decltype(f());
  if (!running_.load() || std::this_thread::get_id() == thread_id_) return f();
  auto p = std::make_shared<std::promise<R>>();
  auto fut = p->get_future();
  bool posted = false;
  {
    std::lock_guard lock(mu_);
    if (running_.load()) {
      tasks_.push_back([p, &f]() {
        if constexpr (std::is_void_v<R>) {
          f();
          p->set_value();
        } else {
          p->set_value(f());
        }
      });
      posted = true;
    }
  }
  if (!posted) return f();  // the thread has ended meanwhile
  wake_.notify_one();
  return fut.get();
}

}  // namespace nsima::ns
