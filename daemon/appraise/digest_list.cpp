// SPDX-License-Identifier: Apache-2.0
// Manifests, their detached signatures, the per-namespace digest store, and the rootfs and dpkg
// generators (the rpm one is in rpm.cpp). See digest_list.h.
#include "appraise/digest_list.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <numeric>
#include <sstream>

#include "common/atomic_file.h"
#include "common/hex.h"
#include "common/unique_fd.h"
#include "measure/hasher.h"

namespace nsima::appraise {

using measure::Digest;
using measure::HashAlgo;

namespace {

std::string where_line(std::string_view file, size_t line) {
  return std::string(file) + ":" + std::to_string(line);
}

std::optional<HashAlgo> algo_for_hex_length(size_t n) {
  switch (n) {
    case 64: return HashAlgo::kSha256;
    case 96: return HashAlgo::kSha384;
    case 128: return HashAlgo::kSha512;
    default: return std::nullopt;
  }
}

bool is_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

Result<std::string> read_whole(const std::filesystem::path& p, size_t limit) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return make_error(errno ? errno : ENOENT, std::string("cannot open: ") + strerror(errno), p.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  std::string s = ss.str();
  if (s.size() > limit)
    return make_error(EFBIG, "larger than " + std::to_string(limit) + " bytes", p.string());
  return s;
}

std::span<const uint8_t> as_bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

}  // namespace

// ------------------------------------------------------------------ manifest text

Result<Manifest> parse_manifest(std::string_view text, std::string_view filename) {
  Manifest m;
  size_t lineno = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    pos = end + 1;
    ++lineno;
    const bool escaped = !line.empty() && line[0] == '\\';
    if (escaped) line.remove_prefix(1);
    if (!escaped && !line.empty() && line.back() == '\r') line.remove_suffix(1);  // CRLF file
    if (line.empty()) continue;
    auto err = [&](std::string why) {
      return make_error(EINVAL, std::move(why), where_line(filename, lineno));
    };
    if (line.starts_with("SHA") || line.starts_with("MD5") || line.starts_with("BLAKE"))
      if (line.find(" (") != std::string_view::npos)
        return err("BSD-style (--tag) line; write the manifest with sha256sum without --tag");
    size_t hex_len = 0;
    while (hex_len < line.size() && is_hex(line[hex_len])) ++hex_len;
    if (hex_len == 0) return err("line does not start with a hex digest");
    auto algo = algo_for_hex_length(hex_len);
    if (!algo)
      return err(std::to_string(hex_len) +
                 " hex digits is not a sha256 (64), sha384 (96) or sha512 (128) digest");
    if (line.size() < hex_len + 3 || line[hex_len] != ' ' ||
        (line[hex_len + 1] != ' ' && line[hex_len + 1] != '*'))
      return err("expected two spaces or \" *\" and a file name after the digest");
    auto digest = Digest::from_hex(*algo, line.substr(0, hex_len));
    if (!digest) return err(digest.error().message);
    ManifestEntry e{*digest, {}, line[hex_len + 1] == '*'};
    std::string_view name = line.substr(hex_len + 2);
    if (escaped) {
      e.path.reserve(name.size());
      for (size_t i = 0; i < name.size(); ++i) {
        if (name[i] != '\\') {
          e.path.push_back(name[i]);
          continue;
        }
        if (i + 1 == name.size()) return err("file name ends in a lone backslash");
        const char c = name[++i];
        if (c == '\\') e.path.push_back('\\');
        else if (c == 'n') e.path.push_back('\n');
        else if (c == 'r') e.path.push_back('\r');
        else return err(std::string("unknown escape \\") + c + " in file name");
      }
    } else {
      e.path.assign(name);
    }
    m.entries.push_back(std::move(e));
  }
  return m;
}

