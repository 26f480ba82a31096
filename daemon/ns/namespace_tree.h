// SPDX-License-Identifier: Apache-2.0
// nsima namespaces: each is bound to a cgroup v2 directory and nests under the namespace of the
// nearest ancestor directory. An event is judged by its namespace and by every ancestor up to
// `host` (the root cgroup, always present). Children inherit nothing implicitly.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/result.h"

namespace nsima::ns {

inline constexpr uint32_t kHostNsId = 1;
inline constexpr const char* kHostNsName = "host";

struct Namespace {
  uint32_t id = 0;          // the ns_id the BPF side tags events with
  std::string name;         // "host", or the decimal id
  std::string cgroup_path;  // absolute directory
  uint64_t cgroup_id = 0;
  Namespace* parent = nullptr;
  std::vector<Namespace*> children;

  bool is_host() const { return id == kHostNsId; }
};

class NamespaceTree {
 public:
  // `cgroup_root` is the cgroup2 mount; `host_cgroup_id` its id (0 in tests without cgroup2).
  NamespaceTree(std::string cgroup_root, uint64_t host_cgroup_id);

  Namespace& host() { return *host_; }
  const std::string& cgroup_root() const { return cgroup_root_; }

  // Creates the namespace for an existing cgroup directory (canonical absolute path). Its
  // parent is the namespace of the nearest ancestor directory; existing namespaces below it are
  // re-parented under it.
  // `id` 0 allocates the next free id (a restored namespace keeps its own).
  Result<Namespace*> create(const std::string& cgroup_path, uint64_t cgroup_id, uint32_t id = 0);
  // Deletes a namespace (never host); its children move up to its parent.
  Result<void> remove(const std::string& name_or_id);

  Namespace* find(uint32_t id);
  Namespace* find(const std::string& name_or_id);
  Namespace* find_by_cgroup(const std::string& cgroup_path);
  // The namespace itself first, then each ancestor up to host.
  std::vector<Namespace*> chain(Namespace* ns) const;
  // The namespace and all its descendants.
  std::vector<Namespace*> subtree(Namespace* ns) const;
  std::vector<Namespace*> all() const;

 private:
  Namespace* nearest_ancestor(const std::string& cgroup_path);

  std::string cgroup_root_;
  std::map<uint32_t, std::unique_ptr<Namespace>> by_id_;
  Namespace* host_ = nullptr;
  uint32_t next_id_ = kHostNsId + 1;
};

}  // namespace nsima::ns
