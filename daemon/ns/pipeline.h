// SPDX-License-Identifier: Apache-2.0
// The one place that wires nsima together: events from the ring buffer -> namespace chain ->
// (policy, measurement, appraisal, TPM) -> verdict written back into the BPF verdict map, plus
// the control-plane operations on namespaces and verdicts. Events are processed in order on the
// pipeline's own thread; the control plane calls in from other threads under one mutex.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "capture/bpf_maps.h"
#include "common/bounded_queue.h"
#include "common/event.h"
#include "common/result.h"
#include "ns/namespace_tree.h"

namespace nsima::ns {

// A subscriber to the events of one namespace and its descendants (nsimactl watch).
class Watcher {
 public:
  explicit Watcher(size_t capacity = 1u << 16) : lines_(capacity) {}
  // Called on the pipeline thread; never blocks. A full queue counts as lost for this watcher.
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
  size_t queue_capacity = 1u << 16;
};

struct PipelineCounters {
  uint64_t processed = 0;
  uint64_t unknown_namespace = 0;  // events tagged with a namespace deleted meanwhile
  uint64_t map_errors = 0;
};

class Pipeline {
 public:
  // `maps` may be null (no BPF: offline tests); then nothing is written back.
  Pipeline(PipelineOptions opts, capture::BpfMaps* maps);
  ~Pipeline();

  // Binds the host namespace to the root cgroup. Must be called once before start().
  Result<void> init();
  void start();
  void stop();  // processes what is queued, then returns

  // From the ring-buffer consumer thread. Blocks while the queue is full.
  void submit(Event&& ev);

  // ---- control plane (thread-safe) ----
  // The namespace bound to `cgroup_path`, created if needed.
  Result<uint32_t> ensure_namespace(const std::string& cgroup_path);
  Result<uint32_t> create_namespace(const std::string& cgroup_path);
  Result<void> delete_namespace(const std::string& name_or_id);
  struct NsInfo {
    uint32_t id;
    std::string name, cgroup_path, parent;
    uint64_t cgroup_id;
  };
  std::vector<NsInfo> list_namespaces();
  std::optional<NsInfo> namespace_info(const std::string& name_or_id);

  // Writes a verdict for `file` (a path in nsimad's mount namespace) in the namespace bound to
  // `cgroup_path` (created if needed). The stamp is the kernel's, read as nsimad opens the file.
  Result<void> set_file_verdict(const std::string& cgroup_path, const std::string& file,
                                bool allow);

  std::shared_ptr<Watcher> watch(uint32_t ns_id);
  void unwatch(const std::shared_ptr<Watcher>& w);

  PipelineCounters counters();

 private:
  void run();
  void process(Event& ev);
  Result<void> register_in_bpf(Namespace* ns);
  void notify_watchers(const std::vector<Namespace*>& chain, const Event& ev);

  PipelineOptions opts_;
  capture::BpfMaps* maps_;
  std::mutex mu_;  // guards tree_, watchers_, counters_
  NamespaceTree tree_;
  std::multimap<uint32_t, std::shared_ptr<Watcher>> watchers_;
  PipelineCounters counters_;
  BoundedQueue<Event> queue_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
};

}  // namespace nsima::ns
