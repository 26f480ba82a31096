// SPDX-License-Identifier: Apache-2.0
#include "ns/pipeline.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "common/log.h"
#include "common/unique_fd.h"
#include "ns/cgroup.h"

namespace nsima::ns {

void Watcher::offer(std::string line) {
  if (!lines_.try_push(std::move(line))) lost_.fetch_add(1);
}

Pipeline::Pipeline(PipelineOptions opts, capture::BpfMaps* maps)
    : opts_(std::move(opts)), maps_(maps), tree_(opts_.cgroup_root, 0),
      queue_(opts_.queue_capacity) {}

Pipeline::~Pipeline() { stop(); }

Result<void> Pipeline::init() {
  auto id = cgroup_id_of(opts_.cgroup_root);
  if (!id) return tl::unexpected(id.error());
  std::lock_guard lock(mu_);
  tree_.host().cgroup_id = *id;
  if (maps_) {
    if (auto r = maps_->init_ns_drops(kHostNsId); !r) return r;
  }
  return {};
}

void Pipeline::start() {
  stop_ = false;
  thread_ = std::thread([this] { run(); });
}

void Pipeline::stop() {
  if (!thread_.joinable()) return;
  queue_.close();
  thread_.join();
  std::lock_guard lock(mu_);
  for (auto& [id, w] : watchers_) w->close();
}

void Pipeline::submit(Event&& ev) { queue_.push(std::move(ev)); }

void Pipeline::run() {
  for (;;) {
    auto ev = queue_.pop(std::chrono::milliseconds(200));
    if (!ev) {
      if (queue_.closed()) break;
      continue;
    }
    process(*ev);
  }
}

void Pipeline::process(Event& ev) {
  std::lock_guard lock(mu_);
  counters_.processed++;
  Namespace* ns = tree_.find(ev.ns_id);
  if (!ns) {
    counters_.unknown_namespace++;
    return;
  }
  auto chain = tree_.chain(ns);

  // Without policies every access is allowed and reported once per access class: a repeat of
  // the same class on the same version of the file is silent in the hook.
  if (maps_) {
    nsima_verdict_key key{ev.ns_id, ev.generation, ev.kdev, ev.ino};
    if (!maps_->allow(key, ev.stamp, 1u << ev.access_class())) counters_.map_errors++;
  }
  notify_watchers(chain, ev);
}

void Pipeline::notify_watchers(const std::vector<Namespace*>& chain, const Event& ev) {
  if (watchers_.empty()) return;
  std::string line;
  for (Namespace* n : chain) {
    auto [b, e] = watchers_.equal_range(n->id);
    for (auto it = b; it != e; ++it) {
      if (line.empty()) line = event_to_json(ev);
      it->second->offer(line);
    }
  }
}

Result<void> Pipeline::register_in_bpf(Namespace* ns) {
  if (!maps_) return {};
  if (auto r = maps_->init_ns_drops(ns->id); !r) return r;
  if (auto r = maps_->register_cgroup(ns->cgroup_id, ns->id, 0); !r) return r;
  return maps_->flush_derived();
}

Result<uint32_t> Pipeline::create_namespace(const std::string& cgroup_path) {
  auto dir = canonical_dir(cgroup_path);
  if (!dir) return tl::unexpected(dir.error());
  auto id = cgroup_id_of(*dir);
  if (!id) return tl::unexpected(id.error());
  std::lock_guard lock(mu_);
  if (*dir == tree_.cgroup_root()) return make_error(EEXIST, "is the host namespace", *dir);
  auto ns = tree_.create(*dir, *id);
  if (!ns) return tl::unexpected(ns.error());
  if (auto r = register_in_bpf(*ns); !r) {
    (void)tree_.remove((*ns)->name);
    return tl::unexpected(r.error());
  }
  logger("ns")->info("namespace {} created for {} (cgroup id {}), parent {}", (*ns)->name, *dir,
                     *id, (*ns)->parent->name);
  return (*ns)->id;
}

Result<uint32_t> Pipeline::ensure_namespace(const std::string& cgroup_path) {
  auto dir = canonical_dir(cgroup_path);
  if (!dir) return tl::unexpected(dir.error());
  {
    std::lock_guard lock(mu_);
    if (*dir == tree_.cgroup_root()) {
      Namespace& host = tree_.host();
      if (auto r = register_in_bpf(&host); !r) return tl::unexpected(r.error());
      return host.id;
    }
    if (Namespace* ns = tree_.find_by_cgroup(*dir)) return ns->id;
  }
  return create_namespace(*dir);
}

Result<void> Pipeline::delete_namespace(const std::string& name_or_id) {
  std::lock_guard lock(mu_);
  Namespace* ns = tree_.find(name_or_id);
  if (!ns) return make_error(ENOENT, "no such namespace", name_or_id);
  if (ns->is_host()) return make_error(EPERM, "the host namespace cannot be deleted", name_or_id);
  uint32_t id = ns->id;
  uint64_t cg = ns->cgroup_id;
  if (auto r = tree_.remove(name_or_id); !r) return r;
  if (maps_) {
    if (auto r = maps_->unregister_cgroup(cg); !r) return r;
    if (auto r = maps_->flush_derived(); !r) return r;
    if (auto r = maps_->remove_namespace_verdicts(id); !r) return tl::unexpected(r.error());
  }
  auto [b, e] = watchers_.equal_range(id);
  for (auto it = b; it != e; ++it) it->second->close();
  watchers_.erase(id);
  logger("ns")->info("namespace {} deleted", name_or_id);
  return {};
}

std::vector<Pipeline::NsInfo> Pipeline::list_namespaces() {
  std::lock_guard lock(mu_);
  std::vector<NsInfo> out;
  for (Namespace* ns : tree_.all())
    out.push_back(NsInfo{ns->id, ns->name, ns->cgroup_path, ns->parent ? ns->parent->name : "",
                         ns->cgroup_id});
  return out;
}

std::optional<Pipeline::NsInfo> Pipeline::namespace_info(const std::string& name_or_id) {
  std::lock_guard lock(mu_);
  Namespace* ns = tree_.find(name_or_id);
  if (!ns) return std::nullopt;
  return NsInfo{ns->id, ns->name, ns->cgroup_path, ns->parent ? ns->parent->name : "",
                ns->cgroup_id};
}

Result<void> Pipeline::set_file_verdict(const std::string& cgroup_path, const std::string& file,
                                        bool allow) {
  if (!maps_) return make_error(ENOTSUP, "no BPF programs loaded", file);
  auto ns_id = ensure_namespace(cgroup_path);
  if (!ns_id) return tl::unexpected(ns_id.error());

  // Open the file ourselves: the hook records the kernel's stamp of nsimad's own opens
  // (i_version is invisible to userspace), keyed by our thread id.
  UniqueFd fd(::open(file.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY));
  if (!fd) return make_error(errno, std::string("cannot open: ") + strerror(errno), file);
  struct stat st;
  if (fstat(fd.get(), &st) != 0) return make_error(errno, strerror(errno), file);
  auto self = maps_->self_open(static_cast<uint32_t>(syscall(SYS_gettid)));
  if (!self || self->ino != st.st_ino || self->dev != dev_to_kdev(st.st_dev))
    return make_error(EIO, "the kernel did not report the stamp of nsimad's open", file);
  nsima_verdict_key key{*ns_id, self->generation, self->dev, self->ino};
  Stamp stamp = capture::from_abi(self->stamp);
  auto r = allow ? maps_->allow(key, stamp, 0, /*keep_deny=*/false) : maps_->deny(key, stamp);
  if (!r) return r;
  logger("ns")->info("{} {} in namespace {}", allow ? "allow" : "deny", file, *ns_id);
  return {};
}

std::shared_ptr<Watcher> Pipeline::watch(uint32_t ns_id) {
  auto w = std::make_shared<Watcher>();
  std::lock_guard lock(mu_);
  watchers_.emplace(ns_id, w);
  return w;
}

void Pipeline::unwatch(const std::shared_ptr<Watcher>& w) {
  std::lock_guard lock(mu_);
  for (auto it = watchers_.begin(); it != watchers_.end();) {
    if (it->second == w)
      it = watchers_.erase(it);
    else
      ++it;
  }
}

PipelineCounters Pipeline::counters() {
  std::lock_guard lock(mu_);
  return counters_;
}

}  // namespace nsima::ns
