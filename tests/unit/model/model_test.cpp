// SPDX-License-Identifier: Apache-2.0
// Model and Modeler: the state does not depend on arrival order while the measurement does;
// learn / seal / enforce; forensic points perturb the state; untrust is inherited by later
// children and survives exec; TASK_ID lineage makes a modified binary change every coefficient
// of its process.
#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>

#include "common/hex.h"
#include "model/model.h"

namespace nsima::model {
namespace {

Digest H(std::string_view s) {
  return sha256(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size()));
}

std::vector<Digest> some_points(size_t n) {
  std::vector<Digest> v;
  for (size_t i = 0; i < n; ++i) v.push_back(H("point " + std::to_string(i)));
  return v;
}

FileCell exe(std::string path, std::string content) {
  return FileCell{0x8020, InodeCell{0, 0, 0100755, 0xEF53, {}}, std::move(path),
                  H(content)};
}
FileCell opened(std::string path, std::string content) {
  return FileCell{0x8000, InodeCell{0, 0, 0100644, 0xEF53, {}}, std::move(path),
                  H(content)};
}

const Coe kRoot{0, 0, 0, 0, 0, 0, 0, 0, 0x1ffffffffffull};

TEST(ModelTest, StateIsIndependentOfOrderMeasurementIsNot) {
  const Digest base = H("base"), agg = H("aggregate");
  auto pts = some_points(40);
  std::vector<Digest> arrivals = pts;
  // repeats must not count
  arrivals.insert(arrivals.end(), pts.begin(), pts.begin() + 10);
  std::mt19937 rng(1234);
  std::set<Digest> states, measurements;
  for (int run = 0; run < 5; ++run) {
    std::shuffle(arrivals.begin(), arrivals.end(), rng);
    Model m(base, agg);
    for (const auto& p : arrivals) m.observe(p, EventType::kFileOpen);
    EXPECT_EQ(m.known_count(), 40u);
    states.insert(m.state());
    measurements.insert(m.measurement());
    EXPECT_EQ(m.measurement(), compute_measurement(base, agg, arrivals));
  }
  EXPECT_EQ(states.size(), 1u) << "the state must not depend on arrival order";
  EXPECT_EQ(measurements.size(), 5u) << "the measurement must depend on arrival order";
  EXPECT_EQ(*states.begin(), compute_state(base, agg, pts));
  // base and aggregate are part of it
  EXPECT_NE(compute_state(kZeroDigest, agg, pts), *states.begin());
  EXPECT_NE(compute_state(base, kZeroDigest, pts), *states.begin());
}

TEST(ModelTest, EmptyModelStateEqualsFirstMeasurement) {
  Model m(H("b"), H("a"));
  EXPECT_EQ(m.state(), m.measurement());
  EXPECT_EQ(m.measurement(), extend(kZeroDigest, H("b"), H("a")));
}

TEST(ModelTest, SealedModelRecordsUnknownAsForensicAndStateMoves) {
  auto pts = some_points(5);
  Model m;
  for (const auto& p : pts) EXPECT_TRUE(m.observe(p, EventType::kFileOpen).first);
  const Digest learned_state = m.state(), learned_meas = m.measurement();
  ASSERT_TRUE(m.set_mode(Mode::kSeal));
  // a known point changes nothing
  auto o = m.observe(pts[2], EventType::kFileOpen);
  EXPECT_TRUE(o.known);
  EXPECT_FALSE(o.first);
  EXPECT_EQ(m.state(), learned_state);
  EXPECT_EQ(m.measurement(), learned_meas);
  EXPECT_EQ(m.points()[2].count, 2u);
  // an unknown one is forensic: not known, but in the state and the measurement
  const Digest stranger = H("stranger");
  o = m.observe(stranger, EventType::kFileOpen, "/etc/shadow");
  EXPECT_FALSE(o.known);
  EXPECT_TRUE(o.forensic);
  EXPECT_TRUE(o.first);
  EXPECT_FALSE(m.knows(stranger));
  EXPECT_EQ(m.known_count(), 5u);
  EXPECT_EQ(m.forensic_count(), 1u);
  EXPECT_NE(m.state(), learned_state) << "a deviation must show in the state";
  EXPECT_EQ(m.measurement(), extend(learned_meas, kZeroDigest, stranger));
  // seen again: still forensic, no second extend
  const Digest after = m.measurement();
  o = m.observe(stranger, EventType::kFileOpen);
  EXPECT_TRUE(o.forensic);
  EXPECT_FALSE(o.first);
  EXPECT_EQ(m.measurement(), after);
}

TEST(ModelTest, SealingIsOneWay) {
  Model m;
  ASSERT_TRUE(m.set_mode(Mode::kEnforce));
  ASSERT_TRUE(m.set_mode(Mode::kSeal));
  auto r = m.set_mode(Mode::kLearn);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, EPERM);
  EXPECT_EQ(m.mode(), Mode::kSeal);
  EXPECT_EQ(mode_from_name("enforce"), Mode::kEnforce);
  EXPECT_FALSE(mode_from_name("Enforce"));
}

