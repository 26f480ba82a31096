// SPDX-License-Identifier: Apache-2.0
#include "capture/protect.h"

#include <bpf/bpf.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>

#include "capture/bpf_maps.h"
#include "common/event.h"
#include "common/log.h"

namespace nsima::capture {

namespace {

Error map_err(const char* what, const char* map, int e) {
  return Error{e, std::string(what) + " failed: " + strerror(e), std::string("map ") + map};
}

// "key:\tvalue" lines of /proc/<pid>/fdinfo/<fd>
std::map<std::string, std::string> fdinfo(pid_t pid, const std::string& fd) {
  std::map<std::string, std::string> out;
  std::ifstream in("/proc/" + std::to_string(pid) + "/fdinfo/" + fd);
  std::string line;
  while (std::getline(in, line)) {
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string v = line.substr(colon + 1);
    v.erase(0, v.find_first_not_of(" \t"));
    out[line.substr(0, colon)] = v;
  }
  return out;
}

uint32_t to_id(const std::map<std::string, std::string>& m, const char* key) {
  auto it = m.find(key);
  if (it == m.end()) return 0;
  return static_cast<uint32_t>(std::strtoul(it->second.c_str(), nullptr, 10));
}

template <class K, class V>
Result<std::vector<K>> keys_of(int fd, const char* name) {
  std::vector<K> out;
  K key{}, next{};
  K* prev = nullptr;
  while (bpf_map_get_next_key(fd, prev, &next) == 0) {
    out.push_back(next);
    key = next;
    prev = &key;
  }
  if (errno != ENOENT) return tl::unexpected(map_err("iterate", name, errno));
  return out;
}

}  // namespace

std::set<std::pair<uint32_t, uint32_t>> bpf_objects_of(pid_t pid) {
  std::set<std::pair<uint32_t, uint32_t>> out;
  std::string dir = "/proc/" + std::to_string(pid) + "/fd";
  DIR* d = opendir(dir.c_str());
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    std::string fd = e->d_name;
    if (fd == "." || fd == "..") continue;
    char target[64] = {};
    ssize_t n = readlink((dir + "/" + fd).c_str(), target, sizeof target - 1);
    if (n <= 0) continue;
    std::string t(target, static_cast<size_t>(n));
    if (t == "anon_inode:bpf-map") {
      if (uint32_t id = to_id(fdinfo(pid, fd), "map_id")) out.insert({NSIMA_PROTECT_OBJ_MAP, id});
    } else if (t == "anon_inode:bpf-prog") {
      if (uint32_t id = to_id(fdinfo(pid, fd), "prog_id")) out.insert({NSIMA_PROTECT_OBJ_PROG, id});
    } else if (t == "anon_inode:bpf_link" || t == "anon_inode:bpf-link") {
      // bpf_link_prime names a new link's file "bpf_link", bpf_link_new_fd (BPF_OBJ_GET of a
      // pin, as a resumed nsimad holds them) "bpf-link"
      auto info = fdinfo(pid, fd);
      if (uint32_t id = to_id(info, "link_id")) out.insert({NSIMA_PROTECT_OBJ_LINK, id});
      if (uint32_t id = to_id(info, "prog_id")) out.insert({NSIMA_PROTECT_OBJ_PROG, id});
    }
  }
  closedir(d);
  return out;
}

std::vector<std::pair<uint32_t, uint64_t>> swtpm_pids(const std::string& root) {
  std::vector<std::pair<uint32_t, uint64_t>> out;
  DIR* d = opendir(root.c_str());
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    std::string ns = e->d_name;
    if (ns == "." || ns == "..") continue;
    std::ifstream in(root + "/" + ns + "/swtpm.pid");
    long pid = 0;
    if (!(in >> pid) || pid <= 0) continue;
    // a stale pid file (swtpm gone, pid reused) must not protect another process
    std::ifstream comm("/proc/" + std::to_string(pid) + "/comm");
    std::string c;
    if (!std::getline(comm, c) || c.rfind("swtpm", 0) != 0) continue;
    auto start = process_start_ticks(static_cast<pid_t>(pid));
    if (!start) continue;
    out.emplace_back(static_cast<uint32_t>(pid), *start);
  }
  closedir(d);
  return out;
}

