// SPDX-License-Identifier: Apache-2.0
#include "ns/file_table.h"

#include <random>
#include <stdexcept>

namespace nsima::ns {
namespace {

// A per-run seed: inode numbers are not chosen by a container, but a filesystem that hands them
// out in sequence must not line them up on one probe run either.
uint64_t seed() {
  static const uint64_t s = (uint64_t{std::random_device{}()} << 32) ^ std::random_device{}();
  return s;
}

uint64_t mix(uint64_t x) {  // splitmix64's finalizer
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

}  // namespace

size_t FileTable::slot_of(const FileRef& f) const {
  const size_t mask = index_.size() - 1;
  size_t i = mix(f.ino ^ seed() ^ mix(f.kdev << 32 | f.generation)) & mask;
  for (;; i = (i + 1) & mask) {
    const uint32_t n = index_[i];
    if (n == 0) return i;
    const Entry& e = entries_[n - 1];
    if (e.ino == f.ino && e.kdev == f.kdev && e.generation == f.generation) return i;
  }
}

void FileTable::grow() {
  const size_t cap = index_.empty() ? 16 : index_.size() * 2;
  if (cap > (size_t{1} << 32)) throw std::length_error("FileTable: index beyond 2^32 slots");
  index_.assign(cap, 0);
  for (size_t n = 0; n < entries_.size(); ++n) {
    const Entry& e = entries_[n];
    index_[slot_of(FileRef{e.kdev, e.ino, e.generation})] = static_cast<uint32_t>(n + 1);
  }
}

FileState* FileTable::find(const FileRef& f) {
  if (!compact(f)) {
    auto it = wide_.find(f);
    return it == wide_.end() ? nullptr : &it->second;
  }
  if (index_.empty()) return nullptr;
  const uint32_t n = index_[slot_of(f)];
  return n == 0 ? nullptr : &entries_[n - 1].st;
}

FileState& FileTable::operator[](const FileRef& f) {
  if (!compact(f)) return wide_[f];
  if (index_.empty()) grow();
  size_t i = slot_of(f);
  if (index_[i] != 0) return entries_[index_[i] - 1].st;
  // At most 70 % of the slots in use, so that probes stay short.
  if ((entries_.size() + 1) * 10 > index_.size() * 7) {
    grow();
    i = slot_of(f);
  }
  entries_.push_back(Entry{f.ino, static_cast<uint32_t>(f.kdev), f.generation, FileState{}});
  index_[i] = static_cast<uint32_t>(entries_.size());
  return entries_.back().st;
}

void FileTable::clear() {
  entries_.clear();
  entries_.shrink_to_fit();
  index_.clear();
  index_.shrink_to_fit();
  wide_.clear();
}

}  // namespace nsima::ns