std::string format_manifest(const Manifest& m) {
  std::string out;
  for (const auto& e : m.entries) {
    const bool esc = e.path.find_first_of("\\\n\r") != std::string::npos;
    if (esc) out.push_back('\\');
    out += e.digest.hex();
    out += e.binary ? " *" : "  ";
    if (esc) {
      for (char c : e.path) {
        if (c == '\\') out += "\\\\";
        else if (c == '\n') out += "\\n";
        else if (c == '\r') out += "\\r";
        else out.push_back(c);
      }
    } else {
      out += e.path;
    }
    out.push_back('\n');
  }
  return out;
}

Result<KeyInfo> verify_manifest_signature(std::span<const uint8_t> data,
                                          std::span<const uint8_t> signature,
                                          const Keyring& keys) {
  auto digest = measure::hash_bytes(HashAlgo::kSha256, data);
  if (!digest) return tl::unexpected(digest.error());
  auto check = keys.verify_any(HashAlgo::kSha256, digest->bytes(), signature);
  if (!check.ok()) return make_error(EKEYREJECTED, "manifest signature: " + check.reason);
  return *check.key;
}

Result<LoadedManifest> load_manifest(const std::filesystem::path& file, const Keyring* keys,
                                     SignaturePolicy policy) {
  constexpr size_t kManifestLimit = size_t{1} << 30;
  auto text = read_whole(file, kManifestLimit);
  if (!text) return tl::unexpected(text.error());
  auto parsed = parse_manifest(*text, file.string());
  if (!parsed) return tl::unexpected(parsed.error());
  LoadedManifest out{std::move(*parsed), false, std::nullopt};
  if (policy == SignaturePolicy::kIgnore) return out;
  const std::filesystem::path sig_path = file.string() + ".sig";
  std::error_code ec;
  if (!std::filesystem::exists(sig_path, ec)) {
    if (policy == SignaturePolicy::kRequired)
      return make_error(ENOENT, "manifest signature required but missing", sig_path.string());
    return out;
  }
  auto sig = read_whole(sig_path, 1 << 16);
  if (!sig) return tl::unexpected(sig.error());
  if (!keys || keys->empty())
    return make_error(ENOKEY, "manifest is signed but the namespace has no keys to check it with",
                      sig_path.string());
  auto signer = verify_manifest_signature(as_bytes(*text), as_bytes(*sig), *keys);
  if (!signer) return make_error(signer.error().code, signer.error().message, sig_path.string());
  out.is_signed = true;
  out.signer = std::move(*signer);
  return out;
}

// ------------------------------------------------------------------ DigestSet

