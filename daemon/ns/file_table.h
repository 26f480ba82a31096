// SPDX-License-Identifier: Apache-2.0
// What one namespace knows of its files (NsRuntime::files): one FileState per inode the namespace
// has seen, kept for as long as the namespace's list lives (kernel IMA keeps an ima_iint_cache per
// inode in the same way).
//
// One per (namespace, file) pair, so its size is most of what nsimad holds per measured file
// version (daemon/README.md, "Memory under load"). A std::unordered_map node cost about 104 bytes
// (24-byte key, 48-byte state, the node's link and cached hash, malloc's rounding, the bucket).
// Here an entry is 64 bytes in a std::deque (blocks of 8 entries, references stable as it grows,
// as a ChainLink's FileState pointer needs), found through an open-addressing index of 32-bit
// entry numbers (linear probing, at most 70 % full): about 75 bytes per file. Entries are never
// removed one by one; clear() drops them all (a restarted list).
//
// The key is compact: the kernel's dev_t is 32 bits (include/linux/types.h), so (kdev, ino,
// generation) fits 16 bytes. A FileRef whose kdev does not fit (none comes from the hooks) goes to
// a small side map instead of being truncated into another file's key.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <unordered_map>
#include <vector>

#include "ns/judge.h"
#include "ns/verdict_writer.h"

namespace nsima::ns {

struct FileRefHash {
  size_t operator()(const FileRef& f) const noexcept {
    return std::hash<uint64_t>()(f.kdev * 1000003u ^ f.ino * 31u ^ f.generation);
  }
};

class FileTable {
 public:
  FileState* find(const FileRef& f);
  const FileState* find(const FileRef& f) const {
    return const_cast<FileTable*>(this)->find(f);
  }
  // The state of f, a default one inserted if f was never seen. The reference stays valid until
  // clear(), whatever is inserted after.
  FileState& operator[](const FileRef& f);
  size_t size() const { return entries_.size() + wide_.size(); }
  void clear();

  // fn(const FileRef&, FileState&) for every file, in no particular order.
  template <class Fn>
  void for_each(Fn&& fn) {
    for (Entry& e : entries_) fn(FileRef{e.kdev, e.ino, e.generation}, e.st);
    for (auto& [f, st] : wide_) fn(f, st);
  }

 private:
  struct Entry {
    uint64_t ino;
    uint32_t kdev;
    uint32_t generation;
    FileState st;
  };
  static_assert(sizeof(Entry) == 64, "keep an entry one cache line");

  static bool compact(const FileRef& f) { return f.kdev <= UINT32_MAX; }
  size_t slot_of(const FileRef& f) const;  // index_ not empty
  void grow();

  std::deque<Entry> entries_;
  // 0: empty; otherwise an entries_ position + 1. Its size is 0 or a power of two.
  std::vector<uint32_t> index_;
  std::unordered_map<FileRef, FileState, FileRefHash> wide_;
};

}  // namespace nsima::ns
