// SPDX-License-Identifier: Apache-2.0
// The one place that wires nsima together (daemon/README.md draws it):
//
//   ring buffer -> submit() [intake thread: root captured for the event's process]
//     -> pipeline thread: registry (namespace chain) -> judge (pure) -> recorder (violations now)
//        -> file accessor (per-namespace queues, workers, timeouts: never this thread)
//     -> pipeline thread: entries into every list that asked (recorder: owner copies, extends on
//        each TPM's own thread) -> verdict writer (judged allow, never over an operator deny)
//
// The pipeline thread owns all namespace state: registry, recorder and per-file state are touched
// by nothing else, so none of it is locked. Control-plane calls (thread-safe) run as tasks on that
// thread and wait for their answer; anything slow (starting a vTPM, TPM reads, quotes, draining
// extends) runs on the caller's thread with shared handles, so no lock is ever held across I/O and
// a deleted namespace never leaves a dangling TPM or list behind a running quote.
//
// Attestation reads (list, PCR report, quote) first pass a barrier: every access that completed
// before the request has been read from the ring buffer, judged, measured and extended into the
// namespace's PCR, or the request fails after a bounded wait naming what is still pending.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <future>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "access/file_accessor.h"
#include "appraise/appraiser.h"
#include "capture/bpf_maps.h"
#include "capture/model_hooks.h"
#include "common/bounded_queue.h"
#include "common/event.h"
#include "common/result.h"
#include "confine/parser.h"
#include "measure/digest_cache.h"
#include "model/event_decode.h"
#include "model/model.h"
#include "ns/judge.h"
#include "ns/recorder.h"
#include "ns/registry.h"
#include "ns/verdict_writer.h"
#include "policy/policy.h"
#include "tpm/tpm.h"
#include "tpm/vtpm_manager.h"

namespace nsima::ns {

// A subscriber to the events of one namespace and its descendants (nsimactl watch).
class Watcher {
 public:
  explicit Watcher(size_t capacity = 1u << 16) : lines_(capacity) {}
  // Never blocks. A full queue counts as lost.
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
  size_t queue_capacity = 1u << 16;  // events between intake and the judge
  std::string host_tcti;  // "" = no host TPM (lists only, boot_aggregate of zeros)
  int host_pcr = 23;
  int kernel_ima_pcr = -1;  // refused as host PCR (detect_kernel_ima()); -1: none
  measure::HashAlgo hash_algo = measure::HashAlgo::kSha256;
  measure::TemplateKind default_template = measure::TemplateKind::kImaNg;
  size_t hash_threads = 2;
  // File versions whose digests are kept (measure::DigestCache): a bound on its memory.
  size_t digest_cache = 65536;
  std::chrono::milliseconds hash_timeout{10000};     // a file not read by then is a violation
  std::chrono::milliseconds barrier_timeout{20000};  // log/pcr/quote wait at most this long
  size_t access_queue = 4096;                        // pending reads per namespace
  std::string swtpm = "swtpm";
  // New vTPMs get an EK certificate from nsima's vTPM CA (daemon/tpm/README.md); tests that do
  // not look at EKs turn it off (manufacturing takes about 2.5 s of RSA key generation).
  bool vtpm_ek_cert = true;
  // Non-empty: capture did not continue across nsimad's restart (the hooks were (re)attached
  // fresh); every list that continues from before gets an nsima:capture-gap:<this> violation.
  std::string capture_gap;
  // Where the model hooks are pinned (the file hooks' pin directory, empty: not pinned) and
  // whether the file hooks were resumed (then pinned model hooks may be too).
  capture::ModelPins model_pins;
  // The model hooks' ring buffer (mevents) bytes: a power of two, a multiple of the page size.
  uint32_t model_ringbuf_bytes = 1u << 20;
  // Non-zero: every this often, a namespace whose cgroup directory is gone (rmdir, or replaced
  // by another cgroup of the same name) is ended as by `ns delete` once it has been gone for
  // cgroup_gone_grace (time for an OCI poststop hook, which runs after the runtime's rmdir, to
  // archive it first). Its archive also holds ended.json and the owner's final PCR values.
  std::chrono::milliseconds cgroup_check{0};
  std::chrono::milliseconds cgroup_gone_grace{0};
  // Opens a TPM from a TCTI string (host TPM, vTPMs); null = tpm::EsysTpm::open. Tests wrap it.
  std::function<Result<std::unique_ptr<tpm::Tpm>>(const std::string& tcti)> open_tpm;
  // Untrusted formats (security.ima values, manifests of `digests load`) are parsed by this
  // confined worker pool (daemon/confine/README.md). Null: parsed in process, which only tests
  // do; nsimad always gives one and refuses to start without it.
  std::shared_ptr<confine::Parser> parser;
};

struct PipelineCounters {
  uint64_t processed = 0;
  // the kernel's trusted map (ns/kernel_trust.h)
  uint64_t trust_entries = 0;
  uint64_t trust_not_in_map = 0;
  uint64_t trust_full_events = 0;
  uint64_t unknown_namespace = 0;  // events of a namespace deleted meanwhile (judged by its parent)
  uint64_t map_errors = 0;
  uint64_t measured = 0;    // entries added (all lists)
  uint64_t violations = 0;  // violation entries added (all lists)
  uint64_t hash_jobs = 0;   // file reads asked of the accessor
  uint64_t unreadable = 0;  // of those, files that could not be read as the event saw them
  uint64_t appraised = 0;        // appraisals run (one per access and namespace)
  uint64_t appraise_failed = 0;  // of those, failed (denied in enforce, logged in log mode)
  uint64_t appraise_denied = 0;  // accesses given a judged deny
  uint64_t audit_lines = 0, audit_errors = 0;
  uint64_t pre_appraised = 0;    // files decided before their first access (--rootfs)
  // security.ima written at run time (bpf/setxattr.bpf.c): events, and what became of them
  uint64_t setxattr_events = 0;
  uint64_t setxattr_passed = 0;      // verdict written: allowed for every class
  uint64_t setxattr_failed = 0;      // verdict written: refused for the classes that failed
  uint64_t setxattr_undecided = 0;   // no verdict (unreadable, changed, namespace gone): the
                                     // first access is decided as without the event
  // the window: from the hook (the write done) to the verdict in the map, in microseconds
  uint64_t setxattr_window_last_us = 0, setxattr_window_max_us = 0;
  // self-protection (bpf/protect.bpf.c): refusals reported by the kernel, recorded
  uint64_t protect_events = 0;
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
  void stop();  // processes what is queued, waits for reads and extends, then returns

