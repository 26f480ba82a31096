// SPDX-License-Identifier: Apache-2.0
#include "model/model.h"

#include <algorithm>
#include <cerrno>

namespace nsima::model {

std::string_view mode_name(Mode mode) {
  switch (mode) {
    case Mode::kLearn:
      return "learn";
    case Mode::kSeal:
      return "seal";
    case Mode::kEnforce:
      return "enforce";
  }
  return "?";
}

std::optional<Mode> mode_from_name(std::string_view name) {
  for (Mode m : {Mode::kLearn, Mode::kSeal, Mode::kEnforce})
    if (mode_name(m) == name) return m;
  return std::nullopt;
}

// ---------------------------------------------------------------- Model

Model::Model(const Digest& base, const Digest& aggregate)
    : base_(base), aggregate_(aggregate), measurement_(extend(kZeroDigest, base, aggregate)) {}

Result<void> Model::set_mode(Mode mode) {
  if (sealed() && mode == Mode::kLearn)
    return make_error(EPERM, "a sealed model cannot learn again (sealing is one-way)",
                      std::string(mode_name(mode_)));
  mode_ = mode;
  return {};
}

size_t Model::insert(const Digest& c, EventType event, std::string_view description, bool known) {
  size_t i = points_.size();
  points_.push_back(Point{c, event, std::string(description), known, 1});
  index_.emplace(c, i);
  if (known) ++known_;
  measurement_ = extend(measurement_, base_, c);
  return i;
}

Result<void> Model::add_known(const Digest& c, EventType event, std::string description) {
  if (index_.count(c)) return make_error(EEXIST, "the coefficient is in the model twice");
  insert(c, event, description, true);
  return {};
}

Observation Model::observe(const Digest& c, EventType event, std::string_view description) {
  auto it = index_.find(c);
  if (it != index_.end()) {
    Point& p = points_[it->second];
    ++p.count;
    return Observation{p.known, false, !p.known};
  }
  bool learn = mode_ == Mode::kLearn;
  insert(c, event, description, learn);
  return Observation{learn, true, !learn};
}

Digest Model::state() const {
  std::vector<Digest> all;
  all.reserve(points_.size());
  for (const auto& p : points_) all.push_back(p.coefficient);
  return compute_state(base_, aggregate_, all);
}

Digest compute_measurement(const Digest& base, const Digest& aggregate,
                           std::span<const Digest> points) {
  Digest m = extend(kZeroDigest, base, aggregate);
  std::unordered_map<Digest, bool, DigestHash> seen;
  for (const auto& p : points)
    if (seen.emplace(p, true).second) m = extend(m, base, p);
  return m;
}

Digest compute_state(const Digest& base, const Digest& aggregate, std::span<const Digest> points) {
  std::vector<Digest> sorted(points.begin(), points.end());
  std::sort(sorted.begin(), sorted.end());  // std::array compares like memcmp
  sorted.erase(std::unique(sorted.begin(), sorted.end()), sorted.end());
  Digest s = sha256({kZeroDigest, sha256({base, aggregate})});
  for (const auto& p : sorted) s = extend(s, base, p);
  return s;
}

// ---------------------------------------------------------------- Modeler

Modeler::Modeler(Model model, size_t max_forensics)
    : model_(std::move(model)), max_forensics_(max_forensics) {}

void Modeler::fork(const ProcKey& parent, const ProcKey& child) {
  TaskState p = task(parent);
  tasks_[child] = TaskState{p.task_id, p.task_id, p.untrusted};
}

void Modeler::exit(const ProcKey& proc) { tasks_.erase(proc); }

TaskState Modeler::task(const ProcKey& proc) const {
  auto it = tasks_.find(proc);
  return it == tasks_.end() ? TaskState{} : it->second;
}

Decision Modeler::judge(const ProcKey& proc, TaskState& t, const Digest& c, EventType type,
                        std::string_view description) {
  Observation o = model_.observe(c, type, description);
  Decision d;
  d.coefficient = c;
  d.known = o.known;
  d.first = o.first;
  d.forensic = o.forensic;
  if (o.forensic && o.first) {
    ForensicRecord r{++forensics_seq_, proc, type, c, std::string(description)};
    if (forensics_.size() < max_forensics_)
      forensics_.push_back(std::move(r));
    else
      ++forensics_dropped_;
  }
  if (o.forensic && model_.mode() == Mode::kEnforce && !t.untrusted) {
    t.untrusted = true;
    d.newly_untrusted = true;
  }
  d.untrusted = t.untrusted;
  d.deny = t.untrusted && model_.mode() == Mode::kEnforce;
  return d;
}

Decision Modeler::exec(const ProcKey& proc, const Coe& new_coe, const FileCell& exe,
                       std::string_view description) {
  TaskState& t = tasks_[proc];  // a process never seen starts with zeros
  t.task_id = task_id(t.ptask_id, new_coe, exe);
  // an unreadable file is modeled with a zero digest: never a known executable
  if (model_.mode() == Mode::kLearn && exe.digest != kZeroDigest) model_.add_executable(exe.digest);
  return judge(proc, t, t.task_id, EventType::kBprmCommittedCreds, description);
}

Decision Modeler::refused_exec(const ProcKey& proc, const Coe& new_coe, const FileCell& exe,
                               std::string_view description) {
  TaskState& t = tasks_[proc];
  return judge(proc, t, task_id(t.ptask_id, new_coe, exe), EventType::kBprmCommittedCreds,
               description);
}

Result<Decision> Modeler::event(const ProcKey& proc, EventType type, const Coe& coe,
                                const Cell& cell, std::string_view description) {
  if (type == EventType::kBprmCommittedCreds)
    return make_error(EINVAL, "an exec is modeled by Modeler::exec (it changes the TASK_ID)",
                      std::string(event_name(type)));
  TaskState t = task(proc);
  auto c = coefficient(type, t.ptask_id, t.task_id, coe, cell);
  if (!c) return tl::unexpected(c.error());
  TaskState& stored = tasks_[proc];
  return judge(proc, stored, *c, type, description);
}

}  // namespace nsima::model
