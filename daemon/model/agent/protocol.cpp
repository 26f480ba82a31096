// SPDX-License-Identifier: Apache-2.0
#include "model/agent/protocol.h"

#include <cerrno>
#include <charconv>
#include <limits>

#include <nlohmann/json.hpp>

#include "common/hex.h"

namespace nsima::model::agent {
namespace {

using json = nlohmann::json;

// ---------------------------------------------------------------- encoding

json key_json(const ProcKey& k) { return {{"tgid", k.tgid}, {"start", std::to_string(k.start)}}; }

json inode_json(const InodeCell& i) {
  return {{"uid", i.uid},
          {"gid", i.gid},
          {"mode", i.mode},
          {"magic", std::to_string(i.magic)},
          {"uuid", to_hex(i.uuid)}};
}

json file_json(const FileCell& f) {
  return {{"flags", f.flags}, {"inode", inode_json(f.inode)}, {"path", f.path},
          {"digest", to_hex(f.digest)}};
}

json cell_json(const Event& e) {
  json t = e.target ? key_json(*e.target) : json(nullptr);
  return std::visit(
      [&](const auto& c) -> json {
        using C = std::decay_t<decltype(c)>;
        if constexpr (std::is_same_v<C, FileCell>) {
          return file_json(c);
        } else if constexpr (std::is_same_v<C, MmapCell>) {
          return {{"file", c.file ? file_json(*c.file) : json(nullptr)},
                  {"prot", c.prot},
                  {"flags", c.flags}};
        } else if constexpr (std::is_same_v<C, MprotectCell>) {
          return {{"inode", c.inode ? inode_json(*c.inode) : json(nullptr)},
                  {"reqprot", c.reqprot},
                  {"prot", c.prot}};
        } else if constexpr (std::is_same_v<C, PtraceCell>) {
          return {{"target", t}, {"mode", c.mode}};
        } else if constexpr (std::is_same_v<C, TracemeCell>) {
          return {{"tracer", t}};
        } else if constexpr (std::is_same_v<C, KillCell>) {
          return {{"target", t}, {"signal", c.signal}, {"cross_model", c.cross_model}};
        } else if constexpr (std::is_same_v<C, SocketCreateCell>) {
          return {{"family", c.family}, {"type", c.type}, {"protocol", c.protocol}, {"kern", c.kern}};
        } else {
          return {{"family", c.family}, {"type", c.type},         {"protocol", c.protocol},
                  {"port", c.port},     {"addr", to_hex(c.addr)}, {"flowinfo", c.flowinfo},
                  {"scope_id", c.scope_id}, {"data", to_hex(c.data)}};
        }
      },
      e.cell);
}

json coe_json(const Coe& c) {
  return {{"uid", c.uid},     {"euid", c.euid},   {"suid", c.suid},   {"gid", c.gid},
          {"egid", c.egid},   {"sgid", c.sgid},   {"fsuid", c.fsuid}, {"fsgid", c.fsgid},
          {"cap_effective", std::to_string(c.cap_effective)}};
}

json message_json(const Message& m) {
  return std::visit(
      [](const auto& v) -> json {
        using M = std::decay_t<decltype(v)>;
        if constexpr (std::is_same_v<M, Hello>) {
          return {{"type", "hello"}, {"protocol", v.protocols}, {"ns", v.ns},
                  {"mode", std::string(mode_name(v.mode))}, {"digest", "sha256"}};
        } else if constexpr (std::is_same_v<M, HelloReply>) {
          return {{"type", "hello"}, {"protocol", v.protocol}, {"agent", v.agent},
                  {"points", v.points}, {"state", to_hex(v.state)}};
        } else if constexpr (std::is_same_v<M, Fork>) {
          return {{"type", "fork"}, {"seq", v.seq}, {"parent", key_json(v.parent)},
                  {"child", key_json(v.child)}};
        } else if constexpr (std::is_same_v<M, Exit>) {
          return {{"type", "exit"}, {"seq", v.seq}, {"proc", key_json(v.proc)}};
        } else if constexpr (std::is_same_v<M, Event>) {
          json j = {{"type", "event"},
                    {"seq", v.seq},
                    {"event", std::string(event_name(v.type))},
                    {"proc", key_json(v.proc)},
                    {"coe", coe_json(v.coe)},
                    {"cell", cell_json(v)}};
          if (v.coefficient) j["coefficient"] = to_hex(*v.coefficient);
          if (!v.description.empty()) j["description"] = v.description;
          return j;
        } else if constexpr (std::is_same_v<M, Verdict>) {
          json j = {{"type", "verdict"},
                    {"seq", v.seq},
                    {"verdict", v.allow ? "allow" : "deny"},
                    {"known", v.known},
                    {"untrusted", v.untrusted}};
          if (v.coefficient) j["coefficient"] = to_hex(*v.coefficient);
          if (!v.reason.empty()) j["reason"] = v.reason;
          return j;
        } else {
          json j = {{"type", "error"}, {"message", v.message}};
          if (v.seq) j["seq"] = *v.seq;
          return j;
        }
      },
      m);
}

// ---------------------------------------------------------------- decoding

struct Bad {
  std::string path, what;
};

class Obj {
 public:
  Obj(const json& j, std::string path) : j_(j), path_(std::move(path)) {
    if (!j_.is_object()) throw Bad{path_, "expected an object"};
  }
  const json& at(const char* k) const {
    auto it = j_.find(k);
    if (it == j_.end()) throw Bad{sub(k), "missing"};
    return *it;
  }
  bool has(const char* k) const { return j_.contains(k) && !j_.at(k).is_null(); }
  std::string sub(const char* k) const { return path_ + "." + k; }

