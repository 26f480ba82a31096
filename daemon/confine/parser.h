// SPDX-License-Identifier: Apache-2.0
// nsimad's (and the OCI hook's) side of the confined parser (README.md): a pool of nsima-parse
// workers, each a process spawned once and kept, asked one request at a time over a socketpair
// with a deadline. The worker's crash (a signal, a seccomp kill), timeout (killed), or a reply
// that does not decode strictly is a Failure for that one parse, never the caller's crash; the
// dead worker is replaced for the next parse. Safe to call from any number of threads.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "appraise/digest_list.h"
#include "appraise/ima_xattr.h"
#include "common/result.h"
#include "common/unique_fd.h"
#include "confine/protocol.h"
#include "hook/oci_state.h"

namespace nsima::confine {

enum class FailureKind {
  kUnavailable,  // no worker could be started, or it refused to confine itself
  kCrashed,      // the worker died on a signal (SIGSYS: seccomp) or exited during the parse
  kTimeout,      // no answer within the deadline: the worker was killed
  kBadReply,     // a reply that does not decode strictly: the worker was killed
  kTooLarge,     // the input is larger than a frame (not sent)
};
std::string_view failure_kind_name(FailureKind k);  // "parser-crashed", "parser-timeout", ...

struct Failure {
  FailureKind kind = FailureKind::kCrashed;
  std::string reason;  // one sentence: which signal, how long, what was wrong
  std::string to_string() const;  // "parser-crashed: killed by signal 31 (SIGSYS) ..."
};

template <class T>
using Parsed = tl::expected<T, Failure>;

struct ParserOptions {
  std::filesystem::path worker;  // the nsima-parse binary (default_worker_path())
  std::chrono::milliseconds deadline{2000};  // per parse, from the request to the whole reply
  unsigned workers = 2;  // processes at most; a caller waits for a free one
};

// `<dir of this executable>/../libexec/nsima/nsima-parse`: the installed layout, and the build
// tree's (nsimad, nsimactl and the hook are in <build>/daemon, the worker in <build>/libexec).
std::filesystem::path default_worker_path();

class Parser {
 public:
  explicit Parser(ParserOptions opts);
  ~Parser();  // kills the workers
  Parser(const Parser&) = delete;
  Parser& operator=(const Parser&) = delete;

  // Starts every worker now (nsimad at start-up: a missing or unconfinable worker is a start
  // error, not a surprise at the first parse).
  Result<void> start();

  Parsed<appraise::XattrResult> ima_xattr(std::span<const uint8_t> value);
  Parsed<Result<appraise::Manifest>> manifest(std::string_view text, std::string_view filename);
  Parsed<Result<hook::OciState>> oci_state(std::string_view text);
  // A control request line of a read-only group member (protocol.h decode_control_request).
  Parsed<Result<nlohmann::json>> control_request(std::string_view line);
  // One rpm package's header read and its signature checked against `keys` (OpenPGP public key
  // packets) by librpm in the worker (appraise::rpm_read_header).
  Parsed<appraise::RpmHeaderResult> rpm_header(std::span<const std::vector<uint8_t>> keys,
                                               std::span<const uint8_t> package);
  // One raw request: the reply body (status byte first). Tests, and the typed calls above.
  Parsed<std::vector<uint8_t>> call(Op op, std::span<const uint8_t> input);

  // The live workers' pids, for the daemon's self-protection (README.md: it must protect them
  // as it protects nsimad). `on_pids_changed` is called after a worker starts or is reaped,
  // with that worker's slot locked: it must not parse through this Parser.
  // It runs on the thread that saw the change.
  std::vector<pid_t> worker_pids() const;
  void on_pids_changed(std::function<void(const std::vector<pid_t>&)> fn);

  struct Stats {
    uint64_t parses = 0, crashed = 0, timeouts = 0, bad_replies = 0, spawned = 0;
  };
  Stats stats() const;

 private:
  struct Worker {
    pid_t pid = -1;
    UniqueFd fd;
  };
  struct Slot {
    size_t index = 0;
    std::mutex m;
    Worker w;
  };
  // A typed call's reply: what `decode` (protocol.h) makes of it, or a counted kBadReply
  // failure naming `what`.
  template <class T, class Decode>
  Parsed<T> decoded(Parsed<std::vector<uint8_t>> body, Decode decode, const char* what);
  Result<Worker> spawn();         // on the spawner thread (see parser.cpp)
  Result<Worker> spawn_here();
  Result<void> ensure(Slot& s);  // a live worker in s (s.m held)
  Failure reap(Slot& s, FailureKind kind, std::string why);  // kill, wait, describe
  void publish(const Slot& s);  // s.w.pid into pids_, then on_pids_changed

  ParserOptions opts_;
  std::vector<std::unique_ptr<Slot>> slots_;
  std::atomic<unsigned> next_{0};
  mutable std::mutex stats_m_;
  Stats stats_;
  std::vector<pid_t> pids_;  // per slot, -1 when none; under stats_m_
  std::function<void(const std::vector<pid_t>&)> pids_fn_;

  // Workers are spawned by one thread that lives as long as the Parser: a worker's
  // PR_SET_PDEATHSIG fires when the *thread* that spawned it ends, and callers' threads (a
  // control connection's) come and go.
  std::mutex spawn_m_;
  std::condition_variable spawn_cv_;
  std::deque<std::function<void()>> spawn_jobs_;
  bool stopping_ = false;
  std::thread spawner_;
};

// The appraisal's view: the worker's parse, or an XattrError of kind kParserCrashed /
// kParserTimeout / kParserFailed whose reason is the Failure's sentence (a failed appraisal).
appraise::XattrResult ima_xattr_or_failure(Parser& p, std::span<const uint8_t> value);

// RpmOptions::read through `p` (nsimactl digests from-rpm): a worker's failure on a package is
// that package's problem, "not read: parser-crashed: nsima-parse (pid N) killed by ...", and the
// next package gets a new worker. `p` must outlive the reader.
appraise::RpmReader rpm_reader(Parser& p);

}  // namespace nsima::confine
