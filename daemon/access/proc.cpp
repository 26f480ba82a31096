// SPDX-License-Identifier: Apache-2.0
// /proc/PID/stat start time and /proc/PID/ns/mnt inode.
#include "access/proc.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>

#include "common/unique_fd.h"

namespace nsima::access {

std::optional<uint64_t> parse_stat_start_ticks(std::string_view stat) {
  size_t close = stat.rfind(')');
  if (close == std::string_view::npos) return std::nullopt;
  // After ") " comes field 3 (state); starttime is field 22, the 20th field from there.
  std::string_view rest = stat.substr(close + 1);
  int field = 2;
  size_t i = 0;
  while (i < rest.size()) {
    while (i < rest.size() && rest[i] == ' ') ++i;
    if (i >= rest.size()) break;
    size_t j = rest.find(' ', i);
    if (j == std::string_view::npos) j = rest.size();
    if (++field == 22) {
      std::string_view tok = rest.substr(i, j - i);
      while (!tok.empty() && (tok.back() == '\n')) tok.remove_suffix(1);
      uint64_t v = 0;
      auto [p, ec] = std::from_chars(tok.data(), tok.data() + tok.size(), v);
      if (ec != std::errc() || p != tok.data() + tok.size()) return std::nullopt;
      return v;
    }
    i = j;
  }
  return std::nullopt;
}

uint64_t boottime_ns_to_ticks(uint64_t boottime_ns) {
  static const uint64_t ns_per_tick = [] {
    long hz = ::sysconf(_SC_CLK_TCK);
    return static_cast<uint64_t>(1000000000 / (hz > 0 ? hz : 100));
  }();
  return boottime_ns / ns_per_tick;
}

Result<uint64_t> read_start_ticks(const std::string& dir) {
  const std::string path = dir + "/stat";
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return make_error(errno, std::strerror(errno), path);
  char buf[1024];  // comm is at most 64 bytes; the line is well below this
  ssize_t n;
  do {
    n = ::read(fd.get(), buf, sizeof buf - 1);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return make_error(errno, std::strerror(errno), path);
  auto v = parse_stat_start_ticks(std::string_view(buf, static_cast<size_t>(n)));
  if (!v) return make_error(EINVAL, "no start time field", path);
  return *v;
}

Result<uint64_t> read_mnt_ns_inode(const std::string& dir) {
  const std::string path = dir + "/ns/mnt";
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return make_error(errno, std::strerror(errno), path);
  return static_cast<uint64_t>(st.st_ino);
}

}  // namespace nsima::access