  // From the ring-buffer consumer thread. Blocks while the event queue is full (the ring buffer
  // then fills and its drops become violations).
  void submit(Event&& ev);
  // Waits until everything submitted so far is judged, read, recorded and extended.
  void drain();
  // How the barrier learns that the ring buffer is consumed up to now: returns the highest seq
  // handed to submit() once every record committed before the call was (EventSource::sync).
  using IntakeSync = std::function<Result<uint64_t>(std::chrono::milliseconds)>;
  void set_intake_sync(IntakeSync f) { intake_sync_ = std::move(f); }
  // Where the intake stands, without waiting (EventSource::progress; nullopt while it is not
  // mapped): orders a modeled namespace's kernel events after the file events committed before
  // them (pipeline_model.cpp). Runs on the pipeline thread; an empty function unsets it (before
  // the EventSource goes away). Without one, kernel events wait a fixed settle time instead.
  struct IntakeProgress {
    uint64_t committed = 0, consumed = 0, handed_seq = 0;
  };
  using IntakeProbe = std::function<std::optional<IntakeProgress>()>;
  void set_intake_probe(IntakeProbe f);
  // Called with an event's seq once it is fully recorded (its entries and violations appended,
  // its verdict written): the intake journal may forget it. Set before start().
  void set_done_hook(std::function<void(uint64_t)> f) { done_hook_ = std::move(f); }

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
    std::string appraise;  // enforce | log | off
    std::string template_name, hash;  // of its list: ima-ng|ima-sig|ima, sha1|sha256|...
    size_t keys = 0, digests_listed = 0, digests_revoked = 0;
    std::string audit_path;
    std::string container;  // OCI container id ("": none)
    std::string suspended;  // why it is suspended (no space), "" = not
    uint64_t lost = 0;      // entries not recorded while suspended
    std::string model;  // model mode, "" = not modeled
  };
  struct CreateOptions {
    bool vtpm = false;
    std::string policy_text, policy_origin;  // empty: no policy (watch only)
    std::string appraise = "enforce";        // enforce | log | off
    std::vector<std::vector<uint8_t>> certs;  // x509 certificates (DER or PEM) for its keys
    std::string rootfs;  // pre-appraised before the namespace is bound (nsimad's view)
    std::string container;  // the OCI container id it is made for (shown by ns list, archived)
    // A workload model from the start: mode (learn | seal | enforce, "" = not modeled) and a
    // model file's text (may be empty for learn); checked against the namespace's keys.
    std::string model_mode, model_text, model_origin;
    // An external agent decides instead (socket; fail: closed | open, default closed).
    std::string model_agent, model_agent_fail;
    uint32_t model_agent_timeout_ms = 0;  // 0: kDefaultAgentTimeoutMs
    // Its list's template and file hash (kernel ima_template= / ima_hash=); "" = nsimad's.
    std::string template_name, hash;
  };
  Result<uint32_t> create_namespace(const std::string& cgroup_path, const CreateOptions& o);
  // The namespace bound to `cgroup_path` (the host namespace for the root cgroup), registered
  // with the BPF side; created (without policy) if needed when `create`, else ENOENT.
  Result<uint32_t> ensure_namespace(const std::string& cgroup_path, bool create = true);
  Result<void> delete_namespace(const std::string& name_or_id);
  // Ends every namespace whose cgroup has been gone for cgroup_gone_grace (the cgroup_check
  // thread calls it; tests may too). Returns the names ended.
  std::vector<std::string> end_gone_namespaces();
  std::vector<NsInfo> list_namespaces();
  std::optional<NsInfo> namespace_info(const std::string& name_or_id);

