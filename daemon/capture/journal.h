// SPDX-License-Identifier: Apache-2.0
// The intake journal: every ring-buffer record is copied here before the ring buffer forgets it
// (libbpf advances the consumer position as soon as the sample callback returns), and stays until
// the pipeline says the event is fully recorded (ack). A SIGKILLed nsimad therefore loses no
// event that was consumed but not yet measured: the next nsimad replays the journal's records
// before it reads the ring buffer (pinned hooks kept filling it meanwhile).
//
// Layout: <dir>/seg-<N>.bin, append-only, records {u32 size, u64 seq, size bytes}; a new segment
// every kSegmentBytes; a segment is deleted once every record in it is acked. A stalled read
// keeps only its own segment alive. Replayed records may have been measured already: their
// entries are then duplicates, which the lists suppress as kernel IMA does; a violation may be
// recorded twice (never lost). The directory belongs in /run (tmpfs): the records are only
// meaningful within one boot, and only nsimad's own crash, not the machine's, is covered.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <string>

#include "common/result.h"
#include "common/unique_fd.h"

namespace nsima::capture {

class Journal {
 public:
  static constexpr size_t kSegmentBytes = 1u << 20;
  struct Stats {
    uint64_t appended = 0, acked = 0, replayed = 0, errors = 0;
    size_t segments = 0, unacked = 0;
  };

  // Creates `dir` if needed. Segments already there are the previous run's (replay_previous).
  static Result<std::unique_ptr<Journal>> open(const std::string& dir);
  ~Journal();

  // Calls fn(data, size) for each record the previous run left, oldest first (a torn last
  // record is skipped), then deletes those segments: call it after fn has journaled them anew.
  Result<uint64_t> replay_previous(const std::function<void(const uint8_t*, size_t)>& fn);

  // Thread-safe. A failed append (disk full) is counted and logged once; the event goes on.
  void append(uint64_t seq, const void* data, size_t size);
  void ack(uint64_t seq);
  Stats stats() const;

 private:
  struct Segment {
    uint64_t id = 0;
    std::string path;
    UniqueFd fd;
    uint64_t first_seq = 0, last_seq = 0;
    size_t bytes = 0, unacked = 0;
    bool closed = false;
  };
  explicit Journal(std::string dir) : dir_(std::move(dir)) {}
  Result<void> open_segment_locked(uint64_t first_seq);
  void retire_locked(std::map<uint64_t, Segment>::iterator it);

  std::string dir_;
  mutable std::mutex mu_;
  std::map<uint64_t, Segment> segments_;  // by first seq; the last one is the open one
  std::map<uint64_t, std::string> previous_;  // segment id -> path, from the run before
  std::set<uint64_t> unjournaled_;  // seqs whose append failed (their ack is not counted)
  uint64_t next_id_ = 1;
  Stats stats_;
};

}  // namespace nsima::capture
