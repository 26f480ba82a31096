// SPDX-License-Identifier: Apache-2.0
// Opening the file an event names, as the event's process sees it, and proving it is the same
// inode the kernel reported. The path from the BPF side is relative to the process's root, so it
// is resolved with openat2(root_fd, path, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS): symlinks are
// followed but cannot leave the root, and /proc magic links are refused. Resolution yields an
// O_PATH fd first, so nothing is opened for reading (no FIFO blocking, no device open side
// effects) until (st_dev, st_ino) match and the file is known to be regular; only then is that
// exact inode reopened read-only through /proc/self/fd. The i_generation (FS_IOC_GETVERSION) is
// compared too where the filesystem supports it, which catches inode-number reuse.
//
// Failures are typed so the caller records a violation instead of silently skipping: a file that
// vanished, or a path that now names another inode, is exactly what an attacker racing the
// measurement would produce.
#pragma once

#include <sys/stat.h>
#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <tl/expected.hpp>

#include "common/result.h"
#include "common/unique_fd.h"

namespace nsima {
struct Event;
}

namespace nsima::measure {

enum class FileErrorKind {
  kVanished,     // path or process no longer exists (ENOENT, ENOTDIR, ESRCH)
  kMismatch,     // path resolves to a different inode (dev, ino or generation differ)
  kNotRegular,   // path resolves to the right inode but it is not a regular file
  kDenied,       // EACCES/EPERM, or a magic link / escape refused by RESOLVE_* (ELOOP, EXDEV)
  kInvalidPath,  // empty, relative-to-nothing, embedded NUL, ENAMETOOLONG
  kIoError,      // anything else, including reads that fail later
};
std::string_view file_error_kind_name(FileErrorKind kind);

struct FileError {
  FileErrorKind kind = FileErrorKind::kIoError;
  Error error;  // error.where is the path (and root) that failed
  std::string to_string() const;
};

template <class T>
using FileResult = tl::expected<T, FileError>;

// What the kernel said about the file (Event::dev(), ino, generation).
struct FileIdentity {
  dev_t dev = 0;  // userspace dev_t, as stat(2) reports it
  uint64_t ino = 0;
  std::optional<uint32_t> generation;  // nullopt: do not compare

  static FileIdentity from_event(const Event& ev);
};

struct OpenedFile {
  UniqueFd fd;  // O_RDONLY | O_CLOEXEC of the verified inode
  struct stat st {};
  std::optional<uint32_t> generation;  // nullopt when the filesystem has no FS_IOC_GETVERSION
  std::string path;                    // the path as given, for messages
};

// Opens `path` (absolute or relative; both are taken relative to `root_fd`) inside the directory
// `root_fd` (typically an O_PATH fd of a namespace's or process's root) and checks its identity.
FileResult<OpenedFile> open_in_root(int root_fd, std::string_view path,
                                    const FileIdentity& expected);

// O_PATH | O_DIRECTORY fd of /proc/<pid>/root: the root of a live process. kVanished when the
// process has exited. Keep such an fd per namespace: short-lived processes are often gone before
// their event is handled.
FileResult<UniqueFd> open_proc_root(pid_t pid);

// Fallback when no namespace root fd is held: resolve through the live process's root.
FileResult<OpenedFile> open_via_proc_root(pid_t pid, std::string_view path,
                                          const FileIdentity& expected);

// Opens the exact inode `expected` names, without any path or root: open_by_handle_at(2) with the
// handle {u32 ino, u32 generation} (FILEID_INO32_GEN, what ext2/3/4 encode) on a mount of its
// filesystem in nsimad's own mount namespace, found by st_dev in /proc/self/mountinfo. Works after
// the process, its root and its mount namespace are gone and after a rename. The handle format is
// checked on the mount's root with name_to_handle_at, never assumed. Needs CAP_DAC_READ_SEARCH.
// Errors: EOPNOTSUPP (kind kIoError) when the filesystem is not mounted here, has no such handle
// format, or the identity has no generation / a 64-bit inode number: the caller keeps its own
// error then. kMismatch for ESTALE (the inode number now belongs to another generation, or the
// inode was freed: a replaced file), kNotRegular, kDenied (no CAP_DAC_READ_SEARCH).
// `name` only names the file in messages.
FileResult<OpenedFile> open_by_inode_handle(const FileIdentity& expected, std::string_view name);

}  // namespace nsima::measure