  // Replaces a namespace's policy (whole or not at all); its judged verdicts and those of its
  // descendants are dropped so every file is judged again (operator denies stay).
  Result<size_t> load_policy(const std::string& name_or_id, const std::string& text,
                             const std::string& origin);
  Result<std::string> policy_text(const std::string& name_or_id);

  // Every access that completed before the call is in `name_or_id`'s list and extended into its
  // owner's PCR when this returns, or an error (ETIMEDOUT) says what is still pending.
  Result<void> barrier(const std::string& name_or_id);

  // The list file of a namespace and its committed size (readers stop there). No barrier.
  struct ListView {
    std::string path;
    uint64_t bytes = 0, entries = 0;
  };
  Result<ListView> list_view(const std::string& name_or_id);
  // Every access that completed before the call, then the whole list, as kernel IMA's
  // ascii_runtime_measurements or binary_runtime_measurements show it.
  Result<std::string> render_list(const std::string& name_or_id, bool ascii);
  // Entries [from_index, to_index) of a namespace's list (to_index clamped to its entry count;
  // empty when from_index is past it), as kernel IMA's ascii_runtime_measurements (sha1
  // template-hash column) or binary_runtime_measurements show them. Entries are whole: with
  // to_index = list_view().entries, a reader streams the list chunk by chunk (nsimactl log).
  // No barrier (the caller passes it once).
  Result<std::string> render_list(const std::string& name_or_id, bool ascii, uint64_t from_index,
                                  uint64_t to_index);

  struct PcrReport {
    std::string tpm;  // TPM description
    int pcr = -1;
    std::map<std::string, std::string> values;    // bank -> hex, read from the TPM
    std::map<std::string, std::string> expected;  // bank -> hex, replay of the owning list
    std::map<std::string, std::vector<std::string>> all;  // with `all`: bank -> PCR 0..23 hex
    // {"tpm", "pcr", "values", "expected"}: the shape `nsimactl pcr` and the archives of ended
    // namespaces (pcrs.json) share.
    nlohmann::json json() const;
  };
  // `all`: every PCR (0-23) of each bank too, read after the namespace's PCR, as evmctl's --pcrs
  // files need them.
  Result<PcrReport> pcr_report(const std::string& name_or_id, bool all = false);
  Result<tpm::Quote> quote(const std::string& name_or_id, const std::vector<uint8_t>& nonce);

