// SPDX-License-Identifier: Apache-2.0
// MeasurementList: durable append, replay on open, duplicate index, streaming readers. The
// guarantees are spelled out in measurement_list.h; this file keeps them.
#include "measure/measurement_list.h"

#include <fcntl.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <mutex>

#include "common/log.h"
#include "common/unique_fd.h"
#include "measure/hasher.h"

namespace nsima::measure {

namespace {

constexpr uint64_t kCheckpointEvery = 1024;  // one 8-byte offset per this many entries
constexpr size_t kStreamChunk = size_t{1} << 20;

// Open-addressing table of (template digest prefix, PCR) -> (file offset, entry index), 24 bytes
// a slot. 8 bytes of a cryptographic digest make accidental collisions rare (a false candidate
// costs one read of the record), and every prefix hit is confirmed against the full digest of
// the record on disk, so an attacker who finds a 64-bit prefix collision still cannot suppress
// a measurement.
class DupIndex {
 public:
  struct Hit {
    uint64_t offset;
    uint32_t index;
  };

  // `verify(offset)` confirms a candidate: Result<bool>.
  template <class Verify>
  Result<std::optional<Hit>> find(const Digest& d, uint32_t pcr, Verify&& verify) const {
    if (slots_.empty()) return std::nullopt;
    uint64_t k0 = key(d);
    const size_t mask = slots_.size() - 1;
    for (size_t i = position(k0, pcr) & mask;; i = (i + 1) & mask) {
      const Slot& s = slots_[i];
      if (s.pcr1 == 0) return std::nullopt;
      if (s.k0 == k0 && s.pcr1 == pcr + 1) {
        auto ok = verify(s.offset);
        if (!ok) return tl::unexpected(ok.error());
        if (*ok) return Hit{s.offset, s.index};
      }
    }
  }

  void insert(const Digest& d, uint32_t pcr, uint64_t offset, uint64_t index) {
    if ((used_ + 1) * 4 > slots_.size() * 3) grow();
    Slot s;
    s.k0 = key(d);
    s.offset = offset;
    s.pcr1 = pcr + 1;
    s.index = static_cast<uint32_t>(std::min<uint64_t>(index, UINT32_MAX));
    place(s);
    ++used_;
  }

 private:
  struct Slot {
    uint64_t k0 = 0;
    uint64_t offset = 0;
    uint32_t pcr1 = 0;  // PCR + 1; 0 marks an empty slot
    uint32_t index = 0;
  };
  static_assert(sizeof(Slot) == 24);

  static uint64_t key(const Digest& d) {
    uint64_t k0;
    std::memcpy(&k0, d.data(), 8);  // every supported ima_hash is >= 16 bytes (checked at open)
    return k0;
  }
  static size_t position(uint64_t k0, uint32_t pcr) {
    return static_cast<size_t>(k0 ^ (uint64_t{pcr} * 0x9E3779B97F4A7C15ull));
  }
  void place(const Slot& s) {
    const size_t mask = slots_.size() - 1;
    size_t i = position(s.k0, s.pcr1 - 1) & mask;
    while (slots_[i].pcr1 != 0) i = (i + 1) & mask;
    slots_[i] = s;
  }
  void grow() {
    std::vector<Slot> old;
    old.swap(slots_);
    slots_.assign(old.empty() ? 1024 : old.size() * 2, Slot{});
    for (const Slot& s : old)
      if (s.pcr1 != 0) place(s);
  }

  std::vector<Slot> slots_;
  size_t used_ = 0;
};

Error with_where(Error e, const std::string& where) {
  e.where = e.where.empty() ? where : where + ": " + e.where;
  return e;
}

Result<Digest> ns_digest(const Record& r, HashAlgo algo) {
  if (algo == HashAlgo::kSha1) return Digest::from_bytes(HashAlgo::kSha1, r.digest);
  return template_digest(r.template_name, r.data, algo);
}

Result<bool> zero_tail(int fd, uint64_t from, uint64_t to) {
  std::vector<uint8_t> buf(64 * 1024);
  while (from < to) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), to - from));
    ssize_t n = ::pread(fd, buf.data(), want, static_cast<off_t>(from));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return make_error(errno, std::string("pread: ") + std::strerror(errno));
    if (n == 0) break;
    if (!std::all_of(buf.begin(), buf.begin() + n, [](uint8_t b) { return b == 0; })) return false;
    from += static_cast<uint64_t>(n);
  }
  return true;
}

}  // namespace

