// SPDX-License-Identifier: Apache-2.0
// Security coefficients in TSEM's form (ima-facts §5.6):
//   coeff   = H( H(event name) || PTASK_ID || TASK_ID || H(COE) || H(CELL) )
//   TASK_ID = coeff of "bprm_committed_creds" with TASK_ID = 32 zero bytes, over the executable
// with H = SHA-256. Every byte that goes into H is specified in docs/model-encoding.md; the
// encoders here follow it and tests/unit/model/vectors.txt (made by an independent Python
// script) pins them. Pure: no I/O, no global state.
#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "common/result.h"

namespace nsima::model {

inline constexpr size_t kDigestSize = 32;  // SHA-256
using Digest = std::array<uint8_t, kDigestSize>;
inline constexpr Digest kZeroDigest{};

enum class EventType : uint8_t {
  kBprmCommittedCreds,  // exec: its coefficient is the new TASK_ID
  kFileOpen,
  kMmapFile,
  kFileMprotect,
  kPtraceAccessCheck,
  kPtraceTraceme,
  kTaskKill,
  kSocketCreate,
  kSocketConnect,
  kSocketBind,
};
inline constexpr size_t kEventTypeCount = 10;

// The event name hashed into the coefficient ("file_open", ...), as TSEM names its events.
std::string_view event_name(EventType type);
std::optional<EventType> event_from_name(std::string_view name);

// Context of execution: the task's credentials (global ids) and effective capabilities.
struct Coe {
  uint32_t uid = 0, euid = 0, suid = 0;
  uint32_t gid = 0, egid = 0, sgid = 0;
  uint32_t fsuid = 0, fsgid = 0;
  uint64_t cap_effective = 0;
  bool operator==(const Coe&) const = default;
};

inline constexpr uint64_t kTmpfsMagic = 0x01021994;

struct InodeCell {
  uint32_t uid = 0, gid = 0, mode = 0;
  uint64_t magic = 0;               // s_magic
  std::array<uint8_t, 16> uuid{};   // s_uuid as read; hashed as zeros on tmpfs
};

struct FileCell {
  uint32_t flags = 0;  // file->f_flags
  InodeCell inode;
  std::string path;    // as the process sees it, no NUL
  Digest digest{};     // SHA-256 of the content
};

struct MmapCell {
  std::optional<FileCell> file;  // nullopt: anonymous mapping
  uint32_t prot = 0, flags = 0;
};

struct MprotectCell {
  std::optional<InodeCell> inode;  // nullopt: anonymous memory
  uint32_t reqprot = 0, prot = 0;
};

// ptrace_access_check: the target's TASK_ID and PTRACE_MODE_* bits.
struct PtraceCell {
  Digest target{};
  uint32_t mode = 0;
};

// ptrace_traceme: the TASK_ID of the parent that will trace.
struct TracemeCell {
  Digest tracer{};
};

struct KillCell {
  Digest target{};
  uint32_t signal = 0;
  uint32_t cross_model = 0;  // 1: the target is in another namespace
};

struct SocketCreateCell {
  uint32_t family = 0, type = 0, protocol = 0, kern = 0;
};

inline constexpr uint32_t kAfUnix = 1;
inline constexpr uint32_t kAfInet = 2;
inline constexpr uint32_t kAfInet6 = 10;
inline constexpr size_t kMaxSockaddrData = 126;  // sizeof(sockaddr_storage) - sa_family

// socket_connect / socket_bind. Which fields count depends on the family (model-encoding.md).
struct SocketAddrCell {
  uint32_t family = 0, type = 0, protocol = 0;
  uint16_t port = 0;                 // host order (hashed big-endian)
  std::array<uint8_t, 16> addr{};    // AF_INET: the first 4 bytes; AF_INET6: all 16
  uint32_t flowinfo = 0;             // AF_INET6, host order (hashed big-endian)
  uint32_t scope_id = 0;             // AF_INET6
  std::vector<uint8_t> data;         // AF_UNIX: the path bytes; other: the raw address bytes
};

using Cell = std::variant<FileCell, MmapCell, MprotectCell, PtraceCell, TracemeCell, KillCell,
                          SocketCreateCell, SocketAddrCell>;

// The byte strings that are hashed.
std::vector<uint8_t> encode_coe(const Coe& coe);
// EINVAL when the cell's kind is not the event's (a FileCell for task_kill, ...) or a field is
// out of range (AF_UNIX path or raw address longer than kMaxSockaddrData).
Result<std::vector<uint8_t>> encode_cell(EventType type, const Cell& cell);

Digest sha256(std::span<const uint8_t> data);
Digest sha256(std::initializer_list<std::span<const uint8_t>> parts);

// H( H(name) || ptask || task || coe_digest || cell_digest )
Digest coefficient_of(EventType type, const Digest& ptask_id, const Digest& task_id,
                      const Digest& coe_digest, const Digest& cell_digest);
Result<Digest> coefficient(EventType type, const Digest& ptask_id, const Digest& task_id,
                           const Coe& coe, const Cell& cell);
// The TASK_ID a process gets by exec'ing `exe` with credentials `coe`.
Digest task_id(const Digest& ptask_id, const Coe& coe, const FileCell& exe);

// The model's extension step: H( m || H(base || value) ).
Digest extend(const Digest& m, const Digest& base, const Digest& value);

}  // namespace nsima::model