  // What a verifier needs to trust a namespace's quotes (daemon/tpm/README.md, "EK certificates
  // and the AK"): the EK, its certificate and the chain to the vTPM CA, and the AK. Only for a
  // namespace with its own vTPM (ENODEV otherwise: its entries are attested through its owner).
  struct VtpmIdentity {
    tpm::TpmIdentity id;
    std::string chain_pem;  // the CA's issuer certificate (untrusted intermediate)
    std::string owner;      // the namespace whose TPM this is
  };
  Result<VtpmIdentity> vtpm_identity(const std::string& name_or_id);
  // TPM2_ActivateCredential in the namespace's vTPM (the verifier's MakeCredential blob).
  Result<std::vector<uint8_t>> activate_credential(const std::string& name_or_id,
                                                   const std::vector<uint8_t>& id_object,
                                                   const std::vector<uint8_t>& enc_secret);
  // The vTPM CA's root certificate (PEM): the verifier's trust anchor for EK certificates.
  Result<std::string> vtpm_ca_certificate();

  // Operator verdicts. `file` is a path as the namespace's processes see it: resolved inside the
  // root of a live process of the namespace's cgroup (nsimad's own root for the host namespace),
  // or inside `root` (a directory in nsimad's view, e.g. the container's rootfs) when given.
  // deny holds for every version of the inode, in the namespace and every namespace below it,
  // across policy loads and restarts; allow lifts the namespace's own deny.
  Result<void> set_file_verdict(const std::string& cgroup_path, const std::string& file,
                                bool allow, const std::string& root = {});
  std::vector<Override> overrides();

  // Appraisal state of a namespace (keys, digest lists, mode). Each change re-judges what it
  // can change: adding trust re-appraises the files that failed, removing it (keys remove,
  // revoke, a stricter mode) the files already allowed.
  Result<std::vector<appraise::KeyInfo>> keys_add(const std::string& name_or_id,
                                                  const std::vector<std::vector<uint8_t>>& certs);
  Result<std::vector<appraise::KeyInfo>> keys_list(const std::string& name_or_id);
  Result<std::vector<appraise::KeyInfo>> keys_remove(const std::string& name_or_id,
                                                     uint32_t keyid);
  struct DigestsLoaded {
    size_t added = 0, already = 0;
    bool is_signed = false;
    std::string signer;  // key id hex of the manifest's signer
  };
  // `sig`: FILE.sig's bytes (empty: unsigned). A signature that does not verify against the
  // namespace's keys is an error; nothing is loaded then.
  Result<DigestsLoaded> digests_load(const std::string& name_or_id, const std::string& manifest,
                                     const std::string& origin, const std::vector<uint8_t>& sig);
  // Denies `sha256` (hex) in the namespace and every descendant, whatever lists or signs it;
  // files already allowed with that content are denied at once. Returns how many were.
  Result<size_t> digests_revoke(const std::string& name_or_id, const std::string& digest_hex);
  Result<void> set_appraise_mode(const std::string& name_or_id, const std::string& mode);
  Result<std::string> audit_path(const std::string& name_or_id);
  struct PreAppraisal {
    size_t files = 0, passed = 0, failed = 0, skipped = 0;
    uint64_t bytes = 0;
    double seconds = 0, hash_seconds = 0;  // wall clock; time in hash_fd summed over workers
    size_t workers = 0;
    std::vector<std::string> problems;  // first few files that could not be read or decided
  };
  // Appraises the regular files under `dir` (the namespace's root as nsimad sees it) that its
  // chain's appraise rules cover and writes their verdicts, so their first access needs no
  // event (classes no namespace measures are silenced; measured ones still send one event).
  Result<PreAppraisal> pre_appraise(const std::string& name_or_id, const std::string& dir);