struct MeasurementList::State {
  std::filesystem::path path;
  std::string where;  // path as a string, for errors
  ListConfig config;
  UniqueFd fd;

  mutable std::mutex mu;
  DupIndex dups;                      // guarded by mu
  std::vector<uint64_t> checkpoints;  // guarded by mu: offset of entry i * kCheckpointEvery
  std::optional<bool> legacy;         // guarded by mu: the list holds `ima` records
  uint32_t unsynced = 0;              // guarded by mu
  std::chrono::steady_clock::time_point oldest_unsynced;  // guarded by mu
  std::optional<Error> sync_error;                        // guarded by mu: sticky fdatasync failure
  std::optional<Error> poisoned;  // guarded by mu: the file could not be restored

  std::atomic<uint64_t> count{0};
  std::atomic<uint64_t> violations{0};
  std::atomic<uint64_t> committed{0};

  // Index bookkeeping for a record at `offset` that became entry `index`.
  void note_record(const Record& r, const std::optional<Digest>& nsd, uint64_t offset,
                   uint64_t index) {
    if (index % kCheckpointEvery == 0) checkpoints.push_back(offset);
    if (nsd) dups.insert(*nsd, r.pcr, offset, index);
    if (!legacy) legacy = r.template_name == "ima";
    count.store(index + 1, std::memory_order_release);
    if (r.violation()) violations.fetch_add(1, std::memory_order_relaxed);
  }

  Result<void> sync_locked() {
    if (!fd) return make_error(EBADF, "list is closed", where);
    if (unsynced > 0) {
      if (::fdatasync(fd.get()) != 0) {
        int err = errno;
        Error e{err, std::string("fdatasync: ") + std::strerror(err), where};
        if (!sync_error) logger("measure")->error("{}", e.to_string());
        sync_error = e;
      } else {
        unsynced = 0;
      }
    }
    if (sync_error) return tl::unexpected(*sync_error);
    return {};
  }

  bool sync_due(std::chrono::steady_clock::time_point now) const {
    if (unsynced == 0) return false;
    if (config.sync_every != 0 && unsynced >= config.sync_every) return true;
    return config.sync_interval.count() > 0 && now - oldest_unsynced >= config.sync_interval;
  }

  // Reads and checks the record at `offset` (dup confirmation).
  Result<Record> read_record(uint64_t offset) const {
    RecordReader r(fd.get(), offset, committed.load(std::memory_order_acquire), where, 4096);
    Record rec;
    auto ok = r.next(rec);
    if (!ok) return tl::unexpected(ok.error());
    if (!*ok)
      return make_error(kErrCorrupt, "no record at offset " + std::to_string(offset), where);
    return rec;
  }

  // Streams entries [from_index, upto_index) to fn; fn returns false to stop.
  Result<void> scan(uint64_t from_index, uint64_t upto_index,
                    const std::function<Result<bool>(uint64_t, const Record&)>& fn) const {
    uint64_t start_index = 0, start_offset = 0, end;
    {
      std::lock_guard lock(mu);
      if (!fd) return make_error(EBADF, "list is closed", where);
      end = committed.load(std::memory_order_acquire);
      uint64_t cp = std::min<uint64_t>(from_index / kCheckpointEvery, checkpoints.size());
      if (cp > 0) {
        start_index = (cp - 1) * kCheckpointEvery;
        start_offset = checkpoints[cp - 1];
      }
    }
    RecordReader reader(fd.get(), start_offset, end, where);
    Record rec;
    for (uint64_t index = start_index; index < upto_index; ++index) {
      auto more = reader.next(rec);
      if (!more) return tl::unexpected(more.error());
      if (!*more) break;
      if (index < from_index) continue;
      auto go = fn(index, rec);
      if (!go) return tl::unexpected(go.error());
      if (!*go) break;
    }
    return {};
  }
};