TEST(ModelTest, AddKnownRefusesDuplicates) {
  Model m;
  ASSERT_TRUE(m.add_known(H("x"), EventType::kFileOpen));
  auto r = m.add_known(H("x"), EventType::kFileOpen);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, EEXIST);
}

// A small workload: a shell execs busybox applets that open files.
struct Workload {
  ProcKey shell{100, 1000};
  void start(Modeler& m) { m.exec(shell, kRoot, exe("/bin/sh", "sh")); }
  Decision run(Modeler& m, ProcKey child, const std::string& applet_content,
               const std::string& file) {
    m.fork(shell, child);
    Decision d = m.exec(child, kRoot, exe("/bin/busybox", applet_content));
    auto r = m.event(child, EventType::kFileOpen, kRoot, opened(file, "content of " + file));
    EXPECT_TRUE(r) << r.error().to_string();
    return d.deny || d.newly_untrusted ? d : *r;
  }
};

Model learned() {
  Modeler m{Model{}};
  Workload w;
  w.start(m);
  w.run(m, {101, 1}, "busybox", "/etc/passwd");
  w.run(m, {102, 2}, "busybox", "/etc/group");
  return m.model();
}

TEST(ModelerTest, EnforceAllowsTheLearnedWorkload) {
  Model model = learned();
  const size_t n = model.known_count();
  ASSERT_TRUE(model.set_mode(Mode::kEnforce));
  Modeler m(std::move(model));
  Workload w;
  w.start(m);
  for (ProcKey k : {ProcKey{201, 1}, ProcKey{202, 2}}) {
    Decision d = w.run(m, k, "busybox", k.tgid == 201 ? "/etc/passwd" : "/etc/group");
    EXPECT_TRUE(d.known);
    EXPECT_FALSE(d.deny);
    EXPECT_FALSE(m.untrusted(k));
  }
  EXPECT_EQ(m.model().known_count(), n);
  EXPECT_TRUE(m.forensics().empty());
}

TEST(ModelerTest, ModifiedBinaryChangesTaskIdAndEveryCoefficient) {
  Model model = learned();
  ASSERT_TRUE(model.set_mode(Mode::kEnforce));
  Modeler m(std::move(model));
  Workload w;
  w.start(m);
  const ProcKey child{301, 3};
  m.fork(w.shell, child);
  EXPECT_EQ(m.task(child).ptask_id, m.task_id_of(w.shell));
  EXPECT_EQ(m.task(child).task_id, m.task_id_of(w.shell));
  Decision d = m.exec(child, kRoot, exe("/bin/busybox", "busybox with one byte changed"));
  EXPECT_FALSE(d.known);
  EXPECT_TRUE(d.forensic);
  EXPECT_TRUE(d.newly_untrusted);
  EXPECT_TRUE(d.deny);
  EXPECT_EQ(d.coefficient, task_id(m.task_id_of(w.shell), kRoot,
                                   exe("/bin/busybox", "busybox with one byte changed")));
  // its read of a file the real busybox reads is a different coefficient, and denied
  auto r = m.event(child, EventType::kFileOpen, kRoot, opened("/etc/passwd", "content of /etc/passwd"));
  ASSERT_TRUE(r);
  EXPECT_FALSE(r->known) << "a modified binary changes every coefficient of its process";
  EXPECT_TRUE(r->deny);
  ASSERT_EQ(m.forensics().size(), 2u);
  EXPECT_EQ(m.forensics()[0].event, EventType::kBprmCommittedCreds);
  EXPECT_EQ(m.forensics()[0].proc, child);
  EXPECT_EQ(m.forensics()[1].event, EventType::kFileOpen);
  // the shell and its other children are not affected
  EXPECT_FALSE(m.untrusted(w.shell));
  Decision ok = w.run(m, {302, 4}, "busybox", "/etc/group");
  EXPECT_FALSE(ok.deny);
}