  // ---- workload models (ns/pipeline_model.cpp, daemon/model/README.md) ----
  // The PCR of a namespace's own vTPM that `model_state(..., extend)` extends the state into.
  static constexpr int kModelPcr = 11;
  struct ModelInfo {
    std::string mode;  // learn | seal | enforce
    std::string state, measurement, base, aggregate;  // hex
    size_t known = 0, forensic = 0, tracked = 0;
    uint64_t untrusted = 0, mark_errors = 0, forensics_dropped = 0, extends = 0;
    uint64_t quiet_written = 0, quiet_entries = 0;  // model_quiet: written, in the map now
    // events the model never saw (ring buffers full) since it began: its state may lack them
    uint64_t lost_events = 0, lost_file_events = 0;
    bool kernel = false;  // the model hooks run (false: no BPF, file events only)
    int pcr = -1;         // after an extend: kModelPcr and its sha256 value read back
    std::string pcr_sha256;
    std::string agent, agent_fail, agent_error;  // external agent: socket, fail mode, last error
    uint32_t agent_timeout_ms = 0;               // its verdict timeout
    bool agent_connected = false;
    uint64_t agent_verdicts = 0, agent_failures = 0;
  };
  // learn starts modeling a namespace (empty model) or keeps learning; seal/enforce need a model
  // (learned or loaded). Sealing is one-way.
  Result<ModelInfo> model_set_mode(const std::string& name_or_id, const std::string& mode);
  // Replaces the namespace's model with a model file's points (signature checked against its
  // keys) in `mode` (seal | enforce); running processes keep their TASK_IDs.
  Result<ModelInfo> model_load(const std::string& name_or_id, const std::string& text,
                               const std::string& origin, const std::string& mode);
  // After the barrier: the model file text of the known points (model_file.h).
  Result<std::string> model_save(const std::string& name_or_id);
  // After the barrier: measurement and state; with `extend`, the state is extended into
  // kModelPcr of the namespace's own vTPM (quotes of the namespace then cover it).
  Result<ModelInfo> model_state(const std::string& name_or_id, bool extend);
  // After the barrier: unknown coefficients seen while sealed, oldest first.
  Result<nlohmann::json> model_forensics(const std::string& name_or_id);
  // The model hooks' kernel counters (mstats, summed over hooks); empty JSON: not loaded.
  nlohmann::json model_kernel_stats();

  std::shared_ptr<Watcher> watch(uint32_t ns_id);
  void unwatch(const std::shared_ptr<Watcher>& w);

  PipelineCounters counters();
  uint64_t extends_done();
  uint64_t extends_failed();
  access::FileAccessor::Stats access_stats() const;
  measure::DigestCache::Stats digest_cache_stats() const;

 private:
  struct Pending;  // one read in flight
  // Runs `f` on the pipeline thread (inline before start() / after stop()) and returns its value.
  template <class F>
  auto call(F&& f) -> decltype(f());
  void post(std::function<void()> task);
  void run();
  void tick();

  bool process(Event& ev);  // false: done; true: a read is pending (done when it is recorded)
  // A security.ima write (Hook::kSetxattr): the file is read and appraised for every access
  // class, as pre-appraisal does, and one verdict written. Same return as process().
  bool setxattr_event(const Event& ev);
  // A refusal of self-protection (Hook::kProtect, bpf/protect.bpf.c): a violation entry in the
  // host list and an audit line in the host's and the attacker's namespace (pipeline_protect.cpp).
  bool protect_event(const Event& ev);
  // The refusals the kernel counted but did not report (rate limit, full ring buffer): one
  // host violation per tick that saw new ones.
  void check_protect(const capture::Stats& st);
  uint64_t protect_unreported_seen_ = 0;
  void setxattr_read(const Event& ev, const access::AccessResult& r);
  // Pre-appraisal and setxattr: which access classes of the file need appraisal in the chain
  // of namespace `n` (bit per class); with none, its verdict is written at once.
  uint32_t classes_to_appraise(Namespace* n, const Event& ev);
  // ... then every class appraised as its first access would be, and one verdict (allowed, or
  // refused for the classes that failed). True if every class passed.
  bool appraise_every_class(Namespace* n, const Event& ev, const access::FileFacts& facts);
  void judged(Event ev, Namespace* ns, std::vector<Namespace*> chain, Judgement j);
  void accessed(const Event& ev, const Judgement& j, const access::AccessResult& r);
  // A judged allow of the event's access class (quiet or only reported).
  void write_verdict(const Event& ev, const std::vector<Namespace*>& chain, bool quiet,
                     bool model_quiet = false);
  // Of the classes `quiet` silences, those a modeled namespace n must still report: moved out
  // of `quiet` and returned (its model_quiet bits: quiet once the model knows the access).
  uint32_t model_quiet_split(Namespace* n, uint32_t& quiet);
  void model_quiet_clear(Namespace* n);  // drops n's model_quiet entries
  // The second pure stage and its consequences: runs every appraisal `j` asks for on the file's
  // facts, records appraisal state and audit lines. True: an enforcing namespace failed (or had
  // failed for this version): the access gets a judged deny.
  // `memo`: signature checks shared by several appraisals of the same facts (every class).
  bool appraise_access(const Event& ev, const Judgement& j, const access::FileFacts& facts,
                       const std::vector<Namespace*>& chain,
                       appraise::SignatureMemo* memo = nullptr);
  void audit(Namespace* n, const Event& ev, nlohmann::json record);
  void audit_line(Namespace* n, nlohmann::json line);  // time and namespace added
  // Re-judging after an appraisal-state change of `n`: `relaxed` (more trust) forgets the judged
  // denies below it, otherwise every judged verdict below it is dropped.
  void appraisal_changed(Namespace* n, bool relaxed);
  Result<void> load_appraisal(Namespace* n, NsRuntime& r);
  void check_drops();
  void notify_watchers(const std::vector<Namespace*>& chain, const Event& ev,
                       const std::string& note = {});
  std::vector<std::shared_ptr<Extender>> extenders();
  // After the barrier: the owner's TPM and list, and the PCR of `name_or_id`'s list.
  struct AttestSnap {
    std::shared_ptr<tpm::Tpm> tpm;
    std::shared_ptr<measure::MeasurementList> owner_list;
    int pcr = -1;
  };
  Result<AttestSnap> attest_snapshot(const std::string& name_or_id);
  // The host list's record of a vTPM's creation or deletion (`what`: "created" | "deleted"):
  // a measured entry nsima:ns-<name>-vtpm-<what>:ek-sha256:<hex of SHA-256(EK SPKI DER)> whose
  // digest is the EK SPKI's digest in the host list's hash ("ek-none" when the vTPM has no EK).
  // Pipeline thread.
  void record_vtpm(const std::string& name, const std::string& what,
                   const std::vector<uint8_t>& ek_public);
  // The EK public area of a TPM (empty when it has none or it cannot be read; logged).
  std::vector<uint8_t> ek_public_of(tpm::Tpm& t, const std::string& name);
  Result<std::shared_ptr<measure::MeasurementList>> list_of(const std::string& name_or_id);
  std::vector<ChainLink> links(const std::vector<Namespace*>& chain, const FileRef& f);

