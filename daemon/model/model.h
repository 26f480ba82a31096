// SPDX-License-Identifier: Apache-2.0
// A namespace's security model (TSEM's internal TMA, ima-facts §5.6): the set of coefficients
// it knows, in the order they were first seen (the trajectory), with the measurement (ordered)
// and the state (order-independent) defined in docs/model-encoding.md.
//
// Modes:
//   learn    every new coefficient joins the model (free modeling)
//   seal     an unknown coefficient is a forensic point: it extends the measurement and the
//            state (so both show the deviation) but does not join the model; nothing is denied
//   enforce  sealed, and the process that produced an unknown coefficient becomes untrusted,
//            with the processes it forks afterwards, for good (Modeler)
// Sealing is one-way: a sealed model never learns again (TSEM's `seal` control is too).
//
// Modeler adds the processes: TASK_ID / PTASK_ID lineage across fork and exec and the trust
// status. Neither class does I/O or locking; the owner serialises calls.
#pragma once

#include <cstdint>
#include <cstring>
#include <deque>
#include <optional>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/result.h"
#include "model/coefficient.h"

namespace nsima::model {

enum class Mode : uint8_t { kLearn, kSeal, kEnforce };
std::string_view mode_name(Mode mode);
std::optional<Mode> mode_from_name(std::string_view name);

struct DigestHash {
  size_t operator()(const Digest& d) const noexcept {
    uint64_t v;  // a coefficient is a SHA-256 output: any 8 bytes are a good hash
    std::memcpy(&v, d.data(), sizeof v);
    return static_cast<size_t>(v);
  }
};

struct Point {
  Digest coefficient{};
  EventType event = EventType::kFileOpen;
  std::string description;  // for people; never hashed
  bool known = true;        // false: a forensic point (first seen while sealed)
  uint64_t count = 1;       // occurrences (TSEM's occupancy); not part of measurement or state
};

struct Observation {
  bool known = false;     // in the model (already, or learned by this observation)
  bool first = false;     // first occurrence: the measurement was extended
  bool forensic = false;  // not in the model while sealed
};

class Model {
 public:
  explicit Model(const Digest& base = kZeroDigest, const Digest& aggregate = kZeroDigest);

  Mode mode() const { return mode_; }
  bool sealed() const { return mode_ != Mode::kLearn; }
  // learn -> seal | enforce, seal <-> enforce; EPERM for a sealed model asked to learn.
  Result<void> set_mode(Mode mode);

  // Adds a known point as a model file does (extends the measurement); EEXIST if present.
  Result<void> add_known(const Digest& c, EventType event, std::string description = {});
  // One occurrence of coefficient `c` in the current mode.
  Observation observe(const Digest& c, EventType event, std::string_view description = {});
  bool knows(const Digest& c) const {
    auto it = index_.find(c);
    return it != index_.end() && points_[it->second].known;
  }

  const Digest& base() const { return base_; }
  const Digest& aggregate() const { return aggregate_; }
  const Digest& measurement() const { return measurement_; }
  Digest state() const;  // sorts a copy of the points: O(n log n)

  // The sha256 of every file an exec of the model ran (the digest in its exec points' CELL),
  // learned with them: an enforcing namespace's kernel hook refuses any other content at exec,
  // before it runs (its TASK_ID cannot be a known point). Not hashed into measurement or state
  // (each exec point covers its digest); saved as `exec` lines. Returns true if new.
  bool add_executable(const Digest& d) { return executables_.insert(d).second; }
  const std::set<Digest>& executables() const { return executables_; }

  // Every unique coefficient in arrival order, known and forensic.
  const std::vector<Point>& points() const { return points_; }
  size_t known_count() const { return known_; }
  size_t forensic_count() const { return points_.size() - known_; }

 private:
  size_t insert(const Digest& c, EventType event, std::string_view description, bool known);

