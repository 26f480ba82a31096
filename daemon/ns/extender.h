// SPDX-License-Identifier: Apache-2.0
// PCR extends on their own thread, in the order entries were appended to their lists, so that
// a slow TPM never blocks event intake. Every job's list entry is already written (durable in the
// page cache) before the job is queued: after a crash, replaying the list finds the extends that
// did not happen (Pipeline::recover).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/result.h"
#include "tpm/tpm.h"

namespace nsima::ns {

struct ExtendJob {
  tpm::Tpm* tpm = nullptr;
  int pcr = 0;
  std::vector<tpm::BankDigest> digests;
  std::string list;    // owning namespace, for messages
  uint64_t index = 0;  // entry index in the owning list
};

class Extender {
 public:
  // `on_error` runs on the extender thread when an extend fails (the namespace is then marked
  // as disagreeing with its PCR).
  explicit Extender(std::function<void(const ExtendJob&, const Error&)> on_error);
  ~Extender();

  void push(ExtendJob job);
  // Blocks until every job queued so far is done.
  void drain();
  uint64_t done() const;
  uint64_t failed() const;
  size_t pending() const;

 private:
  void run();

  std::function<void(const ExtendJob&, const Error&)> on_error_;
  mutable std::mutex mu_;
  std::condition_variable cv_, idle_;
  std::deque<ExtendJob> q_;
  bool busy_ = false;
  bool stop_ = false;
  uint64_t done_ = 0, failed_ = 0;
  std::thread thread_;
};

}  // namespace nsima::ns
