// SPDX-License-Identifier: Apache-2.0
#include "model/event_decode.h"

#include <cerrno>
#include <cstring>

namespace nsima::model {

ProcKey proc_key(const nsima_proc_key& k) { return ProcKey{k.tgid, k.start}; }

Coe coe_of(const nsima_model_cred& c) {
  return Coe{c.uid, c.euid, c.suid, c.gid, c.egid, c.sgid, c.fsuid, c.fsgid, c.cap_effective};
}

std::optional<EventType> model_event_type(uint32_t hook) {
  switch (hook) {
    case NSIMA_MHOOK_PTRACE_ACCESS_CHECK:
      return EventType::kPtraceAccessCheck;
    case NSIMA_MHOOK_PTRACE_TRACEME:
      return EventType::kPtraceTraceme;
    case NSIMA_MHOOK_TASK_KILL:
      return EventType::kTaskKill;
    case NSIMA_MHOOK_SOCKET_CREATE:
      return EventType::kSocketCreate;
    case NSIMA_MHOOK_SOCKET_CONNECT:
      return EventType::kSocketConnect;
    case NSIMA_MHOOK_SOCKET_BIND:
      return EventType::kSocketBind;
    case NSIMA_MHOOK_FILE_MPROTECT:
      return EventType::kFileMprotect;
    default:
      return std::nullopt;
  }
}

Result<ModelEvent> decode_model_event(std::span<const uint8_t> record) {
  if (record.size() != sizeof(nsima_model_event))
    return make_error(EINVAL,
                      "model event of " + std::to_string(record.size()) + " bytes (expected " +
                          std::to_string(sizeof(nsima_model_event)) + ")",
                      "mevents");
  ModelEvent ev;
  std::memcpy(&ev.raw, record.data(), sizeof ev.raw);
  const nsima_model_event& r = ev.raw;
  if (r.hook == 0 || r.hook >= NSIMA_MHOOK_MAX)
    return make_error(EINVAL, "model event with unknown hook " + std::to_string(r.hook),
                      "mevents");
  ev.hook = r.hook;
  ev.flags = r.flags;
  ev.ktime_ns = r.ktime_ns;
  ev.ns_id = r.ns_id;
  ev.pid = r.pid;
  ev.proc = proc_key(r.proc);
  ev.parent = proc_key(r.parent);
  ev.target = proc_key(r.target);
  ev.target_ns = r.target_ns;
  ev.coe = coe_of(r.cred);
  ev.comm.assign(r.comm, strnlen(r.comm, sizeof r.comm));
  return ev;
}

SocketAddrCell sockaddr_cell(uint32_t socket_family, uint32_t type, uint32_t protocol,
                             std::span<const uint8_t> sa) {
  SocketAddrCell c;
  c.type = type;
  c.protocol = protocol;
  // The address's own family (connect(AF_UNSPEC) dissolves a UDP association); the socket's
  // when the address is too short to carry one.
  c.family = sa.size() >= 2 ? static_cast<uint32_t>(sa[0] | sa[1] << 8) : socket_family;
  auto byte = [&](size_t i) -> uint8_t { return i < sa.size() ? sa[i] : 0; };
  auto body = sa.size() > 2 ? sa.subspan(2) : std::span<const uint8_t>{};
  switch (c.family) {
    case kAfInet:  // sockaddr_in: port (be16), addr (4)
      c.port = static_cast<uint16_t>(byte(2) << 8 | byte(3));
      for (size_t i = 0; i < 4; ++i) c.addr[i] = byte(4 + i);
      break;
    case kAfInet6:  // sockaddr_in6: port (be16), flowinfo (be32), addr (16), scope_id (host)
      c.port = static_cast<uint16_t>(byte(2) << 8 | byte(3));
      c.flowinfo = static_cast<uint32_t>(byte(4)) << 24 | byte(5) << 16 | byte(6) << 8 | byte(7);
      for (size_t i = 0; i < 16; ++i) c.addr[i] = byte(8 + i);
      c.scope_id = static_cast<uint32_t>(byte(24) | byte(25) << 8 | byte(26) << 16) |
                   static_cast<uint32_t>(byte(27)) << 24;
      break;
    case kAfUnix:
      if (!body.empty() && body[0] != 0) {  // pathname socket: up to the first NUL
        size_t n = 0;
        while (n < body.size() && body[n] != 0) ++n;
        c.data.assign(body.begin(), body.begin() + static_cast<std::ptrdiff_t>(n));
      } else {
        c.data.assign(body.begin(), body.end());  // abstract (leading NUL kept) or unnamed
      }
      break;
    default:
      c.data.assign(body.begin(), body.begin() + static_cast<std::ptrdiff_t>(
                                                     std::min(body.size(), kMaxSockaddrData)));
      break;
  }
  if (c.data.size() > kMaxSockaddrData) c.data.resize(kMaxSockaddrData);
  return c;
}

Result<Cell> model_cell(const ModelEvent& ev, const Digest& target_task_id) {
  const nsima_model_event& r = ev.raw;
  switch (ev.hook) {
    case NSIMA_MHOOK_PTRACE_ACCESS_CHECK:
      return PtraceCell{target_task_id, r.arg0};
    case NSIMA_MHOOK_PTRACE_TRACEME:
      return TracemeCell{target_task_id};
    case NSIMA_MHOOK_TASK_KILL:
      return KillCell{target_task_id, r.arg0, (r.flags & NSIMA_MEV_CROSS) ? 1u : 0u};
    case NSIMA_MHOOK_SOCKET_CREATE:
      return SocketCreateCell{r.arg0, r.arg1, r.arg2, r.arg3};
    case NSIMA_MHOOK_SOCKET_CONNECT:
    case NSIMA_MHOOK_SOCKET_BIND: {
      size_t n = std::min<size_t>(r.addr_len, sizeof r.addr);
      return sockaddr_cell(r.arg0, r.arg1, r.arg2, std::span<const uint8_t>(r.addr, n));
    }
    case NSIMA_MHOOK_FILE_MPROTECT: {
      MprotectCell m;
      m.reqprot = r.arg0;
      m.prot = r.arg1;
      if (!(r.flags & NSIMA_MEV_ANONYMOUS)) {
        InodeCell i;
        i.uid = r.i_uid;
        i.gid = r.i_gid;
        i.mode = r.i_mode;
        i.magic = r.fs_magic;
        std::memcpy(i.uuid.data(), r.fs_uuid, i.uuid.size());
        m.inode = i;
      }
      return m;
    }
    default:
      return make_error(EINVAL, "hook " + std::to_string(ev.hook) + " has no model cell",
                        "mevents");
  }
}

}  // namespace nsima::model
