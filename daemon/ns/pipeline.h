// SPDX-License-Identifier: Apache-2.0
// The one place that wires nsima together: events from the ring buffer -> namespace chain ->
// each namespace's policy -> measurement (hash once, an entry in every list that asks for it)
// -> PCR extends (their own thread) -> verdict written back into the BPF verdict map. Also the
// control-plane operations on namespaces, policies, lists, PCRs and quotes, and the recovery of
// lists and PCRs when nsimad starts.
//
// Who extends what (the invariant: every extend into a (TPM, PCR) is recorded in the one list
// that owns that PCR, so each owning list replays alone to its TPM):
//   host      the host TPM (--host-tcti), PCR --host-pcr (default 23; see daemon/tpm/README.md)
//   --vtpm    its own swtpm, PCR 10 (and any pcr= of its policy)
//   others    no PCR of their own: each entry of their list is also appended, byte for byte, to
//             the list of the nearest ancestor that owns a TPM ("owner"), which extends it. A
//             verifier replays the owner's list against its TPM, then checks that every entry of
//             the child's list (after its first) is in the owner's list.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "capture/bpf_maps.h"
#include "common/bounded_queue.h"
#include "common/event.h"
#include "common/result.h"
#include "common/unique_fd.h"
#include "measure/digest_cache.h"
#include "measure/hash_pool.h"
#include "measure/measurement_list.h"
#include "ns/extender.h"
#include "ns/namespace_tree.h"
#include "ns/ns_config.h"
#include "policy/policy.h"
#include "tpm/tpm.h"
#include "tpm/vtpm_manager.h"

namespace nsima::ns {

// A subscriber to the events of one namespace and its descendants (nsimactl watch).
class Watcher {
 public:
  explicit Watcher(size_t capacity = 1u << 16) : lines_(capacity) {}
  // Called with the pipeline lock held; never blocks. A full queue counts as lost.
  void offer(std::string line);
  std::optional<std::string> next(std::chrono::milliseconds timeout) { return lines_.pop(timeout); }
  uint64_t lost() const { return lost_.load(); }
  void close() { lines_.close(); }

 private:
  BoundedQueue<std::string> lines_;
  std::atomic<uint64_t> lost_{0};
};

struct PipelineOptions {
  std::string cgroup_root = "/sys/fs/cgroup";
  std::string state_dir = "/var/lib/nsima";
  std::string run_dir = "/run/nsima";
  size_t queue_capacity = 1u << 16;
  std::string host_tcti;  // "" = no host TPM (lists only, boot_aggregate of zeros)
  int host_pcr = tpm::kDefaultHostPcr;
  int kernel_ima_pcr = tpm::kNoKernelIma;  // refused as host PCR (detect_kernel_ima())
  measure::HashAlgo hash_algo = measure::HashAlgo::kSha256;
  measure::TemplateKind default_template = measure::TemplateKind::kImaNg;
  size_t hash_threads = 2;
  std::string swtpm = "swtpm";
};

struct PipelineCounters {
  uint64_t processed = 0;
  uint64_t unknown_namespace = 0;  // events tagged with a namespace deleted meanwhile
  uint64_t map_errors = 0;
  uint64_t measured = 0;    // entries added (all lists)
  uint64_t violations = 0;  // violation entries added (all lists)
  uint64_t hash_jobs = 0;
};

class Pipeline {
 public:
  // `maps` may be null (no BPF: offline tests); then nothing is written back.
  Pipeline(PipelineOptions opts, capture::BpfMaps* maps);
  ~Pipeline();

  // Opens the host TPM and list, restores saved namespaces (lists replayed against their PCRs,
  // unextended entries extended), binds the host namespace to the root cgroup.
  Result<void> init();
  void start();
  void stop();  // processes what is queued, waits for hashing and extends, then returns

  // From the ring-buffer consumer thread. Blocks while the queue is full.
  void submit(Event&& ev);
  // Waits until everything submitted so far is processed, hashed, recorded and extended.
  void drain();

  // ---- control plane (thread-safe) ----
  struct NsInfo {
    uint32_t id;
    std::string name, cgroup_path, parent;
    uint64_t cgroup_id;
    bool vtpm = false;
    std::string owner;  // namespace whose list/TPM records this one's extends
    int pcr = -1;       // default PCR of its list
    std::string tpm;    // TPM description, "" = none
    std::string policy_origin;
    size_t policy_rules = 0;
    uint64_t entries = 0, violations = 0;
    std::string list_path;
    bool disabled = false;
    std::string disabled_reason;
  };
  struct CreateOptions {
    bool vtpm = false;
    std::string policy_text, policy_origin;  // empty: no policy (watch only)
  };
  Result<uint32_t> create_namespace(const std::string& cgroup_path, const CreateOptions& o);
  // The namespace bound to `cgroup_path` (the host namespace for the root cgroup), created
  // (without policy) if needed, and registered with the BPF side.
  Result<uint32_t> ensure_namespace(const std::string& cgroup_path);
  Result<void> delete_namespace(const std::string& name_or_id);
  std::vector<NsInfo> list_namespaces();
  std::optional<NsInfo> namespace_info(const std::string& name_or_id);

  // Replaces a namespace's policy (whole or not at all); its verdicts and those of its
  // descendants are dropped so every file is judged again.
  Result<size_t> load_policy(const std::string& name_or_id, const std::string& text,
                             const std::string& origin);
  Result<std::string> policy_text(const std::string& name_or_id);