TEST(ModelerTest, UntrustIsInheritedByLaterChildrenAndSurvivesExec) {
  Model model = learned();
  ASSERT_TRUE(model.set_mode(Mode::kEnforce));
  Modeler m(std::move(model));
  Workload w;
  w.start(m);
  const ProcKey early{401, 1}, bad{402, 2}, late{403, 3}, grandchild{404, 4};
  m.fork(w.shell, early);
  m.fork(w.shell, bad);
  m.exec(bad, kRoot, exe("/bin/busybox", "busybox"));
  // a known binary reading a file it never read
  auto r = m.event(bad, EventType::kFileOpen, kRoot, opened("/etc/shadow", "secret"));
  ASSERT_TRUE(r);
  EXPECT_TRUE(r->newly_untrusted);
  EXPECT_TRUE(m.untrusted(bad));
  // a known event of an untrusted process is denied too
  auto again = m.event(bad, EventType::kFileOpen, kRoot,
                       opened("/etc/passwd", "content of /etc/passwd"));
  ASSERT_TRUE(again);
  EXPECT_TRUE(again->known);
  EXPECT_TRUE(again->deny);
  EXPECT_FALSE(again->newly_untrusted);
  // descendants forked afterwards inherit it, through exec
  m.fork(bad, late);
  EXPECT_TRUE(m.untrusted(late));
  Decision d = m.exec(late, kRoot, exe("/bin/busybox", "busybox"));
  EXPECT_TRUE(d.deny) << "exec does not make an untrusted process trusted";
  m.fork(late, grandchild);
  EXPECT_TRUE(m.untrusted(grandchild));
  // the parent and a sibling forked before are not
  EXPECT_FALSE(m.untrusted(w.shell));
  EXPECT_FALSE(m.untrusted(early));
  // permanent: the namespace going back to seal stops the denials, not the untrust
  ASSERT_TRUE(m.model().set_mode(Mode::kSeal));
  auto sealed = m.event(bad, EventType::kFileOpen, kRoot,
                        opened("/etc/passwd", "content of /etc/passwd"));
  ASSERT_TRUE(sealed);
  EXPECT_TRUE(sealed->untrusted);
  EXPECT_FALSE(sealed->deny);
  m.exit(bad);
  EXPECT_FALSE(m.untrusted(bad)) << "an exited process is forgotten";
  EXPECT_TRUE(m.untrusted(late));
}

TEST(ModelerTest, SealRecordsForensicsAndDeniesNothing) {
  Model model = learned();
  ASSERT_TRUE(model.set_mode(Mode::kSeal));
  Modeler m(std::move(model), /*max_forensics=*/2);
  Workload w;
  w.start(m);
  const ProcKey p{501, 1};
  m.fork(w.shell, p);
  Decision d = m.exec(p, kRoot, exe("/bin/new-binary", "new"));
  EXPECT_TRUE(d.forensic);
  EXPECT_FALSE(d.deny);
  EXPECT_FALSE(d.untrusted);
  for (std::string f : {"/a", "/b", "/c"}) {
    auto r = m.event(p, EventType::kFileOpen, kRoot, opened(f, f), "open " + f);
    ASSERT_TRUE(r);
    EXPECT_FALSE(r->deny);
  }
  EXPECT_EQ(m.forensics().size(), 2u);
  EXPECT_EQ(m.forensics_dropped(), 2u);
  EXPECT_EQ(m.forensics()[0].seq, 1u);
  EXPECT_EQ(m.model().forensic_count(), 4u) << "dropped records still count in the state";
}