  // delete_namespace, and the end of a namespace whose cgroup is gone: `why` names the archive
  // (<name>.<why>-<boot id>); a non-zero `cgroup_id` must still be the namespace's (else ESTALE).
  Result<std::string> remove_namespace(const std::string& name_or_id, const std::string& why,
                                       uint64_t cgroup_id);
  void cgroup_check_loop();

  Result<void> open_runtime(Namespace* n, NsRuntime& r, bool restored);
  // An extend into n's vTPM failed: if its swtpm is gone, restart it (its saved PCRs resumed, or
  // its lists archived and restarted) and say so in the host list. False: not recovered.
  bool recover_vtpm(Namespace* n, const std::string& what);
  Result<std::unique_ptr<tpm::Tpm>> open_tpm(const std::string& tcti);
  Result<void> after_topology(const std::vector<Namespace*>& owner_changed, const char* why);
  Result<Namespace*> find_ns(const std::string& name_or_id);
  NsInfo info(Namespace* n);

  // workload models (pipeline_model.cpp); all but ensure_model_hooks on the pipeline thread
  struct ModelFeed {  // a file event of a modeled namespace, waiting for its digest
    Event ev;
    bool ready = false;
    model::Digest digest{};
  };
  Result<void> ensure_model_hooks();  // loads the model hooks (control or init thread)
  Result<void> model_setup(Namespace* n, NsRuntime& r, const std::string& mode,
                           const std::string& text, const std::string& origin, bool check_keys,
                           bool fresh);  // fresh: a new model (not a restore): losses from 0
  Result<void> model_restore(Namespace* n, NsRuntime& r);
  Result<void> model_publish(Namespace* n, NsRuntime& r);  // model_ns flags
  Result<void> model_persist(Namespace* n, NsRuntime& r);  // <dir>/model + ns.json
  bool model_wants(Namespace* n, const Event& ev);
  void model_adjust(Namespace* n, Judgement& j);  // a read with sha256, no quiet verdict
  void model_expect(const Event& ev) { model_feed_[ev.seq] = ModelFeed{ev}; }
  void model_file_done(const Event& ev, const access::AccessResult& r);
  void model_pump(bool all);  // consume mevents, apply file and kernel events in time order
  void model_intake_marks();  // which consumed batches of kernel events the intake has passed
  bool model_pump_due();      // after an event was processed: has a batch been passed now?
  void model_apply_kernel(const model::ModelEvent& ev);
  void model_apply_file(const Event& ev, const model::Digest& digest);
  void model_decided(Namespace* n, const model::ProcKey& p, const model::Decision& d);
  void model_agent_link(Namespace* n, NsRuntime& r);
  void model_tick();
  void model_agent_verdict(uint32_t ns_id, const model::ProcKey& p,
                           const model::agent::Verdict& v);
  void model_drop(Namespace* n);
  // Events a model missed: `files` file events (ns_drops), `kernel` model events (model_drops);
  // counted in its ns.json, an audit line, a warning. model_check_drops reads model_drops.
  void model_lost(Namespace* n, NsRuntime& r, uint64_t files, uint64_t kernel);
  void model_check_drops();
  ModelInfo model_info(Namespace* n, NsRuntime& r);

