// SPDX-License-Identifier: Apache-2.0
#include "model/coefficient.h"

#include <openssl/evp.h>

#include <cerrno>
#include <cstdlib>
#include <memory>

namespace nsima::model {
namespace {

constexpr std::array<std::string_view, kEventTypeCount> kNames = {
    "bprm_committed_creds", "file_open",   "mmap_file",      "file_mprotect",
    "ptrace_access_check",  "ptrace_traceme", "task_kill",   "socket_create",
    "socket_connect",       "socket_bind",
};

class Writer {
 public:
  void u32le(uint32_t v) {
    for (int i = 0; i < 4; ++i) out_.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  void u64le(uint64_t v) {
    for (int i = 0; i < 8; ++i) out_.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  void be16(uint16_t v) {
    out_.push_back(static_cast<uint8_t>(v >> 8));
    out_.push_back(static_cast<uint8_t>(v));
  }
  void be32(uint32_t v) {
    for (int i = 3; i >= 0; --i) out_.push_back(static_cast<uint8_t>(v >> (8 * i)));
  }
  void bytes(std::span<const uint8_t> b) { out_.insert(out_.end(), b.begin(), b.end()); }
  void str(std::span<const uint8_t> b) {
    u32le(static_cast<uint32_t>(b.size()));
    bytes(b);
  }
  void str(std::string_view s) {
    str(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(s.data()), s.size()));
  }
  std::vector<uint8_t> take() { return std::move(out_); }

 private:
  std::vector<uint8_t> out_;
};

void put_inode(Writer& w, const InodeCell& i) {
  w.u32le(i.uid);
  w.u32le(i.gid);
  w.u32le(i.mode);
  w.u64le(i.magic);
  static constexpr std::array<uint8_t, 16> kNullUuid{};
  w.bytes(i.magic == kTmpfsMagic ? kNullUuid : i.uuid);
}

void put_file(Writer& w, const FileCell& f) {
  w.u32le(f.flags);
  put_inode(w, f.inode);
  w.str(f.path);
  w.bytes(f.digest);
}

Result<void> put_addr(Writer& w, const SocketAddrCell& s, std::string_view event) {
  w.u32le(s.family);
  w.u32le(s.type);
  w.u32le(s.protocol);
  switch (s.family) {
    case kAfInet:
      w.be16(s.port);
      w.bytes(std::span<const uint8_t>(s.addr.data(), 4));
      break;
    case kAfInet6:
      w.be16(s.port);
      w.bytes(s.addr);
      w.be32(s.flowinfo);
      w.u32le(s.scope_id);
      break;
    default:
      if (s.data.size() > kMaxSockaddrData)
        return make_error(EINVAL,
                          "socket address of " + std::to_string(s.data.size()) +
                              " bytes (at most " + std::to_string(kMaxSockaddrData) + ")",
                          std::string(event));
      w.str(s.data);
      break;
  }
  return {};
}

const char* cell_kind(const Cell& c) {
  static constexpr const char* kKinds[] = {"file",    "mmap",          "mprotect",
                                           "ptrace",  "traceme",       "kill",
                                           "socket-create", "socket-address"};
  return kKinds[c.index()];
}

}  // namespace

std::string_view event_name(EventType type) { return kNames[static_cast<size_t>(type)]; }

std::optional<EventType> event_from_name(std::string_view name) {
  for (size_t i = 0; i < kNames.size(); ++i)
    if (kNames[i] == name) return static_cast<EventType>(i);
  return std::nullopt;
}

std::vector<uint8_t> encode_coe(const Coe& c) {
  Writer w;
  for (uint32_t v : {c.uid, c.euid, c.suid, c.gid, c.egid, c.sgid, c.fsuid, c.fsgid}) w.u32le(v);
  w.u64le(c.cap_effective);
  return w.take();
}

Result<std::vector<uint8_t>> encode_cell(EventType type, const Cell& cell) {
  Writer w;
  auto mismatch = [&]() {
    return make_error(EINVAL, std::string("a ") + cell_kind(cell) + " cell is not the cell of " +
                                  std::string(event_name(type)),
                      std::string(event_name(type)));
  };
  switch (type) {
    case EventType::kBprmCommittedCreds:
    case EventType::kFileOpen: {
      auto* f = std::get_if<FileCell>(&cell);
      if (!f) return mismatch();
      put_file(w, *f);
      break;
    }
    case EventType::kMmapFile: {
      auto* m = std::get_if<MmapCell>(&cell);
      if (!m) return mismatch();
      if (m->file) put_file(w, *m->file);
      w.u32le(m->prot);
      w.u32le(m->flags);
      break;
    }
    case EventType::kFileMprotect: {
      auto* m = std::get_if<MprotectCell>(&cell);
      if (!m) return mismatch();
      w.u32le(m->inode ? 1 : 0);
      if (m->inode) put_inode(w, *m->inode);
      w.u32le(m->reqprot);
      w.u32le(m->prot);
      break;
    }
    case EventType::kPtraceAccessCheck: {
      auto* p = std::get_if<PtraceCell>(&cell);
      if (!p) return mismatch();
      w.bytes(p->target);
      w.u32le(p->mode);
      break;
    }
    case EventType::kPtraceTraceme: {
      auto* t = std::get_if<TracemeCell>(&cell);
      if (!t) return mismatch();
      w.bytes(t->tracer);
      break;
    }
    case EventType::kTaskKill: {
      auto* k = std::get_if<KillCell>(&cell);
      if (!k) return mismatch();
      w.bytes(k->target);
      w.u32le(k->signal);
      w.u32le(k->cross_model);
      break;
    }
    case EventType::kSocketCreate: {
      auto* s = std::get_if<SocketCreateCell>(&cell);
      if (!s) return mismatch();
      w.u32le(s->family);
      w.u32le(s->type);
      w.u32le(s->protocol);
      w.u32le(s->kern);
      break;
    }
    case EventType::kSocketConnect:
    case EventType::kSocketBind: {
      auto* s = std::get_if<SocketAddrCell>(&cell);
      if (!s) return mismatch();
      if (auto r = put_addr(w, *s, event_name(type)); !r) return tl::unexpected(r.error());
      break;
    }
  }
  return w.take();
}

Digest sha256(std::span<const uint8_t> data) { return sha256({data}); }

Digest sha256(std::initializer_list<std::span<const uint8_t>> parts) {
  // One context per thread, reused: EVP_MD_CTX_new per digest would dominate the cost of a
  // coefficient. A failure here is an OpenSSL without SHA-256 or out of memory: fatal.
  struct CtxDeleter {
    void operator()(EVP_MD_CTX* c) const noexcept { EVP_MD_CTX_free(c); }
  };
  thread_local std::unique_ptr<EVP_MD_CTX, CtxDeleter> ctx(EVP_MD_CTX_new());
  const EVP_MD* md = EVP_sha256();
  Digest d;
  unsigned int len = 0;
  bool ok = ctx && EVP_DigestInit_ex(ctx.get(), md, nullptr) == 1;
  for (auto p : parts) ok = ok && EVP_DigestUpdate(ctx.get(), p.data(), p.size()) == 1;
  ok = ok && EVP_DigestFinal_ex(ctx.get(), d.data(), &len) == 1 && len == d.size();
  if (!ok) std::abort();
  return d;
}

Digest coefficient_of(EventType type, const Digest& ptask_id, const Digest& task_id,
                      const Digest& coe_digest, const Digest& cell_digest) {
  // H(name) of each event, computed once.
  static const std::array<Digest, kEventTypeCount> kNameDigests = [] {
    std::array<Digest, kEventTypeCount> a;
    for (size_t i = 0; i < kEventTypeCount; ++i)
      a[i] = sha256(std::span<const uint8_t>(reinterpret_cast<const uint8_t*>(kNames[i].data()),
                                             kNames[i].size()));
    return a;
  }();
  return sha256({kNameDigests[static_cast<size_t>(type)], ptask_id, task_id, coe_digest,
                 cell_digest});
}

Result<Digest> coefficient(EventType type, const Digest& ptask_id, const Digest& task_id,
                           const Coe& coe, const Cell& cell) {
  auto enc = encode_cell(type, cell);
  if (!enc) return tl::unexpected(enc.error());
  return coefficient_of(type, ptask_id, task_id, sha256(encode_coe(coe)), sha256(*enc));
}

Digest task_id(const Digest& ptask_id, const Coe& coe, const FileCell& exe) {
  Writer w;
  put_file(w, exe);
  return coefficient_of(EventType::kBprmCommittedCreds, ptask_id, kZeroDigest,
                        sha256(encode_coe(coe)), sha256(w.take()));
}

Digest extend(const Digest& m, const Digest& base, const Digest& value) {
  Digest inner = sha256({base, value});
  return sha256({m, inner});
}

}  // namespace nsima::model
