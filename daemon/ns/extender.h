// SPDX-License-Identifier: Apache-2.0
// PCR extends into one TPM, on their own thread, in the order entries were appended to the lists
// that own PCRs of that TPM, so that a slow TPM never blocks event intake and one namespace's
// slow vTPM never delays another's extends. Every job's list entry is already written (durable in
// the page cache) before the job is queued: after a crash, replaying the list finds the extends
// that did not happen (Recorder::reconcile).
//
// The extender shares ownership of its TPM, so a namespace deleted while extends are queued never
// leaves the thread with a dangling TPM. Errors are reported through a callback that must not
// block or take the pipeline's state: the pipeline posts it to its own thread.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/result.h"
#include "tpm/tpm.h"

namespace nsima::ns {

struct ExtendJob {
  int pcr = 0;
  std::vector<tpm::BankDigest> digests;
  std::string list;    // owning namespace, for messages
  uint64_t index = 0;  // entry index in the owning list
};

class Extender {
 public:
  using ErrorFn = std::function<void(const ExtendJob&, const Error&)>;
  Extender(std::shared_ptr<tpm::Tpm> tpm, ErrorFn on_error);
  ~Extender();  // finishes what is queued, then joins
  Extender(const Extender&) = delete;
  Extender& operator=(const Extender&) = delete;

  void push(ExtendJob job);
  // Jobs pushed so far (a mark for wait()).
  uint64_t pushed() const;
  // Waits until the first `mark` jobs are done (or failed). False on timeout.
  bool wait(uint64_t mark, std::chrono::milliseconds timeout);
  // Blocks until every job queued so far is done.
  void drain();
  uint64_t done() const;
  uint64_t failed() const;
  size_t pending() const;
  tpm::Tpm& tpm() const { return *tpm_; }

 private:
  void run();

  std::shared_ptr<tpm::Tpm> tpm_;
  ErrorFn on_error_;
  mutable std::mutex mu_;
  std::condition_variable cv_, progress_;
  std::deque<ExtendJob> q_;
  bool busy_ = false;
  bool stop_ = false;
  uint64_t pushed_ = 0, done_ = 0, failed_ = 0;
  std::thread thread_;
};

}  // namespace nsima::ns