  // barrier helpers
  void pending_add(uint64_t seq, const std::vector<uint32_t>& ids);
  void pending_done(uint64_t seq, const std::vector<uint32_t>& ids);

  PipelineOptions opts_;
  capture::BpfMaps* maps_;
  // --- owned by the pipeline thread ---
  Registry reg_;
  std::unique_ptr<Recorder> rec_;
  std::multimap<uint32_t, std::shared_ptr<Watcher>> watchers_;
  PipelineCounters counters_;
  std::chrono::steady_clock::time_point last_tick_{}, last_resume_try_{};
  // --- shared, internally synchronised ---
  VerdictWriter verdicts_;
  std::unique_ptr<tpm::VtpmManager> vtpms_;
  std::unique_ptr<measure::DigestCache> digests_;
  std::unique_ptr<access::RootCache> roots_;
  std::unique_ptr<access::FileAccessor> accessor_;
  IntakeSync intake_sync_;
  std::unique_ptr<capture::ModelHooks> model_hooks_;  // set on the pipeline thread, kept
  std::mutex model_load_mu_;                          // one load at a time
  // --- owned by the pipeline thread: model events not yet applied ---
  struct ModelKernel {  // a kernel event and the consume() batch it came in
    model::ModelEvent ev;
    uint64_t batch = 0;
  };
  // A batch of kernel events: applied once the file intake has processed every record committed
  // before the batch was consumed (a task's file events before its fork or exit among them).
  struct ModelBatch {
    uint64_t batch = 0;
    std::optional<uint64_t> committed;  // the file ring's producer position after the consume
    std::optional<uint64_t> need_seq;   // processed through this seq: passed
  };
  std::deque<ModelKernel> model_kq_;     // kernel events, ring-buffer order
  std::deque<ModelKernel> model_exits_;  // exits, applied late (lineage cleanup)
  std::deque<ModelBatch> model_batches_;  // batches the intake has not passed yet, in order
  uint64_t model_batch_ = 0;              // batches consumed so far
  uint64_t model_passed_batch_ = 0;       // batches <= this are passed
  IntakeProbe intake_probe_;
  std::map<uint64_t, ModelFeed> model_feed_;   // seq -> file event
  uint64_t model_bad_records_ = 0;
  uint64_t model_seen_ktime_ = 0;  // newest file event processed (any namespace)
  std::function<void(uint64_t)> done_hook_;

  // mailbox: tasks first (answers, control), then events
  std::mutex mu_;
  std::condition_variable wake_, space_;
  std::deque<std::function<void()>> tasks_;
  std::deque<Event> events_;
  bool stopping_ = false;
  std::atomic<bool> running_{false};
  std::thread thread_;
  std::thread::id thread_id_;

  // progress, for drain() and barriers
  std::mutex pending_mu_;
  std::condition_variable pending_cv_;
  std::map<uint32_t, std::multiset<uint64_t>> pending_;  // ns id -> seqs of reads in flight
  std::map<uint64_t, std::string> pending_what_;          // seq -> path, for messages
  uint64_t reads_in_flight_ = 0;
  std::atomic<uint64_t> submitted_seq_{0}, judged_seq_{0}, local_seq_{0};

  // the cgroup_check thread (end_gone_namespaces)
  std::thread cgroup_checker_;
  std::mutex check_mu_;
  std::condition_variable check_cv_;
  bool check_stop_ = false;
  std::map<std::string, std::chrono::steady_clock::time_point> gone_since_;  // under check_mu_
};

}  // namespace nsima::ns