  // The list file of a namespace and its committed size (readers stop there).
  struct ListView {
    std::string path;
    uint64_t bytes = 0, entries = 0;
  };
  Result<ListView> list_view(const std::string& name_or_id);
  Result<std::string> render_list(const std::string& name_or_id, bool ascii);
  // Entries [from_index, to_index) of a namespace's list (to_index clamped to its entry count;
  // empty when from_index is past it), as kernel IMA's ascii_runtime_measurements (sha1
  // template-hash column) or binary_runtime_measurements show them. Entries are whole: with
  // to_index = list_view().entries, a reader streams the list chunk by chunk (nsimactl log).
  Result<std::string> render_list(const std::string& name_or_id, bool ascii, uint64_t from_index,
                                  uint64_t to_index);

  struct PcrReport {
    std::string tpm;  // TPM description
    int pcr = -1;
    std::map<std::string, std::string> values;    // bank -> hex, read from the TPM
    std::map<std::string, std::string> expected;  // bank -> hex, replay of the owning list
  };
  Result<PcrReport> pcr_report(const std::string& name_or_id);
  Result<tpm::Quote> quote(const std::string& name_or_id, const std::vector<uint8_t>& nonce);

  // Writes a verdict for `file` (a path in nsimad's mount namespace) in the namespace bound to
  // `cgroup_path` (created if needed). The stamp is the kernel's, read as nsimad opens the file.
  Result<void> set_file_verdict(const std::string& cgroup_path, const std::string& file,
                                bool allow);

  std::shared_ptr<Watcher> watch(uint32_t ns_id);
  void unwatch(const std::shared_ptr<Watcher>& w);

  PipelineCounters counters();
  uint64_t extends_done() const { return extender_ ? extender_->done() : 0; }
  uint64_t extends_failed() const { return extender_ ? extender_->failed() : 0; }

 private:
  struct FileId {
    uint64_t kdev, ino;
    uint32_t gen;
    bool operator==(const FileId&) const = default;
  };
  struct FileIdHash {
    size_t operator()(const FileId& f) const noexcept {
      return std::hash<uint64_t>()(f.kdev * 1000003u ^ f.ino * 31u ^ f.gen);
    }
  };
  struct Measured {  // kernel IMA's per-inode state, kept per namespace
    Stamp stamp;          // file version the PCR bits are for
    uint64_t pcrs = 0;    // measured_pcrs
    bool must = false;    // IMA_MUST_MEASURE: a measure rule matched this file (ToMToU)
  };
  struct NsRuntime {
    NsConfig cfg;
    std::shared_ptr<const policy::Policy> policy;  // never null
    std::unique_ptr<measure::MeasurementList> list;
    std::unique_ptr<tpm::Tpm> own_tpm;  // host TPM (host) or vTPM (--vtpm)
    std::unordered_map<FileId, Measured, FileIdHash> measured;
    bool disabled = false;
    std::string disabled_reason;
    uint64_t drops_seen = 0;
  };
  struct Target {  // one list that measures an event
    uint32_t ns_id;
    uint32_t pcr;
    measure::TemplateKind tmpl;
  };

  void run();
  void process(Event& ev);
  void check_drops_locked();
  bool owns_pcr(const Namespace* n) const;
  Namespace* owner_of(Namespace* n);
  NsRuntime& rt(const Namespace* n) { return *rt_.at(n->id); }
  Result<void> open_runtime_locked(Namespace* n, NsConfig cfg, bool restored);
  Result<void> start_list_locked(Namespace* n, NsRuntime& r);
  Result<void> reconcile_locked(Namespace* n, NsRuntime& r);
  Result<void> validate_policy_locked(Namespace* n, const policy::Policy& p);
  // Appends to n's list with `append` and, when n owns no PCR, the same to its owner's list;
  // queues the extends. A list that cannot be appended to stops measuring.
  using AppendFn = std::function<Result<measure::AppendOutcome>(measure::MeasurementList&)>;
  void append_locked(Namespace* n, const AppendFn& append);
  void record_locked(Namespace* n, const measure::Entry& e);
  void record_violation_locked(Namespace* n, const std::string& name);
  void queue_extend_locked(NsRuntime& owner_rt, const std::string& list,
                           const measure::AppendOutcome& out);
  void disable_locked(Namespace* n, const std::string& why);
  Result<void> register_in_bpf(Namespace* n);
  void invalidate_verdicts_locked(Namespace* n);
  void notify_watchers(const std::vector<Namespace*>& chain, const Event& ev,
                       const std::string& note = {});
  int root_fd_locked(const Event& ev);
  void on_hashed(Event ev, std::vector<Target> targets, bool quiet,
                 std::shared_ptr<std::vector<uint8_t>> xattr, const measure::HashResult& r);
  NsInfo info_locked(Namespace* n);

  PipelineOptions opts_;
  capture::BpfMaps* maps_;
  std::mutex mu_;  // guards everything below but the queue
  NamespaceTree tree_;
  std::map<uint32_t, std::unique_ptr<NsRuntime>> rt_;
  std::multimap<uint32_t, std::shared_ptr<Watcher>> watchers_;
  PipelineCounters counters_;
  std::unordered_map<uint32_t, UniqueFd> roots_;  // mount ns inum -> O_PATH fd of its root
  uint32_t self_mnt_ns_ = 0;
  std::unique_ptr<tpm::VtpmManager> vtpms_;
  std::unique_ptr<measure::DigestCache> digests_;
  std::unique_ptr<measure::HashPool> pool_;
  std::unique_ptr<Extender> extender_;
  BoundedQueue<Event> queue_;
  std::atomic<uint64_t> queued_{0}, finished_{0};
  std::thread thread_;
  std::chrono::steady_clock::time_point last_drop_check_{};
};

}  // namespace nsima::ns