namespace {

// Index of the first entry >= d in a sorted flat table.
size_t lower_bound(const std::vector<uint8_t>& bytes, size_t size, const uint8_t* d) {
  size_t lo = 0, hi = bytes.size() / size;
  while (lo < hi) {
    const size_t mid = lo + (hi - lo) / 2;
    if (std::memcmp(bytes.data() + mid * size, d, size) < 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

}  // namespace

uint8_t DigestSet::insert(const Digest& d, uint8_t flags) {
  Table& t = tables_[static_cast<size_t>(d.algo())];
  const size_t size = d.size();
  const size_t i = lower_bound(t.bytes, size, d.data());
  if (i < t.flags.size() && std::memcmp(t.bytes.data() + i * size, d.data(), size) == 0) {
    const uint8_t old = t.flags[i];
    t.flags[i] |= flags;
    return old;
  }
  t.bytes.insert(t.bytes.begin() + static_cast<std::ptrdiff_t>(i * size), d.data(), d.data() + size);
  t.flags.insert(t.flags.begin() + static_cast<std::ptrdiff_t>(i), flags);
  return 0;
}

void DigestSet::insert_batch(std::span<const std::pair<Digest, uint8_t>> items) {
  for (size_t a = 0; a < tables_.size(); ++a) {
    const auto algo = static_cast<HashAlgo>(a);
    const size_t size = measure::hash_digest_size(algo);
    Table& t = tables_[a];
    // Old entries and new ones of this algorithm, merged through one sort of indices.
    std::vector<const uint8_t*> ptrs;
    std::vector<uint8_t> fl;
    for (size_t i = 0; i < t.flags.size(); ++i) {
      ptrs.push_back(t.bytes.data() + i * size);
      fl.push_back(t.flags[i]);
    }
    const size_t old_count = ptrs.size();
    for (const auto& [d, f] : items)
      if (d.algo() == algo) {
        ptrs.push_back(d.data());
        fl.push_back(f);
      }
    if (ptrs.size() == old_count) continue;
    std::vector<size_t> order(ptrs.size());
    std::iota(order.begin(), order.end(), size_t{0});
    std::stable_sort(order.begin(), order.end(), [&](size_t x, size_t y) {
      return std::memcmp(ptrs[x], ptrs[y], size) < 0;
    });
    Table merged;
    merged.bytes.reserve(ptrs.size() * size);
    for (size_t k : order) {
      const size_t n = merged.flags.size();
      if (n > 0 && std::memcmp(merged.bytes.data() + (n - 1) * size, ptrs[k], size) == 0) {
        merged.flags[n - 1] |= fl[k];
        continue;
      }
      merged.bytes.insert(merged.bytes.end(), ptrs[k], ptrs[k] + size);
      merged.flags.push_back(fl[k]);
    }
    t = std::move(merged);
  }
}

bool DigestSet::erase(const Digest& d) {
  Table& t = tables_[static_cast<size_t>(d.algo())];
  const size_t size = d.size();
  const size_t i = lower_bound(t.bytes, size, d.data());
  if (i >= t.flags.size() || std::memcmp(t.bytes.data() + i * size, d.data(), size) != 0)
    return false;
  auto b = t.bytes.begin() + static_cast<std::ptrdiff_t>(i * size);
  t.bytes.erase(b, b + static_cast<std::ptrdiff_t>(size));
  t.flags.erase(t.flags.begin() + static_cast<std::ptrdiff_t>(i));
  return true;
}

uint8_t DigestSet::flags(const Digest& d) const {
  const Table& t = tables_[static_cast<size_t>(d.algo())];
  const size_t size = d.size();
  if (t.flags.empty()) return 0;
  const size_t i = lower_bound(t.bytes, size, d.data());
  if (i < t.flags.size() && std::memcmp(t.bytes.data() + i * size, d.data(), size) == 0)
    return t.flags[i];
  return 0;
}

size_t DigestSet::size() const {
  size_t n = 0;
  for (const auto& t : tables_) n += t.flags.size();
  return n;
}

// ------------------------------------------------------------------ DigestStore

namespace {

constexpr std::string_view kListedHeader = "# nsima digest store v1: listed (l) / signed (s)";
constexpr std::string_view kRevokedHeader = "# nsima digest store v1: revoked";

// "algo:hex" in the d-ng spelling.
Result<Digest> parse_digest_token(std::string_view tok, const std::string& where) {
  const size_t colon = tok.find(':');
  if (colon == std::string_view::npos) return make_error(EINVAL, "expected ALGO:HEX", where);
  auto algo = measure::hash_algo_from_name(tok.substr(0, colon));
  if (!algo) return make_error(EINVAL, "unknown hash algorithm '" + std::string(tok.substr(0, colon)) + "'", where);
  auto d = Digest::from_hex(*algo, tok.substr(colon + 1));
  if (!d) return make_error(EINVAL, d.error().message, where);
  return *d;
}

// Lines "<flag> algo:hex" (listed) or "algo:hex" (revoked).
Result<void> load_set(const std::filesystem::path& p, bool with_flags, DigestSet& set) {
  std::error_code ec;
  if (!std::filesystem::exists(p, ec)) return {};
  auto text = read_whole(p, size_t{1} << 31);
  if (!text) return tl::unexpected(text.error());
  std::vector<std::pair<Digest, uint8_t>> items;
  std::istringstream in(*text);
  std::string line;
  size_t lineno = 0;
  while (std::getline(in, line)) {
    ++lineno;
    if (line.empty() || line[0] == '#') continue;
    const std::string where = where_line(p.string(), lineno);
    std::string_view tok = line;
    uint8_t flags = DigestStore::kListed;
    if (with_flags) {
      if (line.size() < 3 || line[1] != ' ' || (line[0] != 'l' && line[0] != 's'))
        return make_error(EINVAL, "expected 'l ALGO:HEX' or 's ALGO:HEX'", where);
      if (line[0] == 's') flags |= DigestStore::kSigned;
      tok.remove_prefix(2);
    }
    auto d = parse_digest_token(tok, where);
    if (!d) return tl::unexpected(d.error());
    items.emplace_back(*d, flags);
  }
  set.insert_batch(items);
  return {};
}

Result<void> save_set(const std::filesystem::path& p, bool with_flags, const DigestSet& set,
                      std::string_view header) {
  std::string out(header);
  out.push_back('\n');
  set.for_each([&](const Digest& d, uint8_t flags) {
    if (with_flags) {
      out.push_back(flags & DigestStore::kSigned ? 's' : 'l');
      out.push_back(' ');
    }
    out += d.to_string();
    out.push_back('\n');
  });
  return write_file_atomic(p.string(), out, 0600);
}

}  // namespace

std::filesystem::path namespace_digests_dir(const std::filesystem::path& state_dir, uint64_t ns_id) {
  return state_dir / "ns" / std::to_string(ns_id) / "digests";
}

Result<DigestStore> DigestStore::open(const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return make_error(ec.value(), "cannot create digest store: " + ec.message(), dir.string());
  DigestStore s;
  s.dir_ = dir;
  if (auto r = load_set(dir / "listed", true, s.listed_); !r) return tl::unexpected(r.error());
  if (auto r = load_set(dir / "revoked", false, s.revoked_); !r) return tl::unexpected(r.error());
  return s;
}

DigestStore DigestStore::in_memory() { return DigestStore(); }

Result<void> DigestStore::persist_listed() const {
  if (dir_.empty()) return {};
  return save_set(dir_ / "listed", true, listed_, kListedHeader);
}

Result<void> DigestStore::persist_revoked() const {
  if (dir_.empty()) return {};
  return save_set(dir_ / "revoked", false, revoked_, kRevokedHeader);
}

Result<DigestStore::AddOutcome> DigestStore::add(const Manifest& m, bool from_signed_manifest) {
  AddOutcome out;
  const uint8_t flags = kListed | (from_signed_manifest ? kSigned : 0);
  // Duplicates inside one manifest count once: sort once, then skip equal neighbours.
  std::vector<const Digest*> sorted;
  sorted.reserve(m.entries.size());
  for (const auto& e : m.entries) sorted.push_back(&e.digest);
  auto less = [](const Digest* a, const Digest* b) {
    if (a->algo() != b->algo()) return a->algo() < b->algo();
    return std::memcmp(a->data(), b->data(), a->size()) < 0;
  };
  std::sort(sorted.begin(), sorted.end(), less);
  std::vector<std::pair<Digest, uint8_t>> items;
  items.reserve(sorted.size());
  for (size_t i = 0; i < sorted.size(); ++i) {
    if (i > 0 && *sorted[i] == *sorted[i - 1]) continue;
    const Digest& digest = *sorted[i];
    const uint8_t old = listed_.flags(digest);
    if (old == 0) ++out.added;
    else if ((old | flags) != old) ++out.upgraded;
    else ++out.already;
    items.emplace_back(digest, flags);
  }
  if (out.added == 0 && out.upgraded == 0) return out;
  DigestSet before = listed_;
  listed_.insert_batch(items);
  if (auto r = persist_listed(); !r) {
    listed_ = std::move(before);  // memory never claims what the disk does not hold
    return tl::unexpected(r.error());
  }
  return out;
}

Result<bool> DigestStore::revoke(const Digest& d) {
  if (revoked_.flags(d) != 0) return false;
  revoked_.insert(d, 1);
  if (auto r = persist_revoked(); !r) {
    revoked_.erase(d);
    return tl::unexpected(r.error());
  }
  return true;
}

Result<bool> DigestStore::unrevoke(const Digest& d) {
  if (!revoked_.erase(d)) return false;
  if (auto r = persist_revoked(); !r) {
    revoked_.insert(d, 1);
    return tl::unexpected(r.error());
  }
  return true;
}

DigestLookup DigestStore::lookup(const Digest& d) const {
  DigestLookup r;
  if (revoked_.flags(d) != 0) {
    r.revoked = true;
    r.digest = d;
  }
  const uint8_t f = listed_.flags(d);
  if (f != 0) {
    r.listed = true;
    r.signed_listed = (f & kSigned) != 0;
    if (!r.digest) r.digest = d;
  }
  return r;
}

DigestLookup DigestStore::lookup(std::span<const Digest> digests) const {
  DigestLookup out;
  for (const auto& d : digests) {
    DigestLookup one = lookup(d);
    if (one.revoked && !out.revoked) {
      out.revoked = true;
      out.digest = one.digest;
    }
    if (one.listed) {
      out.listed = true;
      if (one.signed_listed) out.signed_listed = true;
      if (!out.digest) out.digest = one.digest;
    }
  }
  return out;
}

size_t DigestStore::signed_count() const {
  size_t n = 0;
  listed_.for_each([&](const Digest&, uint8_t f) { n += (f & kSigned) ? 1 : 0; });
  return n;
}

std::vector<Digest> DigestStore::revoked() const {
  std::vector<Digest> out;
  revoked_.for_each([&](const Digest& d, uint8_t) { out.push_back(d); });
  return out;
}

// ------------------------------------------------------------------ rootfs

namespace {

void sort_manifest(Manifest& m) {
  std::sort(m.entries.begin(), m.entries.end(),
            [](const ManifestEntry& a, const ManifestEntry& b) { return a.path < b.path; });
}

struct Walker {
  GeneratedManifest& out;
  dev_t root_dev;
  bool one_fs;

  void problem(const std::string& path, std::string what) {
    out.problems.push_back({path, std::move(what)});
  }

  void walk(int dirfd, const std::string& prefix) {
    // fdopendir takes ownership of its own duplicate so that closedir() does not close dirfd.
    int dup = ::fcntl(dirfd, F_DUPFD_CLOEXEC, 0);
    if (dup < 0) {
      problem(prefix.empty() ? "/" : prefix, std::string("dup: ") + strerror(errno));
      return;
    }
    DIR* d = ::fdopendir(dup);
    if (!d) {
      ::close(dup);
      problem(prefix.empty() ? "/" : prefix, std::string("opendir: ") + strerror(errno));
      return;
    }
    std::vector<std::string> names;
    while (struct dirent* de = ::readdir(d)) {
      std::string_view n = de->d_name;
      if (n == "." || n == "..") continue;
      names.emplace_back(n);
    }
    ::closedir(d);
    std::sort(names.begin(), names.end());
    for (const auto& name : names) {
      const std::string path = prefix + "/" + name;
      struct stat st {};
      if (::fstatat(dirfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) {
        problem(path, std::string("stat: ") + strerror(errno));
        continue;
      }
      if (S_ISDIR(st.st_mode)) {
        if (one_fs && st.st_dev != root_dev) continue;  // another mount: not the image
        UniqueFd sub(::openat(dirfd, name.c_str(),
                              O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!sub) {
          problem(path, std::string("open directory: ") + strerror(errno));
          continue;
        }
        walk(sub.get(), path);
        continue;
      }
      if (!S_ISREG(st.st_mode)) continue;  // symlinks, devices, fifos, sockets: not content
      ++out.sources;
      UniqueFd fd(::openat(dirfd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC));
      if (!fd) {
        problem(path, std::string("open: ") + strerror(errno));
        continue;
      }
      struct stat fst {};
      if (::fstat(fd.get(), &fst) != 0 || !S_ISREG(fst.st_mode) || fst.st_ino != st.st_ino) {
        problem(path, "replaced while walking");
        continue;
      }
      auto digest = measure::hash_fd(fd.get(), HashAlgo::kSha256, path);
      if (!digest) {
        problem(path, digest.error().message);
        continue;
      }
      out.manifest.entries.push_back({*digest, path, false});
    }
  }
};

}  // namespace

Result<GeneratedManifest> manifest_from_rootfs(const std::filesystem::path& dir,
                                               const RootfsOptions& options) {
  UniqueFd root(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root) return make_error(errno, std::string("cannot open rootfs: ") + strerror(errno), dir.string());
  struct stat st {};
  if (::fstat(root.get(), &st) != 0) return make_error(errno, "stat", dir.string());
  GeneratedManifest out;
  Walker w{out, st.st_dev, options.one_file_system};
  w.walk(root.get(), "");
  sort_manifest(out.manifest);
  return out;
}

// ------------------------------------------------------------------ dpkg

namespace {

int openat2_in_root(int root_fd, const std::string& path) {
  struct open_how how {};
  how.flags = O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  return static_cast<int>(::syscall(SYS_openat2, root_fd, path.c_str(), &how, sizeof how));
}

}  // namespace

Result<GeneratedManifest> manifest_from_dpkg(const std::filesystem::path& root) {
  UniqueFd root_fd(::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!root_fd) return make_error(errno, std::string("cannot open root: ") + strerror(errno), root.string());
  const auto info_dir = root / "var/lib/dpkg/info";
  std::error_code ec;
  std::vector<std::filesystem::path> lists;
  for (const auto& e : std::filesystem::directory_iterator(info_dir, ec))
    if (e.path().extension() == ".md5sums" && e.is_regular_file()) lists.push_back(e.path());
  if (ec) return make_error(ec.value(), "cannot read the dpkg database: " + ec.message(), info_dir.string());
  std::sort(lists.begin(), lists.end());

  GeneratedManifest out;
  const HashAlgo algos[] = {HashAlgo::kMd5, HashAlgo::kSha256};
  for (const auto& list : lists) {
    ++out.sources;
    auto text = read_whole(list, size_t{64} << 20);
    if (!text) {
      out.problems.push_back({list.string(), text.error().message});
      continue;
    }
    std::istringstream in(*text);
    std::string line;
    size_t lineno = 0;
    while (std::getline(in, line)) {
      ++lineno;
      if (line.empty()) continue;
      // "<32 hex md5>  <path relative to />"
      if (line.size() < 35 || line[32] != ' ' || line[33] != ' ' ||
          !std::all_of(line.begin(), line.begin() + 32, is_hex)) {
        out.problems.push_back({where_line(list.string(), lineno), "malformed md5sums line"});
        continue;
      }
      std::string rel = line.substr(34);
      const std::string path = rel.starts_with("/") ? rel : "/" + rel;
      UniqueFd fd(openat2_in_root(root_fd.get(), path));
      if (!fd) {
        out.problems.push_back({path, errno == ENOENT ? std::string("missing")
                                                      : std::string("open: ") + strerror(errno)});
        continue;
      }
      struct stat st {};
      if (::fstat(fd.get(), &st) != 0 || !S_ISREG(st.st_mode)) {
        out.problems.push_back({path, "not a regular file"});
        continue;
      }
      auto digests = measure::hash_fd(fd.get(), algos, path);
      if (!digests) {
        out.problems.push_back({path, digests.error().message});
        continue;
      }
      std::string want = line.substr(0, 32);
      std::transform(want.begin(), want.end(), want.begin(), ::tolower);
      const std::string have = digests->digests[0].hex();
      if (have != want) {
        out.problems.push_back({path, "md5 mismatch: " + list.filename().string() + " says " +
                                          want + ", the file has " + have});
        continue;
      }
      out.manifest.entries.push_back({digests->digests[1], path, false});
    }
  }
  sort_manifest(out.manifest);
  return out;
}

}  // namespace nsima::appraise
