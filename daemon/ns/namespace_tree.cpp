// SPDX-License-Identifier: Apache-2.0
#include "ns/namespace_tree.h"

#include <algorithm>
#include <cerrno>

namespace nsima::ns {

namespace {

// "/a/b" is below "/a" (and below "/"), "/ab" is not below "/a".
bool is_below(const std::string& path, const std::string& dir) {
  if (dir == "/") return path.size() > 1 && path[0] == '/';
  return path.size() > dir.size() && path.compare(0, dir.size(), dir) == 0 &&
         path[dir.size()] == '/';
}

}  // namespace

NamespaceTree::NamespaceTree(std::string cgroup_root, uint64_t host_cgroup_id)
    : cgroup_root_(std::move(cgroup_root)) {
  auto host = std::make_unique<Namespace>();
  host->id = kHostNsId;
  host->name = kHostNsName;
  host->cgroup_path = cgroup_root_;
  host->cgroup_id = host_cgroup_id;
  host_ = host.get();
  by_id_[kHostNsId] = std::move(host);
}

Namespace* NamespaceTree::nearest_ancestor(const std::string& cgroup_path) {
  Namespace* best = host_;
  for (auto& [id, ns] : by_id_) {
    if (ns.get() != host_ && is_below(cgroup_path, ns->cgroup_path) &&
        ns->cgroup_path.size() > best->cgroup_path.size())
      best = ns.get();
  }
  return best;
}

Result<Namespace*> NamespaceTree::create(const std::string& cgroup_path, uint64_t cgroup_id,
                                         uint32_t id) {
  if (!is_below(cgroup_path, cgroup_root_))
    return make_error(EINVAL,
                      "is not a cgroup below " + cgroup_root_ +
                          " (the root cgroup is the host namespace)",
                      cgroup_path);
  if (auto* existing = find_by_cgroup(cgroup_path))
    return make_error(EEXIST, "already bound to namespace " + existing->name, cgroup_path);

  if (id != 0 && by_id_.count(id)) return make_error(EEXIST, "namespace id " + std::to_string(id) + " is taken", cgroup_path);
  auto ns = std::make_unique<Namespace>();
  ns->id = id != 0 ? id : next_id_;
  next_id_ = std::max(next_id_, ns->id + 1);
  ns->name = std::to_string(ns->id);
  ns->cgroup_path = cgroup_path;
  ns->cgroup_id = cgroup_id;
  Namespace* parent = nearest_ancestor(cgroup_path);
  ns->parent = parent;
  // Namespaces of directories below the new one now nest under it.
  for (auto it = parent->children.begin(); it != parent->children.end();) {
    if (is_below((*it)->cgroup_path, cgroup_path)) {
      (*it)->parent = ns.get();
      ns->children.push_back(*it);
      it = parent->children.erase(it);
    } else {
      ++it;
    }
  }
  parent->children.push_back(ns.get());
  Namespace* raw = ns.get();
  by_id_[raw->id] = std::move(ns);
  return raw;
}

Result<void> NamespaceTree::remove(const std::string& name_or_id) {
  Namespace* ns = find(name_or_id);
  if (!ns) return make_error(ENOENT, "no such namespace", name_or_id);
  if (ns->is_host()) return make_error(EPERM, "the host namespace cannot be deleted", name_or_id);
  Namespace* parent = ns->parent;
  auto& siblings = parent->children;
  siblings.erase(std::remove(siblings.begin(), siblings.end(), ns), siblings.end());
  for (Namespace* c : ns->children) {
    c->parent = parent;
    siblings.push_back(c);
  }
  by_id_.erase(ns->id);
  return {};
}

Namespace* NamespaceTree::find(uint32_t id) {
  auto it = by_id_.find(id);
  return it == by_id_.end() ? nullptr : it->second.get();
}

Namespace* NamespaceTree::find(const std::string& name_or_id) {
  // "host" and its id (1, what events and ns_id fields carry) name the same namespace.
  if (name_or_id == kHostNsName || name_or_id == std::to_string(kHostNsId)) return host_;
  for (auto& [id, ns] : by_id_)
    if (ns->name == name_or_id) return ns.get();
  return nullptr;
}

Namespace* NamespaceTree::find_by_cgroup(const std::string& cgroup_path) {
  for (auto& [id, ns] : by_id_)
    if (ns->cgroup_path == cgroup_path) return ns.get();
  return nullptr;
}

std::vector<Namespace*> NamespaceTree::chain(Namespace* ns) const {
  std::vector<Namespace*> out;
  for (; ns; ns = ns->parent) out.push_back(ns);
  return out;
}

std::vector<Namespace*> NamespaceTree::subtree(Namespace* ns) const {
  std::vector<Namespace*> out{ns};
  for (size_t i = 0; i < out.size(); ++i)
    for (Namespace* c : out[i]->children) out.push_back(c);
  return out;
}

std::vector<Namespace*> NamespaceTree::all() const {
  std::vector<Namespace*> out;
  for (auto& [id, ns] : by_id_) out.push_back(ns.get());
  return out;
}

}  // namespace nsima::ns