  uint32_t u32(const char* k) const {
    const json& v = at(k);
    if (!v.is_number_unsigned() || v.get<uint64_t>() > std::numeric_limits<uint32_t>::max())
      throw Bad{sub(k), "expected an unsigned 32-bit number"};
    return v.get<uint32_t>();
  }
  uint64_t u64num(const char* k) const {
    const json& v = at(k);
    if (!v.is_number_unsigned()) throw Bad{sub(k), "expected an unsigned number"};
    return v.get<uint64_t>();
  }
  uint64_t u64str(const char* k) const {  // 64-bit values travel as decimal strings
    const json& v = at(k);
    if (!v.is_string()) throw Bad{sub(k), "expected a decimal string (64-bit value)"};
    const std::string& s = v.get_ref<const std::string&>();
    uint64_t out = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    if (s.empty() || ec != std::errc() || p != s.data() + s.size())
      throw Bad{sub(k), "expected a decimal string (64-bit value), got '" + s + "'"};
    return out;
  }
  bool boolean(const char* k) const {
    const json& v = at(k);
    if (!v.is_boolean()) throw Bad{sub(k), "expected true or false"};
    return v.get<bool>();
  }
  std::string str(const char* k) const {
    const json& v = at(k);
    if (!v.is_string()) throw Bad{sub(k), "expected a string"};
    return v.get<std::string>();
  }
  std::vector<uint8_t> hex(const char* k, std::optional<size_t> size = std::nullopt) const {
    std::string s = str(k);
    auto b = from_hex(s);
    if (!b || (size && b->size() != *size))
      throw Bad{sub(k), size ? "expected " + std::to_string(2 * *size) + " hex digits"
                             : std::string("expected hex digits")};
    return *b;
  }
  Digest digest(const char* k) const {
    auto b = hex(k, kDigestSize);
    Digest d{};
    std::copy(b.begin(), b.end(), d.begin());
    return d;
  }
  Obj obj(const char* k) const { return Obj(at(k), sub(k)); }

