// SPDX-License-Identifier: Apache-2.0
#include "capture/journal.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <vector>

#include "common/log.h"

namespace nsima::capture {

namespace fs = std::filesystem;

namespace {

constexpr size_t kHeader = sizeof(uint32_t) + sizeof(uint64_t);
constexpr size_t kMaxRecord = 1u << 16;  // a ring-buffer record is at most header + PATH_MAX

std::string segment_path(const std::string& dir, uint64_t id) {
  return dir + "/seg-" + std::to_string(id) + ".bin";
}

}  // namespace

Result<std::unique_ptr<Journal>> Journal::open(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return make_error(ec.value(), "cannot create the intake journal: " + ec.message(), dir);
  std::unique_ptr<Journal> j(new Journal(dir));
  for (auto& e : fs::directory_iterator(dir, ec)) {
    std::string name = e.path().filename().string();
    if (name.rfind("seg-", 0) != 0 || name.size() < 9 || name.substr(name.size() - 4) != ".bin")
      continue;
    uint64_t id = std::strtoull(name.c_str() + 4, nullptr, 10);
    if (id == 0) continue;
    j->previous_[id] = e.path().string();
    j->next_id_ = std::max(j->next_id_, id + 1);
  }
  if (ec) return make_error(ec.value(), "cannot list the intake journal: " + ec.message(), dir);
  return j;
}

Journal::~Journal() {
  // A clean exit: what is all acked need not be replayed by the next nsimad.
  std::lock_guard lock(mu_);
  for (auto it = segments_.begin(); it != segments_.end();)
    if (it->second.unacked == 0)
      it = (::unlink(it->second.path.c_str()), segments_.erase(it));
    else
      ++it;
}

Result<uint64_t> Journal::replay_previous(
    const std::function<void(const uint8_t*, size_t)>& fn) {
  std::map<uint64_t, std::string> prev;
  {
    std::lock_guard lock(mu_);
    prev = previous_;
  }
  uint64_t n = 0;
  std::vector<uint8_t> buf;
  for (auto& [id, path] : prev) {
    UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!fd) return make_error(errno, std::string("cannot read: ") + strerror(errno), path);
    struct stat st;
    if (fstat(fd.get(), &st) != 0) return make_error(errno, strerror(errno), path);
    buf.resize(static_cast<size_t>(st.st_size));
    size_t got = 0;
    while (got < buf.size()) {
      ssize_t r = ::pread(fd.get(), buf.data() + got, buf.size() - got, static_cast<off_t>(got));
      if (r < 0 && errno == EINTR) continue;
      if (r <= 0) break;
      got += static_cast<size_t>(r);
    }
    size_t off = 0;
    while (off + kHeader <= got) {
      uint32_t size;
      std::memcpy(&size, buf.data() + off, sizeof size);
      if (size == 0 || size > kMaxRecord || off + kHeader + size > got) break;  // torn tail
      fn(buf.data() + off + kHeader, size);
      off += kHeader + size;
      ++n;
    }
  }
  // Everything replayed is journaled anew by fn's caller: the old segments can go.
  std::lock_guard lock(mu_);
  for (auto& [id, path] : prev) {
    ::unlink(path.c_str());
    previous_.erase(id);
  }
  stats_.replayed += n;
  return n;
}

Result<void> Journal::open_segment_locked(uint64_t first_seq) {
  Segment s;
  s.id = next_id_++;
  s.path = segment_path(dir_, s.id);
  s.fd.reset(::open(s.path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600));
  if (!s.fd) return make_error(errno, std::string("cannot create: ") + strerror(errno), s.path);
  s.first_seq = s.last_seq = first_seq;
  segments_[first_seq] = std::move(s);
  return {};
}

void Journal::retire_locked(std::map<uint64_t, Segment>::iterator it) {
  ::unlink(it->second.path.c_str());
  segments_.erase(it);
}

void Journal::append(uint64_t seq, const void* data, size_t size) {
  std::lock_guard lock(mu_);
  auto fail = [&](const std::string& what) {
    unjournaled_.insert(seq);
    if (stats_.errors++ == 0)
      logger("capture")->error("intake journal {}: {} (events go on, but one consumed and not "
                               "yet measured when nsimad dies would be lost)",
                               dir_, what);
  };
  if (size == 0 || size > kMaxRecord) return fail("record of " + std::to_string(size) + " bytes");
  if (segments_.empty() || segments_.rbegin()->second.bytes >= kSegmentBytes) {
    if (!segments_.empty()) {
      auto last = std::prev(segments_.end());
      last->second.closed = true;
      last->second.fd.reset();
      if (last->second.unacked == 0) retire_locked(last);
    }
    if (auto r = open_segment_locked(seq); !r) return fail(r.error().to_string());
  }
  Segment& s = segments_.rbegin()->second;
  uint8_t head[kHeader];
  uint32_t sz = static_cast<uint32_t>(size);
  std::memcpy(head, &sz, sizeof sz);
  std::memcpy(head + sizeof sz, &seq, sizeof seq);
  iovec iov[2] = {{head, kHeader}, {const_cast<void*>(data), size}};
  ssize_t w = ::writev(s.fd.get(), iov, 2);
  if (w != static_cast<ssize_t>(kHeader + size)) return fail(std::string("writev: ") + strerror(errno));
  s.bytes += kHeader + size;
  s.last_seq = seq;
  s.unacked++;
  stats_.appended++;
}

void Journal::ack(uint64_t seq) {
  std::lock_guard lock(mu_);
  if (unjournaled_.erase(seq)) return;
  auto it = segments_.upper_bound(seq);
  if (it == segments_.begin()) return;
  --it;
  Segment& s = it->second;
  if (seq > s.last_seq || s.unacked == 0) return;  // not journaled (append failed)
  s.unacked--;
  stats_.acked++;
  if (s.closed && s.unacked == 0) retire_locked(it);
}

Journal::Stats Journal::stats() const {
  std::lock_guard lock(mu_);
  Stats st = stats_;
  st.segments = segments_.size();
  for (auto& [k, s] : segments_) st.unacked += s.unacked;
  return st;
}

}  // namespace nsima::capture