// Two processes whose events interleave differently on each run (the VM test's scenario): the
// state is the same every time, the measurement is not.
TEST(ModelerTest, InterleavingsChangeMeasurementNotState) {
  std::set<Digest> states, measurements;
  std::mt19937 rng(99);
  for (int run = 0; run < 5; ++run) {
    Modeler m{Model{}};
    const ProcKey a{10, 1}, b{20, 2}, init{1, 0};
    m.exec(init, kRoot, exe("/init", "init"));
    m.fork(init, a);
    m.fork(init, b);
    m.exec(a, kRoot, exe("/bin/busybox", "busybox"));
    m.exec(b, kRoot, exe("/bin/cat", "cat"));
    std::vector<std::pair<ProcKey, std::string>> steps;
    for (int i = 0; i < 8; ++i) {
      steps.push_back({a, "/data/a" + std::to_string(i)});
      steps.push_back({b, "/data/b" + std::to_string(i)});
    }
    std::shuffle(steps.begin(), steps.end(), rng);
    for (auto& [p, f] : steps) ASSERT_TRUE(m.event(p, EventType::kFileOpen, kRoot, opened(f, f)));
    states.insert(m.model().state());
    measurements.insert(m.model().measurement());
  }
  EXPECT_EQ(states.size(), 1u);
  EXPECT_GT(measurements.size(), 1u);
}

TEST(ModelerTest, TaskCellsCarryTheTargetsTaskId) {
  Modeler m{Model{}};
  const ProcKey a{10, 1}, b{20, 2};
  m.exec(a, kRoot, exe("/bin/a", "a"));
  m.exec(b, kRoot, exe("/bin/b", "b"));
  auto k1 = m.event(a, EventType::kTaskKill, kRoot, KillCell{m.task_id_of(b), 15, 0});
  // the same signal to a process running another binary is another coefficient
  m.exec(b, kRoot, exe("/bin/c", "c"));
  auto k2 = m.event(a, EventType::kTaskKill, kRoot, KillCell{m.task_id_of(b), 15, 0});
  ASSERT_TRUE(k1 && k2);
  EXPECT_NE(k1->coefficient, k2->coefficient);
  auto exec_as_event = m.event(a, EventType::kBprmCommittedCreds, kRoot, exe("/x", "x"));
  ASSERT_FALSE(exec_as_event);
  EXPECT_EQ(exec_as_event.error().code, EINVAL);
  auto wrong = m.event(a, EventType::kPtraceTraceme, kRoot, KillCell{});
  ASSERT_FALSE(wrong);
  EXPECT_EQ(wrong.error().where, "ptrace_traceme");
}

}  // namespace
}  // namespace nsima::model

// Issue 13, decidable in advance: the model knows the contents its execs ran (learned with
// them, kept by a loaded model), which the kernel may exec in enforce mode; an exec the kernel
// refused is judged (forensics, untrust) without changing the process's TASK_ID.
namespace nsima::model {
namespace {

TEST(ModelerTest, LearnsTheContentsItsExecsRan) {
  Model model = learned();
  std::set<Digest> want{exe("/bin/sh", "sh").digest, exe("/bin/busybox", "busybox").digest};
  EXPECT_EQ(model.executables(), want);
  ASSERT_TRUE(model.set_mode(Mode::kEnforce));
  Modeler m(std::move(model));
  Workload w;
  w.start(m);
  const ProcKey child{401, 5};
  m.fork(w.shell, child);
  m.exec(child, kRoot, exe("/bin/busybox", "a new content"));
  EXPECT_EQ(m.model().executables(), want) << "a sealed model learns no executable";
}

TEST(ModelerTest, RefusedExecIsForensicAndKeepsTheTaskId) {
  Model model = learned();
  ASSERT_TRUE(model.set_mode(Mode::kEnforce));
  Modeler m(std::move(model));
  Workload w;
  w.start(m);
  const ProcKey child{501, 6};
  m.fork(w.shell, child);
  const Digest before = m.task_id_of(child);
  Decision d = m.refused_exec(child, kRoot, exe("/bin/busybox", "busybox with one byte changed"));
  EXPECT_FALSE(d.known);
  EXPECT_TRUE(d.forensic);
  EXPECT_TRUE(d.newly_untrusted);
  EXPECT_EQ(d.coefficient,
            task_id(before, kRoot, exe("/bin/busybox", "busybox with one byte changed")));
  EXPECT_EQ(m.task_id_of(child), before) << "the refused exec did not run";
  ASSERT_EQ(m.forensics().size(), 1u);
  EXPECT_EQ(m.forensics()[0].event, EventType::kBprmCommittedCreds);
}

}  // namespace
}  // namespace nsima::model