 private:
  const json& j_;
  std::string path_;
};

ProcKey key_of(const Obj& o) { return ProcKey{o.u32("tgid"), o.u64str("start")}; }

InodeCell inode_of(const Obj& o) {
  InodeCell i;
  i.uid = o.u32("uid");
  i.gid = o.u32("gid");
  i.mode = o.u32("mode");
  i.magic = o.u64str("magic");
  auto u = o.hex("uuid", 16);
  std::copy(u.begin(), u.end(), i.uuid.begin());
  return i;
}

FileCell file_of(const Obj& o) {
  return FileCell{o.u32("flags"), inode_of(o.obj("inode")), o.str("path"), o.digest("digest")};
}

Coe coe_of(const Obj& o) {
  return Coe{o.u32("uid"),   o.u32("euid"),  o.u32("suid"),  o.u32("gid"),
             o.u32("egid"),  o.u32("sgid"),  o.u32("fsuid"), o.u32("fsgid"),
             o.u64str("cap_effective")};
}

void cell_of(const Obj& c, Event& e) {
  switch (e.type) {
    case EventType::kBprmCommittedCreds:
    case EventType::kFileOpen:
      e.cell = file_of(c);
      break;
    case EventType::kMmapFile: {
      MmapCell m;
      if (c.has("file")) m.file = file_of(c.obj("file"));
      m.prot = c.u32("prot");
      m.flags = c.u32("flags");
      e.cell = m;
      break;
    }
    case EventType::kFileMprotect: {
      MprotectCell m;
      if (c.has("inode")) m.inode = inode_of(c.obj("inode"));
      m.reqprot = c.u32("reqprot");
      m.prot = c.u32("prot");
      e.cell = m;
      break;
    }
    case EventType::kPtraceAccessCheck:
      e.target = key_of(c.obj("target"));
      e.cell = PtraceCell{{}, c.u32("mode")};
      break;
    case EventType::kPtraceTraceme:
      e.target = key_of(c.obj("tracer"));
      e.cell = TracemeCell{};
      break;
    case EventType::kTaskKill:
      e.target = key_of(c.obj("target"));
      e.cell = KillCell{{}, c.u32("signal"), c.u32("cross_model")};
      break;
    case EventType::kSocketCreate:
      e.cell = SocketCreateCell{c.u32("family"), c.u32("type"), c.u32("protocol"), c.u32("kern")};
      break;
    case EventType::kSocketConnect:
    case EventType::kSocketBind: {
      SocketAddrCell s;
      s.family = c.u32("family");
      s.type = c.u32("type");
      s.protocol = c.u32("protocol");
      uint32_t port = c.u32("port");
      if (port > 0xffff) throw Bad{c.sub("port"), "expected a port (0..65535)"};
      s.port = static_cast<uint16_t>(port);
      auto a = c.hex("addr", 16);
      std::copy(a.begin(), a.end(), s.addr.begin());
      s.flowinfo = c.u32("flowinfo");
      s.scope_id = c.u32("scope_id");
      s.data = c.hex("data");
      if (s.data.size() > kMaxSockaddrData)
        throw Bad{c.sub("data"), "more than " + std::to_string(kMaxSockaddrData) + " bytes"};
      e.cell = s;
      break;
    }
  }
}

Message decode_object(const json& j) {
  Obj o(j, "message");
  const std::string type = o.str("type");
  Obj m(j, type);
  if (type == "hello") {
    const json& p = m.at("protocol");
    if (p.is_array()) {  // nsimad's hello
      Hello h;
      h.protocols.clear();
      for (const auto& v : p) {
        if (!v.is_number_unsigned()) throw Bad{"hello.protocol", "expected version numbers"};
        h.protocols.push_back(v.get<int>());
      }
      h.ns = m.u32("ns");
      auto mode = mode_from_name(m.str("mode"));
      if (!mode) throw Bad{"hello.mode", "expected learn, seal or enforce"};
      h.mode = *mode;
      if (m.str("digest") != "sha256") throw Bad{"hello.digest", "only sha256"};
      return h;
    }
    HelloReply r;
    r.protocol = static_cast<int>(m.u32("protocol"));
    r.agent = m.str("agent");
    r.points = m.u64num("points");
    r.state = m.digest("state");
    return r;
  }
  if (type == "fork") return Fork{m.u64num("seq"), key_of(m.obj("parent")), key_of(m.obj("child"))};
  if (type == "exit") return Exit{m.u64num("seq"), key_of(m.obj("proc"))};
  if (type == "event") {
    Event e;
    e.seq = m.u64num("seq");
    std::string name = m.str("event");
    auto t = event_from_name(name);
    if (!t) throw Bad{"event.event", "unknown event '" + name + "'"};
    e.type = *t;
    e.proc = key_of(m.obj("proc"));
    e.coe = coe_of(m.obj("coe"));
    cell_of(m.obj("cell"), e);
    if (m.has("coefficient")) e.coefficient = m.digest("coefficient");
    if (m.has("description")) e.description = m.str("description");
    return e;
  }
  if (type == "verdict") {
    Verdict v;
    v.seq = m.u64num("seq");
    std::string verdict = m.str("verdict");
    if (verdict != "allow" && verdict != "deny")
      throw Bad{"verdict.verdict", "expected allow or deny, got '" + verdict + "'"};
    v.allow = verdict == "allow";
    v.known = m.boolean("known");
    v.untrusted = m.boolean("untrusted");
    if (m.has("coefficient")) v.coefficient = m.digest("coefficient");
    if (m.has("reason")) v.reason = m.str("reason");
    return v;
  }
  if (type == "error") {
    ErrorMessage e;
    if (m.has("seq")) e.seq = m.u64num("seq");
    e.message = m.str("message");
    return e;
  }
  throw Bad{"message.type", "unknown message type '" + type + "'"};
}

}  // namespace

bool has_task_target(EventType type) {
  return type == EventType::kPtraceAccessCheck || type == EventType::kPtraceTraceme ||
         type == EventType::kTaskKill;
}

std::string encode(const Message& m) { return message_json(m).dump() + "\n"; }

Result<Message> decode(std::string_view line) {
  if (line.size() > kMaxLine)
    return make_error(EINVAL, "line of " + std::to_string(line.size()) + " bytes (at most " +
                                  std::to_string(kMaxLine) + ")",
                      "agent protocol");
  if (!line.empty() && line.back() == '\n') line.remove_suffix(1);
  json j = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return make_error(EINVAL, "not JSON", "agent protocol");
  try {
    return decode_object(j);
  } catch (const Bad& b) {
    return make_error(EINVAL, b.path + ": " + b.what, "agent protocol");
  } catch (const json::exception& e) {  // a number of the wrong width, ...
    return make_error(EINVAL, e.what(), "agent protocol");
  }
}

}  // namespace nsima::model::agent