Result<std::unique_ptr<Protector>> Protector::start(const ProtectFds& fds,
                                                    const ProtectOptions& o) {
  if (fds.cfg < 0 || fds.dirs < 0 || fds.objs < 0 || fds.pids < 0)
    return make_error(EINVAL, "the self-protection maps are not open", "protect");
  std::unique_ptr<Protector> p(new Protector(fds, o));
  struct stat st {};
  if (stat("/proc/self/exe", &st) != 0)
    return make_error(errno, std::string("cannot stat nsimad's executable: ") + strerror(errno),
                      "/proc/self/exe");
  nsima_protect_cfg cfg{};
  cfg.exe_dev = dev_to_kdev(st.st_dev);
  cfg.exe_ino = st.st_ino;
  // A previous run's pinned cfg stays on meanwhile: its sets keep protecting until replaced.
  uint32_t zero = 0;
  if (auto r = p->write_dirs(); !r) return tl::unexpected(r.error());
  if (auto r = p->sync(); !r) return tl::unexpected(r.error());
  cfg.flags = NSIMA_PROTECT_ON | (o.lockdown ? NSIMA_PROTECT_LOCKDOWN : 0);
  if (bpf_map_update_elem(fds.cfg, &zero, &cfg, BPF_ANY))
    return tl::unexpected(map_err("update", "protect_cfg", errno));
  logger("capture")->info(
      "self-protection on: {} directories, {} BPF objects, {} swtpm processes{}", p->ndirs_,
      p->nobjs_.load(), p->npids_.load(),
      o.lockdown ? "; lockdown: nsima's BPF objects are reachable by nsimad alone" : "");
  p->thread_ = std::thread([q = p.get()] {
    std::unique_lock lock(q->stop_mu_);
    while (!q->stop_cv_.wait_for(lock, q->opts_.interval, [q] { return q->stop_; })) {
      lock.unlock();
      if (auto r = q->sync(); !r) {
        static std::atomic<uint64_t> logged{0};
        if (logged.fetch_add(1) < 10)
          logger("capture")->error("self-protection: {}", r.error().to_string());
      }
      lock.lock();
    }
  });
  return p;
}

Protector::~Protector() {
  {
    std::lock_guard lock(stop_mu_);
    stop_ = true;
  }
  stop_cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

Result<void> Protector::write_dirs() {
  std::set<std::pair<uint64_t, uint64_t>> want;
  for (const auto& d : opts_.dirs) {
    struct stat st {};
    if (stat(d.c_str(), &st) != 0) {
      const int e = errno;  // before the logger call, which may change it
      logger("capture")->warn("self-protection: {} not protected: {}", d, strerror(e));
      continue;
    }
    want.insert({dev_to_kdev(st.st_dev), st.st_ino});
  }
  if (want.size() > NSIMA_PROTECT_MAX_DIRS)
    return make_error(E2BIG, "too many protected directories", "protected_dirs");
  // the new set first, then what the previous run protected and this one does not
  uint32_t one = 1;
  for (auto& [dev, ino] : want) {
    nsima_protect_dir k{dev, ino};
    if (bpf_map_update_elem(fds_.dirs, &k, &one, BPF_ANY))
      return tl::unexpected(map_err("update", "protected_dirs", errno));
  }
  auto old = keys_of<nsima_protect_dir, uint32_t>(fds_.dirs, "protected_dirs");
  if (!old) return tl::unexpected(old.error());
  for (auto& k : *old)
    if (!want.count({k.dev, k.ino})) bpf_map_delete_elem(fds_.dirs, &k);
  ndirs_ = want.size();
  return {};
}

Result<void> Protector::sync() {
  std::lock_guard lock(mu_);
  uint32_t one = 1;
  // BPF objects: those this nsimad holds now (the model hooks come and go)
  auto objs = bpf_objects_of(getpid());
  for (auto& [type, id] : objs) {
    if (objs_.count({type, id})) continue;
    nsima_protect_obj k{type, id};
    if (bpf_map_update_elem(fds_.objs, &k, &one, BPF_ANY))
      return tl::unexpected(map_err("update", "protected_objs", errno));
  }
  if (objs_.empty() || objs != objs_) {
    auto old = keys_of<nsima_protect_obj, uint32_t>(fds_.objs, "protected_objs");
    if (!old) return tl::unexpected(old.error());
    for (auto& k : *old)
      if (!objs.count({k.type, k.id})) bpf_map_delete_elem(fds_.objs, &k);
  }
  objs_ = std::move(objs);
  nobjs_ = objs_.size();
  // swtpm processes
  auto pids = swtpm_pids(opts_.vtpm_run_root);
  if (opts_.more_pids)
    for (pid_t pid : opts_.more_pids())
      if (auto start = process_start_ticks(pid); start)
        pids.emplace_back(static_cast<uint32_t>(pid), *start);
  std::map<uint32_t, uint64_t> now;
  for (auto& [pid, start] : pids) {
    now[pid] = start;
    // Written once per process (a pid reused by another process has another start time).
    if (auto it = pids_.find(pid); it != pids_.end() && it->second == start) continue;
    if (bpf_map_update_elem(fds_.pids, &pid, &start, BPF_ANY))
      return tl::unexpected(map_err("update", "protected_pids", errno));
  }
  if (pids_.empty() || now != pids_) {
    auto old = keys_of<uint32_t, uint64_t>(fds_.pids, "protected_pids");
    if (!old) return tl::unexpected(old.error());
    for (auto k : *old)
      if (!now.count(k)) bpf_map_delete_elem(fds_.pids, &k);
  }
  pids_ = std::move(now);
  npids_ = pids_.size();
  return {};
}

}  // namespace nsima::capture