  Mode mode_ = Mode::kLearn;
  Digest base_, aggregate_, measurement_;
  std::vector<Point> points_;
  std::unordered_map<Digest, size_t, DigestHash> index_;
  size_t known_ = 0;
  std::set<Digest> executables_;
};

// The definitions on their own, for verifiers and `model state --offline`: `points` in arrival
// order (repeats ignored) for the measurement, in any order for the state.
Digest compute_measurement(const Digest& base, const Digest& aggregate,
                           std::span<const Digest> points);
Digest compute_state(const Digest& base, const Digest& aggregate, std::span<const Digest> points);

// A process: thread-group id + start time (group leader's start_boottime, ns), since pids are
// reused.
struct ProcKey {
  uint32_t tgid = 0;
  uint64_t start = 0;
  bool operator==(const ProcKey&) const = default;
};
struct ProcKeyHash {
  size_t operator()(const ProcKey& k) const noexcept {
    return std::hash<uint64_t>()(k.start * 0x9e3779b97f4a7c15ull ^ k.tgid);
  }
};

struct TaskState {
  Digest ptask_id{};  // the parent's TASK_ID at fork
  Digest task_id{};   // computed at the last exec (inherited at fork)
  bool untrusted = false;
};

struct Decision {
  Digest coefficient{};
  bool known = false;
  bool first = false;
  bool forensic = false;
  bool untrusted = false;        // the process is untrusted after this event
  bool newly_untrusted = false;  // ... because of this event
  bool deny = false;             // enforce mode and the process is untrusted: refuse the access
};

struct ForensicRecord {
  uint64_t seq = 0;  // 1, 2, ... over the modeler's life
  ProcKey proc;
  EventType event = EventType::kFileOpen;
  Digest coefficient{};
  std::string description;
};

class Modeler {
 public:
  explicit Modeler(Model model, size_t max_forensics = 4096);

  Model& model() { return model_; }
  const Model& model() const { return model_; }

  // Lineage: the child's PTASK_ID and TASK_ID are the parent's TASK_ID; it inherits untrust.
  void fork(const ProcKey& parent, const ProcKey& child);
  void exit(const ProcKey& proc);
  // exec: the new TASK_ID (computed with the process's PTASK_ID and the new credentials) is
  // the exec event's coefficient.
  Decision exec(const ProcKey& proc, const Coe& new_coe, const FileCell& exe,
                std::string_view description = {});
  // An exec the kernel refused before it ran (its content is not a known executable): judged
  // like exec() (an unknown coefficient: forensics, untrusted in enforce mode), but the
  // process keeps its TASK_ID, since it still runs its old program.
  Decision refused_exec(const ProcKey& proc, const Coe& new_coe, const FileCell& exe,
                        std::string_view description = {});
  // Any other event (EINVAL for kBprmCommittedCreds: use exec, or a cell of the wrong kind).
  Result<Decision> event(const ProcKey& proc, EventType type, const Coe& coe, const Cell& cell,
                         std::string_view description = {});

  // What nsima holds for a process; a process never seen has zeros and is trusted.
  TaskState task(const ProcKey& proc) const;
  Digest task_id_of(const ProcKey& proc) const { return task(proc).task_id; }
  bool untrusted(const ProcKey& proc) const { return task(proc).untrusted; }
  size_t tracked() const { return tasks_.size(); }

  // Unknown coefficients while sealed, first occurrence each, oldest first; at most
  // max_forensics are kept, `forensics_dropped` counts the ones that did not fit.
  const std::deque<ForensicRecord>& forensics() const { return forensics_; }
  uint64_t forensics_dropped() const { return forensics_dropped_; }

 private:
  Decision judge(const ProcKey& proc, TaskState& task, const Digest& c, EventType type,
                 std::string_view description);

  Model model_;
  std::unordered_map<ProcKey, TaskState, ProcKeyHash> tasks_;
  std::deque<ForensicRecord> forensics_;
  size_t max_forensics_;
  uint64_t forensics_seq_ = 0;
  uint64_t forensics_dropped_ = 0;
};

}  // namespace nsima::model