MeasurementList::MeasurementList(std::unique_ptr<State> state) : s_(std::move(state)) {}
MeasurementList::MeasurementList(MeasurementList&&) noexcept = default;
MeasurementList& MeasurementList::operator=(MeasurementList&& o) noexcept {
  if (this != &o) {
    if (s_ && s_->fd) (void)close();
    s_ = std::move(o.s_);
  }
  return *this;
}

MeasurementList::~MeasurementList() {
  if (!s_ || !s_->fd) return;
  if (auto r = close(); !r) logger("measure")->error("closing list: {}", r.error().to_string());
}

Result<MeasurementList> MeasurementList::open(const std::filesystem::path& dir, ListConfig config) {
  auto log = logger("measure");
  const std::string dir_s = dir.string();
  if (!evp_md(config.hash_algo) || hash_digest_size(config.hash_algo) < 16)
    return make_error(
        EINVAL, "unsupported list hash algorithm " + std::string(hash_algo_name(config.hash_algo)),
        dir_s);
  for (HashAlgo b : config.banks)
    if (!evp_md(b))
      return make_error(EINVAL, "unsupported PCR bank " + std::string(hash_algo_name(b)), dir_s);
  if (config.default_template == TemplateKind::kIma && config.hash_algo != HashAlgo::kSha1)
    return make_error(EINVAL, "the 'ima' template requires the sha1 hash algorithm (as the kernel)",
                      dir_s);
  if (config.default_pcr > kMaxPcrIndex)
    return make_error(EINVAL, "default PCR " + std::to_string(config.default_pcr) + " out of range",
                      dir_s);
  if (config.file_name.empty() || config.file_name.find('/') != std::string::npos)
    return make_error(EINVAL, "bad list file name '" + config.file_name + "'", dir_s);

  UniqueFd dfd(::open(dir_s.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dfd) return make_error(errno, std::string("open directory: ") + std::strerror(errno), dir_s);

  auto state = std::make_unique<State>();
  state->path = dir / config.file_name;
  state->where = state->path.string();
  const std::string& where = state->where;

  // O_NOFOLLOW: a symlink planted in place of the list must not redirect our writes.
  constexpr int kFlags = O_RDWR | O_APPEND | O_CLOEXEC | O_NOFOLLOW;
  bool created = true;
  state->fd.reset(::openat(dfd.get(), config.file_name.c_str(), kFlags | O_CREAT | O_EXCL, 0640));
  if (!state->fd && errno == EEXIST) {
    created = false;
    state->fd.reset(::openat(dfd.get(), config.file_name.c_str(), kFlags));
  }
  if (!state->fd) return make_error(errno, std::string("open: ") + std::strerror(errno), where);
  if (::flock(state->fd.get(), LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    return make_error(err == EWOULDBLOCK ? EBUSY : err,
                      err == EWOULDBLOCK ? "list is already open by another writer"
                                         : std::string("flock: ") + std::strerror(err),
                      where);
  }
  if (created && ::fsync(dfd.get()) != 0)  // make the new file's directory entry durable
    return make_error(errno, std::string("fsync directory: ") + std::strerror(errno), dir_s);

  struct stat st {};
  if (::fstat(state->fd.get(), &st) != 0)
    return make_error(errno, std::string("fstat: ") + std::strerror(errno), where);
  if (!S_ISREG(st.st_mode)) return make_error(EINVAL, "not a regular file", where);
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  state->config = std::move(config);
  const HashAlgo ns_algo = state->config.hash_algo;

  // Replay: validate every record, rebuild the duplicate index and counters.
  RecordReader reader(state->fd.get(), 0, size, where);
  Record rec;
  uint64_t index = 0;
  for (;; ++index) {
    auto more = reader.next(rec);
    if (!more) {
      const Error& e = more.error();
      const uint64_t at = reader.offset();
      bool torn = e.code == kErrTruncated;
      if (!torn && e.code == kErrCorrupt) {
        auto zeros = zero_tail(state->fd.get(), at, size);
        if (!zeros) return tl::unexpected(with_where(zeros.error(), where));
        torn = *zeros;  // blocks allocated but never written before a power loss
      }
      if (!torn) return tl::unexpected(e);
      log->warn(
          "{}: torn record at offset {} ({} bytes after the last complete entry, {}); "
          "truncating to {} entries",
          where, at, size - at, e.message, index);
      if (::ftruncate(state->fd.get(), static_cast<off_t>(at)) != 0 ||
          ::fdatasync(state->fd.get()) != 0)
        return make_error(errno, std::string("truncating torn record: ") + std::strerror(errno),
                          where);
      break;
    }
    if (!*more) break;
    const uint64_t at = reader.record_offset();
    const bool legacy = rec.template_name == "ima";
    if (state->legacy && *state->legacy != legacy)
      return make_error(kErrCorrupt, "list mixes the 'ima' template with others",
                        where + ": offset " + std::to_string(at));
    std::optional<Digest> nsd;
    if (!rec.violation()) {
      auto sha1 = template_digest(rec.template_name, rec.data, HashAlgo::kSha1);
      if (!sha1) return tl::unexpected(with_where(sha1.error(), where));
      if (!std::equal(rec.digest.begin(), rec.digest.end(), sha1->bytes().begin()))
        return make_error(kErrCorrupt, "template digest does not match the template data",
                          where + ": offset " + std::to_string(at));
      auto d = ns_digest(rec, ns_algo);
      if (!d) return tl::unexpected(with_where(d.error(), where));
      nsd = *d;
    }
    state->note_record(rec, nsd, at, index);
    state->committed.store(reader.offset(), std::memory_order_release);
  }
  state->committed.store(reader.offset(), std::memory_order_release);
  log->info("{}: {} entries ({} violations), {} bytes", where, state->count.load(),
            state->violations.load(), state->committed.load());
  return MeasurementList(std::move(state));
}

Result<AppendOutcome> MeasurementList::append(const Entry& entry) {
  State& s = *s_;
  const ListConfig& c = s.config;
  const TemplateKind kind =
      entry.violation ? c.default_template : entry.tmpl.value_or(c.default_template);
  const uint32_t pcr = entry.violation ? c.default_pcr : entry.pcr.value_or(c.default_pcr);

  // Encoding and hashing need no lock: concurrent appenders do them in parallel.
  auto rec = make_record(entry, kind, pcr, c.hash_algo);
  if (!rec) return tl::unexpected(with_where(rec.error(), s.where));
  std::optional<Digest> nsd;
  if (!entry.violation) {
    auto d = ns_digest(*rec, c.hash_algo);
    if (!d) return tl::unexpected(with_where(d.error(), s.where));
    nsd = *d;
  }
  std::string bytes;
  bytes.reserve(binary_size(*rec));
  append_binary(*rec, bytes);

  AppendOutcome out;
  out.pcr = pcr;
  out.violation = entry.violation;
  {
    std::lock_guard lock(s.mu);
    if (!s.fd) return make_error(EBADF, "list is closed", s.where);
    if (s.poisoned) return tl::unexpected(*s.poisoned);
    const bool legacy = kind == TemplateKind::kIma;
    if (s.legacy && *s.legacy != legacy)
      return make_error(EINVAL,
                        "cannot mix the 'ima' template with others in one list (evmctl "
                        "rejects such lists)",
                        s.where);
    if (nsd) {
      auto hit = s.dups.find(*nsd, pcr, [&](uint64_t offset) -> Result<bool> {
        auto old = s.read_record(offset);
        if (!old) return tl::unexpected(old.error());
        auto od = ns_digest(*old, c.hash_algo);
        if (!od) return tl::unexpected(od.error());
        return old->pcr == pcr && *od == *nsd;
      });
      if (!hit) return tl::unexpected(hit.error());
      if (*hit) {
        out.added = false;
        out.index = (*hit)->index;
        return out;
      }
    }

    // One write(2) of the whole record; O_APPEND puts it at the end.
    const uint64_t offset = s.committed.load(std::memory_order_relaxed);
    ssize_t w;
    do {
      w = ::write(s.fd.get(), bytes.data(), bytes.size());
    } while (w < 0 && errno == EINTR);
    if (w != static_cast<ssize_t>(bytes.size())) {
      int err = w < 0 ? errno : ENOSPC;
      Error e{err,
              w < 0 ? std::string("write: ") + std::strerror(err)
                    : "short write (" + std::to_string(w) + " of " + std::to_string(bytes.size()) +
                          " bytes)",
              s.where};
      if (w > 0 && ::ftruncate(s.fd.get(), static_cast<off_t>(offset)) != 0) {
        // The file now ends in half a record we cannot remove: refuse further appends; a
        // restart's open() will truncate it as a torn record.
        s.poisoned =
            Error{errno, "cannot undo a short write: " + std::string(strerror(errno)), s.where};
        logger("measure")->error("{}", s.poisoned->to_string());
      }
      return tl::unexpected(e);
    }
    out.added = true;
    out.index = s.count.load(std::memory_order_relaxed);
    s.note_record(*rec, nsd, offset, out.index);
    s.committed.store(offset + bytes.size(), std::memory_order_release);

    const auto now = std::chrono::steady_clock::now();
    if (s.unsynced++ == 0) s.oldest_unsynced = now;
    if (s.sync_due(now)) (void)s.sync_locked();  // failures are logged and sticky
  }

  out.extend.reserve(c.banks.size());
  for (HashAlgo bank : c.banks) {
    if (entry.violation) {
      out.extend.push_back(Digest::filled(bank, 0xff));
    } else if (bank == c.hash_algo) {
      out.extend.push_back(*nsd);
    } else {
      auto d = template_digest(rec->template_name, rec->data, bank);
      if (!d) return tl::unexpected(with_where(d.error(), s.where));
      out.extend.push_back(*d);
    }
  }
  return out;
}

Result<AppendOutcome> MeasurementList::append_violation(std::string name) {
  Entry e;
  e.violation = true;
  e.name = std::move(name);
  return append(e);
}

Result<AppendOutcome> MeasurementList::append_boot_aggregate(std::span<const PcrBank> banks) {
  if (count() != 0) return make_error(EEXIST, "boot_aggregate must be the first entry", s_->where);
  auto e = boot_aggregate_entry(banks, s_->config.hash_algo, s_->config.default_template);
  if (!e) return tl::unexpected(with_where(e.error(), s_->where));
  return append(*e);
}

uint64_t MeasurementList::count() const { return s_->count.load(std::memory_order_acquire); }
uint64_t MeasurementList::violations() const {
  return s_->violations.load(std::memory_order_acquire);
}
uint64_t MeasurementList::size_bytes() const {
  return s_->committed.load(std::memory_order_acquire);
}
const std::filesystem::path& MeasurementList::path() const { return s_->path; }
const ListConfig& MeasurementList::config() const { return s_->config; }

Result<void> MeasurementList::sync() {
  std::lock_guard lock(s_->mu);
  return s_->sync_locked();
}

Result<void> MeasurementList::sync_if_due() {
  std::lock_guard lock(s_->mu);
  if (!s_->fd) return make_error(EBADF, "list is closed", s_->where);
  if (!s_->sync_due(std::chrono::steady_clock::now())) return {};
  return s_->sync_locked();
}

Result<void> MeasurementList::close() {
  std::lock_guard lock(s_->mu);
  if (!s_->fd) return make_error(EBADF, "list is closed", s_->where);
  auto r = s_->sync_locked();
  s_->fd.reset();  // also releases the flock
  return r;
}

Result<Digest> MeasurementList::replay(uint32_t pcr, HashAlgo bank, uint64_t upto_index) const {
  Digest value(bank);
  auto r = s_->scan(0, upto_index, [&](uint64_t, const Record& rec) -> Result<bool> {
    if (rec.pcr != pcr) return true;
    auto v = extend_value(rec.template_name, rec.data, rec.violation(), bank);
    if (!v) return tl::unexpected(v.error());
    auto next = pcr_extend(value, *v);
    if (!next) return tl::unexpected(next.error());
    value = *next;
    return true;
  });
  if (!r) return tl::unexpected(r.error());
  return value;
}

Result<std::optional<uint64_t>> MeasurementList::extended_prefix(uint32_t pcr, HashAlgo bank,
                                                                 const Digest& pcr_value) const {
  if (pcr_value.algo() != bank)
    return make_error(EINVAL, "PCR value is not a " + std::string(hash_algo_name(bank)) + " value",
                      s_->where);
  Digest value(bank);
  std::optional<uint64_t> best;
  if (value == pcr_value) best = 0;
  auto r = s_->scan(0, UINT64_MAX, [&](uint64_t index, const Record& rec) -> Result<bool> {
    if (rec.pcr == pcr) {
      auto v = extend_value(rec.template_name, rec.data, rec.violation(), bank);
      if (!v) return tl::unexpected(v.error());
      auto next = pcr_extend(value, *v);
      if (!next) return tl::unexpected(next.error());
      value = *next;
    }
    if (value == pcr_value) best = index + 1;
    return true;
  });
  if (!r) return tl::unexpected(r.error());
  return best;
}

Result<void> MeasurementList::for_each(uint64_t from_index, const RecordFn& fn) const {
  return s_->scan(from_index, UINT64_MAX, [&](uint64_t index, const Record& rec) -> Result<bool> {
    auto r = fn(index, rec);
    if (!r) return tl::unexpected(r.error());
    return true;
  });
}

Result<uint64_t> MeasurementList::stream_records(std::ostream& os, const RenderFn& render) const {
  uint64_t written = 0;
  std::string out;
  auto flush = [&] {
    os.write(out.data(), static_cast<std::streamsize>(out.size()));
    written += out.size();
    out.clear();
  };
  auto r = s_->scan(0, UINT64_MAX, [&](uint64_t index, const Record& rec) -> Result<bool> {
    if (auto ok = render(index, rec, out); !ok) return tl::unexpected(ok.error());
    if (out.size() >= kStreamChunk) flush();
    return true;
  });
  if (!r) return tl::unexpected(r.error());
  flush();
  if (!os) return make_error(EIO, "output stream failed", s_->where);
  return written;
}

Result<uint64_t> MeasurementList::render_binary(std::ostream& os, HashAlgo bank) const {
  uint64_t written = 0;
  if (bank == HashAlgo::kSha1) {  // the file is this rendering: copy it
    std::vector<uint8_t> buf(kStreamChunk);
    for (;;) {
      auto n = read_at(written, buf);
      if (!n) return tl::unexpected(n.error());
      if (*n == 0) break;
      os.write(reinterpret_cast<const char*>(buf.data()), static_cast<std::streamsize>(*n));
      written += *n;
    }
  } else {
    return stream_records(os, [&](uint64_t, const Record& rec, std::string& out) {
      return append_binary(rec, bank, out);
    });
  }
  if (!os) return make_error(EIO, "output stream failed", s_->where);
  return written;
}

Result<uint64_t> MeasurementList::render_ascii(std::ostream& os, HashAlgo bank) const {
  return stream_records(os, [&](uint64_t index, const Record& rec, std::string& out) -> Result<void> {
    if (auto ok = append_ascii(rec, bank, out); !ok)
      return tl::unexpected(with_where(ok.error(), "entry " + std::to_string(index)));
    return {};
  });
}

Result<size_t> MeasurementList::read_at(uint64_t offset, std::span<uint8_t> out) const {
  if (!s_->fd) return make_error(EBADF, "list is closed", s_->where);
  const uint64_t end = s_->committed.load(std::memory_order_acquire);
  if (offset >= end || out.empty()) return size_t{0};
  size_t want = static_cast<size_t>(std::min<uint64_t>(out.size(), end - offset));
  for (;;) {
    ssize_t n = ::pread(s_->fd.get(), out.data(), want, static_cast<off_t>(offset));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return make_error(errno, std::string("pread: ") + std::strerror(errno), s_->where);
    return static_cast<size_t>(n);
  }
}

}  // namespace nsima::measure
