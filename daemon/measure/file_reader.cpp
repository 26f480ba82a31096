// SPDX-License-Identifier: Apache-2.0
// openat2-based resolution inside a root, identity check, then reopen for reading.
#include "measure/file_reader.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <linux/openat2.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "common/event.h"

namespace nsima::measure {

namespace {

FileError file_error(FileErrorKind kind, int code, std::string message, std::string where) {
  return FileError{kind, Error{code, std::move(message), std::move(where)}};
}

FileErrorKind kind_for_errno(int err) {
  switch (err) {
    case ENOENT:
    case ENOTDIR:
    case ESRCH:
    case ESTALE:
      return FileErrorKind::kVanished;
    case EACCES:
    case EPERM:
    case ELOOP:  // also what RESOLVE_NO_MAGICLINKS returns for a /proc magic link
    case EXDEV:
      return FileErrorKind::kDenied;
    case ENAMETOOLONG:
    case EINVAL:
      return FileErrorKind::kInvalidPath;
    default:
      return FileErrorKind::kIoError;
  }
}

int openat2_retry(int dirfd, const char* path, const open_how& how) {
  // EAGAIN: RESOLVE_IN_ROOT saw a concurrent rename and could not prove ".." stayed inside; the
  // kernel documents a retry as the answer. Bounded so an attacker cannot spin us forever.
  for (int attempt = 0;; ++attempt) {
    long fd = ::syscall(SYS_openat2, dirfd, path, &how, sizeof how);
    if (fd >= 0) return static_cast<int>(fd);
    if (errno == EINTR || (errno == EAGAIN && attempt < 8)) continue;
    return -1;
  }
}

std::optional<uint32_t> inode_generation(int fd) {
  // FS_IOC_GETVERSION is declared with a long but filesystems store an int; zero-init and keep 32
  // bits. ENOTTY/EOPNOTSUPP: the filesystem has no generation (tmpfs, overlayfs...).
  long v = 0;
  if (::ioctl(fd, FS_IOC_GETVERSION, &v) != 0) return std::nullopt;
  return static_cast<uint32_t>(v);
}

std::string describe_identity(dev_t dev, uint64_t ino) {
  return std::to_string(major(dev)) + ":" + std::to_string(minor(dev)) + " ino " +
         std::to_string(ino);
}

// `pathfd` (O_PATH) is what a lookup found: check it is the expected regular inode, then reopen
// exactly it for reading.
FileResult<OpenedFile> verify_and_reopen(UniqueFd pathfd, std::string p,
                                         const FileIdentity& expected) {
  struct stat st {};
  if (::fstat(pathfd.get(), &st) != 0) {
    int err = errno;
    return tl::unexpected(
        file_error(kind_for_errno(err), err, std::string("fstat: ") + std::strerror(err), p));
  }
  if (st.st_dev != expected.dev || static_cast<uint64_t>(st.st_ino) != expected.ino)
    return tl::unexpected(file_error(FileErrorKind::kMismatch, 0,
                                     "path now names " + describe_identity(st.st_dev, st.st_ino) +
                                         ", event was " +
                                         describe_identity(expected.dev, expected.ino),
                                     p));
  if (!S_ISREG(st.st_mode))
    return tl::unexpected(
        file_error(FileErrorKind::kNotRegular, 0,
                   "not a regular file (mode " + std::to_string(st.st_mode & S_IFMT) + ")", p));

  // Reopen exactly this inode for reading. /proc/self/fd is a magic link, but it is ours, resolved
  // in the daemon's own root, so the RESOLVE_* restrictions above do not apply to it.
  std::string self = "/proc/self/fd/" + std::to_string(pathfd.get());
  // O_NOATIME keeps measurement from touching atime; only the owner or CAP_FOWNER may use it.
  UniqueFd fd(::open(self.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NOATIME));
  if (!fd && errno == EPERM) fd.reset(::open(self.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (!fd) {
    int err = errno;
    return tl::unexpected(
        file_error(kind_for_errno(err), err, std::string("reopen: ") + std::strerror(err), p));
  }

  OpenedFile out;
  out.generation = inode_generation(fd.get());
  if (expected.generation && out.generation && *expected.generation != *out.generation)
    return tl::unexpected(file_error(FileErrorKind::kMismatch, 0,
                                     "inode generation is " + std::to_string(*out.generation) +
                                         ", event was " + std::to_string(*expected.generation) +
                                         " (inode number reused)",
                                     p));
  out.fd = std::move(fd);
  out.st = st;
  out.path = std::move(p);
  return out;
}

}  // namespace

std::string_view file_error_kind_name(FileErrorKind kind) {
  switch (kind) {
    case FileErrorKind::kVanished:
      return "vanished";
    case FileErrorKind::kMismatch:
      return "mismatch";
    case FileErrorKind::kNotRegular:
      return "not-regular";
    case FileErrorKind::kDenied:
      return "denied";
    case FileErrorKind::kInvalidPath:
      return "invalid-path";
    case FileErrorKind::kIoError:
      return "io-error";
  }
  return "unknown";
}

std::string FileError::to_string() const {
  return std::string(file_error_kind_name(kind)) + ": " + error.to_string();
}

FileIdentity FileIdentity::from_event(const Event& ev) {
  return FileIdentity{ev.dev(), ev.ino, ev.generation};
}

FileResult<OpenedFile> open_in_root(int root_fd, std::string_view path,
                                    const FileIdentity& expected) {
  std::string p(path);
  if (p.empty() || p.find('\0') != std::string::npos)
    return tl::unexpected(
        file_error(FileErrorKind::kInvalidPath, EINVAL, "empty path or path with NUL byte", p));

  open_how how{};
  how.flags = O_PATH | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  UniqueFd pathfd(openat2_retry(root_fd, p.c_str(), how));
  if (!pathfd) {
    int err = errno;
    if (err == ENOSYS)
      return tl::unexpected(file_error(FileErrorKind::kIoError, err,
                                       "openat2 is not supported by this kernel (needs 5.6)", p));
    return tl::unexpected(
        file_error(kind_for_errno(err), err, std::string("openat2: ") + std::strerror(err), p));
  }

  return verify_and_reopen(std::move(pathfd), std::move(p), expected);
}

FileResult<UniqueFd> open_proc_root(pid_t pid) {
  std::string root = "/proc/" + std::to_string(pid) + "/root";
  UniqueFd fd(::open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!fd) {
    int err = errno;
    return tl::unexpected(
        file_error(kind_for_errno(err), err, std::string("open: ") + std::strerror(err), root));
  }
  return fd;
}

FileResult<OpenedFile> open_via_proc_root(pid_t pid, std::string_view path,
                                          const FileIdentity& expected) {
  auto root = open_proc_root(pid);
  if (!root) return tl::unexpected(root.error());
  auto f = open_in_root(root->get(), path, expected);
  if (!f) f.error().error.where = "/proc/" + std::to_string(pid) + "/root:" + std::string(path);
  return f;
}

namespace {

// mountinfo escapes space, tab, newline and backslash as \ooo.
std::string unescape_mountinfo(std::string_view s) {
  auto octal = [](char c) { return c >= '0' && c <= '7'; };
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '\\' && i + 3 < s.size() && octal(s[i + 1]) &&
        octal(s[i + 2]) && octal(s[i + 3])) {
      out.push_back(static_cast<char>((s[i + 1] - '0') * 64 + (s[i + 2] - '0') * 8 +
                                      (s[i + 3] - '0')));
      i += 3;
    } else {
      out.push_back(s[i]);
    }
  }
  return out;
}

// Mount points of the filesystem `dev` in nsimad's mount namespace, whole-filesystem mounts
// (mount root "/") first.
std::vector<std::string> mount_points_of(dev_t dev) {
  std::vector<std::string> whole, part;
  std::ifstream in("/proc/self/mountinfo");
  std::string line;
  const std::string want = std::to_string(major(dev)) + ":" + std::to_string(minor(dev));
  while (std::getline(in, line)) {
    std::istringstream ls(line);
    std::string id, parent, majmin, root, point;
    if (!(ls >> id >> parent >> majmin >> root >> point)) continue;
    if (majmin != want) continue;
    (root == "/" ? whole : part).push_back(unescape_mountinfo(point));
  }
  whole.insert(whole.end(), part.begin(), part.end());
  return whole;
}

constexpr int kFileIdIno32Gen = 1;  // FILEID_INO32_GEN (include/linux/exportfs.h)

struct Ino32GenHandle {
  struct file_handle fh;
  uint32_t words[2];
};

// An O_RDONLY fd of a directory of `dev` whose filesystem encodes handles as {ino32, gen}.
FileResult<UniqueFd> handle_mount_fd(dev_t dev, const std::string& name) {
  for (const std::string& point : mount_points_of(dev)) {
    UniqueFd mfd(::open(point.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOCTTY));
    if (!mfd) continue;
    struct stat st {};
    if (::fstat(mfd.get(), &st) != 0 || st.st_dev != dev) continue;  // over-mounted
    Ino32GenHandle h{};
    h.fh.handle_bytes = sizeof h.words;
    int mount_id = 0;
    if (::name_to_handle_at(mfd.get(), "", &h.fh, &mount_id, AT_EMPTY_PATH) != 0) {
      if (errno == EOVERFLOW || errno == EOPNOTSUPP) break;  // another (larger) format, or none
      continue;
    }
    auto gen = inode_generation(mfd.get());
    if (h.fh.handle_type != kFileIdIno32Gen || h.fh.handle_bytes != sizeof h.words || !gen ||
        h.words[0] != static_cast<uint32_t>(st.st_ino) || h.words[1] != *gen)
      break;  // not the {ino32, gen} layout this helper builds
    return mfd;
  }
  return tl::unexpected(file_error(FileErrorKind::kIoError, EOPNOTSUPP,
                                   "no mount of " + describe_identity(dev, 0) +
                                       " with {ino32, gen} file handles in this mount namespace",
                                   name));
}

}  // namespace

FileResult<OpenedFile> open_by_inode_handle(const FileIdentity& expected, std::string_view name) {
  std::string p(name);
  if (!expected.generation || expected.ino > UINT32_MAX)
    return tl::unexpected(file_error(FileErrorKind::kIoError, EOPNOTSUPP,
                                     "no {ino32, gen} handle for this identity", p));
  auto mfd = handle_mount_fd(expected.dev, p);
  if (!mfd) return tl::unexpected(mfd.error());
  Ino32GenHandle h{};
  h.fh.handle_bytes = sizeof h.words;
  h.fh.handle_type = kFileIdIno32Gen;
  h.words[0] = static_cast<uint32_t>(expected.ino);
  h.words[1] = *expected.generation;
  // O_PATH first, as open_in_root: nothing is opened for reading before the inode is checked.
  UniqueFd pathfd(::open_by_handle_at(mfd->get(), &h.fh, O_PATH | O_CLOEXEC));
  if (!pathfd) {
    int err = errno;
    FileErrorKind kind = err == ESTALE ? FileErrorKind::kMismatch : kind_for_errno(err);
    std::string what = err == ESTALE ? "inode " + std::to_string(expected.ino) + " generation " +
                                           std::to_string(*expected.generation) +
                                           " no longer exists (freed or number reused)"
                                     : std::string("open_by_handle_at: ") + std::strerror(err);
    return tl::unexpected(file_error(kind, err, what, p));
  }
  return verify_and_reopen(std::move(pathfd), std::move(p), expected);
}

}  // namespace nsima::measure
