// SPDX-License-Identifier: Apache-2.0
#include "ns/verdict_writer.h"

#include <bpf/bpf.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <type_traits>

#include "common/atomic_file.h"
#include "common/json_int.h"
#include "common/log.h"

namespace nsima::ns {

namespace fs = std::filesystem;

namespace {

bool in(std::span<const uint32_t> ids, uint32_t id) {
  return std::find(ids.begin(), ids.end(), id) != ids.end();
}

nsima_verdict_key key_of(uint32_t ns_id, const FileRef& f) {
  return nsima_verdict_key{ns_id, f.generation, f.kdev, f.ino};
}

}  // namespace

VerdictWriter::VerdictWriter(capture::BpfMaps* maps, std::string state_dir)
    : maps_(maps), path_((fs::path(state_dir) / "overrides.json").string()) {}

Result<void> VerdictWriter::load() {
  std::lock_guard lock(mu_);
  overrides_.clear();
  std::ifstream in(path_);
  if (!in) return {};  // none yet
  std::stringstream ss;
  ss << in.rdbuf();
  auto j = nlohmann::json::parse(ss.str(), nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("overrides") ||
      !j["overrides"].is_array())
    return make_error(EINVAL,
                      "not an nsima overrides file (expected {\"overrides\": [...]}); fix or "
                      "remove it: nsimad does not start without the operator's denies",
                      path_);
  size_t i = 0;
  for (auto& o : j["overrides"]) {
    ++i;
    const std::string which = "override " + std::to_string(i) + ": ";
    if (!o.is_object()) return make_error(EINVAL, which + "not an object", path_);
    Override ov;
    // Integers strictly (json_int.h): get<uint32_t>() of a float is undefined behaviour.
    std::string bad;
    auto num = [&](const char* key, auto& out, bool required) {
      using T = std::remove_reference_t<decltype(out)>;
      if (required && !o.contains(key)) {
        if (bad.empty()) bad = std::string("missing \"") + key + "\"";
        return;
      }
      auto v = json_int_field<T>(o, key, T{0});
      if (v) out = *v;
      else if (bad.empty()) bad = std::string("\"") + key + "\" is not an integer in range";
    };
    num("ns_id", ov.ns_id, true);
    num("kdev", ov.file.kdev, true);
    num("ino", ov.file.ino, true);
    num("generation", ov.file.generation, true);
    num("ctime_sec", ov.stamp.ctime_sec, false);
    num("ctime_nsec", ov.stamp.ctime_nsec, false);
    num("i_version", ov.stamp.i_version, false);
    num("size", ov.stamp.size, false);
    if (!bad.empty()) return make_error(EINVAL, which + bad, path_);
    try {
      ov.path = o.value("path", "");
    } catch (const nlohmann::json::exception& e) {
      return make_error(EINVAL, which + e.what(), path_);
    }
    overrides_.push_back(std::move(ov));
  }
  return {};
}

Result<void> VerdictWriter::save_locked() {
  nlohmann::json arr = nlohmann::json::array();
  for (auto& o : overrides_)
    arr.push_back({{"ns_id", o.ns_id},
                   {"kdev", o.file.kdev},
                   {"ino", o.file.ino},
                   {"generation", o.file.generation},
                   {"path", o.path},
                   {"verdict", "deny"},
                   {"ctime_sec", o.stamp.ctime_sec},
                   {"ctime_nsec", o.stamp.ctime_nsec},
                   {"i_version", o.stamp.i_version},
                   {"size", o.stamp.size}});
  std::string body = nlohmann::json{{"version", 1}, {"overrides", arr}}.dump(2) + "\n";
  std::error_code ec;
  fs::create_directories(fs::path(path_).parent_path(), ec);
  return write_file_atomic(path_, body);
}

bool VerdictWriter::covers_locked(std::span<const uint32_t> chain, const FileRef& f) const {
  for (auto& o : overrides_)
    if (o.file == f && in(chain, o.ns_id)) return true;
  return false;
}

Result<void> VerdictWriter::write_deny_locked(uint32_t ns_id, const FileRef& f,
                                              const Stamp& stamp) {
  if (!maps_) return {};
  auto r = maps_->deny(key_of(ns_id, f), stamp, /*every_version=*/true);
  if (!r) {
    errors_++;
    return r;
  }
  if (std::find(written_.begin(), written_.end(), std::make_pair(ns_id, f)) == written_.end())
    written_.emplace_back(ns_id, f);
  return {};
}

void VerdictWriter::judged_deny(std::span<const uint32_t> chain, const FileRef& f,
                                const Stamp& stamp, uint32_t classes, uint32_t quiet_bits,
                                uint32_t judged_bits) {
  if (!maps_ || chain.empty() || !classes) return;
  std::lock_guard lock(mu_);
  if (covers_locked(chain, f)) return;
  if (!maps_->deny(key_of(chain[0], f), stamp, /*every_version=*/false, classes, quiet_bits,
                   judged_bits))
    errors_++;
}

void VerdictWriter::forget_judged(std::span<const uint32_t> chain, const FileRef& f) {
  if (!maps_ || chain.empty()) return;
  std::lock_guard lock(mu_);
  if (covers_locked(chain, f)) return;
  if (!maps_->remove_verdict(key_of(chain[0], f))) errors_++;
}

void VerdictWriter::judged_allow(std::span<const uint32_t> chain, const FileRef& f,
                                 const Stamp& stamp, uint32_t quiet_bits, uint32_t judged_bits,
                                 uint32_t model_quiet_bits) {
  if (!maps_ || chain.empty()) return;
  std::lock_guard lock(mu_);
  if (covers_locked(chain, f)) return;
  // keep_deny: a judged deny of this version stays for the classes it refuses (appraisal
  // failed there); an allow of another class only adds that class's bits.
  if (!maps_->allow(key_of(chain[0], f), stamp, quiet_bits, /*keep_deny=*/true, judged_bits,
                    model_quiet_bits))
    errors_++;
}

Result<void> VerdictWriter::deny(uint32_t ns_id, const FileRef& f, const Stamp& stamp,
                                 const std::string& path, std::span<const uint32_t> subtree) {
  std::lock_guard lock(mu_);
  Override ov{ns_id, f, path, stamp};
  bool known = false;
  for (auto& o : overrides_)
    if (o.ns_id == ns_id && o.file == f) {
      o = ov;
      known = true;
    }
  if (!known) overrides_.push_back(ov);
  // Persisted first: a deny the operator was told about survives any crash from here on.
  if (auto s = save_locked(); !s) {
    if (!known) overrides_.pop_back();
    return s;
  }
  for (uint32_t id : subtree)
    if (auto r = write_deny_locked(id, f, stamp); !r) return r;
  return {};
}

Result<void> VerdictWriter::allow(uint32_t ns_id, const FileRef& f,
                                  std::span<const uint32_t> ancestors,
                                  std::span<const uint32_t> subtree) {
  std::lock_guard lock(mu_);
  for (auto& o : overrides_)
    if (o.file == f && in(ancestors, o.ns_id))
      return make_error(EPERM,
                        "denied by namespace " + std::to_string(o.ns_id) +
                            ", an ancestor (a namespace never relaxes its ancestors: allow it "
                            "there)",
                        o.path);
  auto before = overrides_.size();
  overrides_.erase(std::remove_if(overrides_.begin(), overrides_.end(),
                                  [&](const Override& o) { return o.ns_id == ns_id && o.file == f; }),
                   overrides_.end());
  if (overrides_.size() != before)
    if (auto s = save_locked(); !s) return s;
  if (!maps_) return {};
  for (uint32_t id : subtree) {
    // Another override inside the subtree (a descendant's own deny) keeps its namespaces denied.
    bool kept = false;
    for (auto& o : overrides_)
      if (o.file == f && in(subtree, o.ns_id) && o.ns_id != ns_id) kept = kept || o.ns_id == id;
    if (kept) continue;
    if (auto r = maps_->remove_verdict(key_of(id, f)); !r && r.error().code != ENOENT) {
      errors_++;
      return r;
    }
    written_.erase(std::remove(written_.begin(), written_.end(), std::make_pair(id, f)),
                   written_.end());
  }
  return {};
}

std::optional<Override> VerdictWriter::denied_by(std::span<const uint32_t> chain,
                                                 const FileRef& f) const {
  std::lock_guard lock(mu_);
  for (uint32_t id : chain)
    for (auto& o : overrides_)
      if (o.ns_id == id && o.file == f) return o;
  return std::nullopt;
}

Result<void> VerdictWriter::apply(std::span<const uint32_t> chain) {
  if (chain.empty()) return {};
  std::lock_guard lock(mu_);
  const uint32_t id = chain[0];
  // Denies written for this namespace that no override of its chain stands behind any more
  // (an ancestor was deleted, the namespace moved).
  for (auto it = written_.begin(); it != written_.end();) {
    if (it->first == id && !covers_locked(chain, it->second)) {
      if (maps_)
        if (auto r = maps_->remove_verdict(key_of(id, it->second)); !r && r.error().code != ENOENT) {
          errors_++;
          return r;
        }
      it = written_.erase(it);
    } else {
      ++it;
    }
  }
  for (auto& o : overrides_)
    if (in(chain, o.ns_id))
      if (auto r = write_deny_locked(id, o.file, o.stamp); !r) return r;
  return {};
}

Result<size_t> VerdictWriter::invalidate(uint32_t ns_id) {
  if (!maps_) return size_t{0};
  std::lock_guard lock(mu_);
  int fd = maps_->fds().verdicts;
  std::vector<nsima_verdict_key> doomed;
  nsima_verdict_key key{}, next{};
  nsima_verdict_key* prev = nullptr;
  while (bpf_map_get_next_key(fd, prev, &next) == 0) {
    if (next.ns_id == ns_id) {
      FileRef f{next.dev, next.ino, next.generation};
      if (std::find(written_.begin(), written_.end(), std::make_pair(ns_id, f)) == written_.end())
        doomed.push_back(next);
    }
    key = next;
    prev = &key;
  }
  for (auto& k : doomed)
    if (bpf_map_delete_elem(fd, &k) && errno != ENOENT) {
      errors_++;
      return make_error(errno, std::string("bpf_map_delete_elem(verdicts): ") + strerror(errno));
    }
  return doomed.size();
}

Result<void> VerdictWriter::forget(uint32_t ns_id) {
  std::lock_guard lock(mu_);
  auto before = overrides_.size();
  overrides_.erase(std::remove_if(overrides_.begin(), overrides_.end(),
                                  [&](const Override& o) { return o.ns_id == ns_id; }),
                   overrides_.end());
  if (overrides_.size() != before)
    if (auto s = save_locked(); !s) return s;
  written_.erase(std::remove_if(written_.begin(), written_.end(),
                                [&](auto& w) { return w.first == ns_id; }),
                 written_.end());
  if (!maps_) return {};
  if (auto r = maps_->remove_namespace_verdicts(ns_id); !r) {
    errors_++;
    return tl::unexpected(r.error());
  }
  return {};
}

std::vector<Override> VerdictWriter::overrides() const {
  std::lock_guard lock(mu_);
  return overrides_;
}

uint64_t VerdictWriter::errors() const {
  std::lock_guard lock(mu_);
  return errors_;
}

}  // namespace nsima::ns
