// SPDX-License-Identifier: Apache-2.0
// Offline policy commands: check, explain, show-builtin. Output formats are documented in
// commands.h and are meant to stay stable (scripts grep them).
#include "policy/commands.h"

#include <cctype>
#include <fstream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>

#include "common/hex.h"
#include "policy/parser.h"
#include "policy/policy.h"

namespace nsima::policy {
namespace {

using nlohmann::json;

constexpr std::string_view kBuiltinPrefix = "builtin:";

// Reads a policy source: a file, or "builtin:<name>".
Result<std::string> read_source(const std::string& file) {
  if (std::string_view(file).starts_with(kBuiltinPrefix)) {
    std::string_view name = std::string_view(file).substr(kBuiltinPrefix.size());
    std::string_view text = builtin_text(name);
    if (text.empty()) return make_error(ENOENT, "unknown builtin policy", file);
    return std::string(text);
  }
  return read_policy_text(file);
}

std::string mask_string(uint32_t mask) {
  static constexpr std::pair<uint32_t, const char*> kBits[] = {{NSIMA_MAY_EXEC, "MAY_EXEC"},
                                                               {NSIMA_MAY_WRITE, "MAY_WRITE"},
                                                               {NSIMA_MAY_READ, "MAY_READ"},
                                                               {NSIMA_MAY_APPEND, "MAY_APPEND"}};
  std::string out;
  for (const auto& [bit, name] : kBits) {
    if (!(mask & bit)) continue;
    if (!out.empty()) out += '|';
    out += name;
  }
  if (uint32_t rest = mask & ~0xfu) {
    if (!out.empty()) out += '|';
    out += std::to_string(rest);
  }
  return out.empty() ? "0" : out;
}

std::string hex64(uint64_t v) {
  std::ostringstream s;
  s << "0x" << std::hex << v;
  return s.str();
}

std::string trim(std::string_view s) {
  size_t b = s.find_first_not_of(" \t");
  if (b == std::string_view::npos) return "";
  size_t e = s.find_last_not_of(" \t");
  return std::string(s.substr(b, e - b + 1));
}

// Notes about rules that are valid but behave in nsima differently than one might expect.
std::vector<std::string> notes_for(const Policy& p) {
  std::vector<std::string> notes;
  for (const Rule& r : p.rules()) {
    std::string at = p.filename() + ":" + std::to_string(r.line) + ": note: ";
    if (r.func != Func::kNone && !func_observable(r.func))
      notes.push_back(at + "func=" + std::string(func_name(r.func)) +
                      " is a kernel hook nsima never sees: this rule never matches in nsima");
    if (r.pcr && *r.pcr >= 24)
      notes.push_back(at + "pcr=" + std::to_string(*r.pcr) +
                      " is beyond the 24 PCRs of a TPM 2.0 PC client: extending it will fail");
    if (r.action == Action::kMeasure && r.verity_required)
      notes.push_back(at +
                      "digest_type=verity: nsima records the file's hash, not an fs-verity "
                      "digest (the d-ngv2 templates ima-ngv2 and ima-sigv2 are not produced yet)");
    if (r.text.find("appraise_flag=") != std::string::npos)
      notes.push_back(at +
                      "appraise_flag= is deprecated and ignored (blacklist checks are implied)");
  }
  return notes;
}

// ---- event JSON -> accesses ----

struct JsonError {
  std::string message;
};

std::optional<uint64_t> get_u64(const json& j, const char* key, std::string* error) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  if (it->is_number_unsigned()) return it->get<uint64_t>();
  if (it->is_number_integer() && it->get<int64_t>() >= 0) return it->get<int64_t>();
  if (it->is_string()) {
    const std::string& s = it->get_ref<const std::string&>();
    char* end = nullptr;
    errno = 0;
    unsigned long long v = std::strtoull(s.c_str(), &end, 0);
    if (!s.empty() && end && *end == '\0' && errno == 0) return v;
  }
  *error = std::string("field '") + key + "' must be a non-negative number";
  return std::nullopt;
}

std::optional<uint32_t> get_u32(const json& j, const char* key, std::string* error) {
  auto v = get_u64(j, key, error);
  if (v && *v > 0xffffffffull) {
    *error = std::string("field '") + key + "' does not fit 32 bits";
    return std::nullopt;
  }
  if (!v) return std::nullopt;
  return static_cast<uint32_t>(*v);
}

std::optional<std::string> get_string(const json& j, const char* key, std::string* error) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  if (!it->is_string()) {
    *error = std::string("field '") + key + "' must be a string";
    return std::nullopt;
  }
  return it->get<std::string>();
}

std::optional<bool> get_bool(const json& j, const char* key, std::string* error) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  if (it->is_boolean()) return it->get<bool>();
  if (it->is_number_integer()) return it->get<int64_t>() != 0;
  *error = std::string("field '") + key + "' must be a boolean";
  return std::nullopt;
}

// mask: a number or names joined by '|' (MAY_EXEC, MAY_WRITE, MAY_READ, MAY_APPEND).
std::optional<uint32_t> get_mask(const json& j, const char* key, std::string* error) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  if (!it->is_string()) return get_u32(j, key, error);
  std::string s = it->get<std::string>();
  uint32_t mask = 0;
  size_t start = 0;
  while (start <= s.size()) {
    size_t bar = s.find('|', start);
    std::string name = trim(s.substr(start, bar == std::string::npos ? bar : bar - start));
    if (name == "MAY_EXEC")
      mask |= NSIMA_MAY_EXEC;
    else if (name == "MAY_WRITE")
      mask |= NSIMA_MAY_WRITE;
    else if (name == "MAY_READ")
      mask |= NSIMA_MAY_READ;
    else if (name == "MAY_APPEND")
      mask |= NSIMA_MAY_APPEND;
    else {
      std::string tmp;
      json one = json::object({{"v", name}});
      auto v = get_u32(one, "v", &tmp);
      if (!v) {
        *error = "field '" + std::string(key) + "': unknown access '" + name + "'";
        return std::nullopt;
      }
      mask |= *v;
    }
    if (bar == std::string::npos) break;
    start = bar + 1;
  }
  return mask;
}

// prot: a number or PROT_READ|PROT_WRITE|PROT_EXEC names.
std::optional<uint32_t> get_prot(const json& j, const char* key, std::string* error) {
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  if (!it->is_string()) return get_u32(j, key, error);
  std::string s = it->get<std::string>();
  uint32_t prot = 0;
  size_t start = 0;
  while (true) {
    size_t bar = s.find('|', start);
    std::string name = trim(s.substr(start, bar == std::string::npos ? bar : bar - start));
    if (name == "PROT_READ")
      prot |= NSIMA_PROT_READ;
    else if (name == "PROT_WRITE")
      prot |= NSIMA_PROT_WRITE;
    else if (name == "PROT_EXEC")
      prot |= NSIMA_PROT_EXEC;
    else if (name != "PROT_NONE" && !name.empty()) {
      *error = "field '" + std::string(key) + "': unknown protection '" + name + "'";
      return std::nullopt;
    }
    if (bar == std::string::npos) break;
    start = bar + 1;
  }
  return prot;
}

std::optional<std::array<uint8_t, 16>> get_uuid(const json& j, std::string* error) {
  auto s = get_string(j, "fsuuid", error);
  if (!s) return std::nullopt;
  if (s->empty()) return std::array<uint8_t, 16>{};
  if (auto u = parse_uuid_kernel(*s); u && s->size() == 36) return u;
  if (s->size() == 32) {
    if (auto bytes = from_hex(*s)) {
      std::array<uint8_t, 16> out{};
      std::copy(bytes->begin(), bytes->end(), out.begin());
      return out;
    }
  }
  *error = "field 'fsuuid' must be a UUID (8-4-4-4-12) or 32 hex digits";
  return std::nullopt;
}

// Reads uid/euid/suid/gid/egid/sgid (with `prefix`, e.g. "new_") into `c`, defaulting missing
// ones: euid = uid, suid = euid, egid = gid, sgid = egid.
bool read_creds(const json& j, const std::string& prefix, Creds* c, std::string* error) {
  auto field = [&](const char* name) { return get_u32(j, (prefix + name).c_str(), error); };
  auto uid = field("uid");
  auto euid = field("euid");
  auto suid = field("suid");
  auto gid = field("gid");
  auto egid = field("egid");
  auto sgid = field("sgid");
  if (!error->empty()) return false;
  c->uid = uid.value_or(c->uid);
  c->euid = euid.value_or(uid ? c->uid : c->euid);
  c->suid = suid.value_or(euid || uid ? c->euid : c->suid);
  c->gid = gid.value_or(c->gid);
  c->egid = egid.value_or(gid ? c->gid : c->egid);
  c->sgid = sgid.value_or(egid || gid ? c->egid : c->sgid);
  return true;
}

// The fields an event may carry: those explain reads, then the rest of a `nsimactl watch` line
// (common/event.cpp event_to_json(), plus its "nsima" note), which say nothing a rule can match.
// Any other field is refused: a misspelt "Uid" must not silently mean root.
constexpr std::string_view kEventFieldsRead[] = {
    "func", "hook", "path", "mask", "prot", "reqprot", "uid", "euid", "suid", "gid", "egid",
    "sgid", "new_uid", "new_euid", "new_suid", "new_gid", "new_egid", "new_sgid", "cap_effective",
    "cap_setuid", "cap_setgid", "fowner", "fgroup", "fsmagic", "fsname", "fsuuid"};
constexpr std::string_view kEventFieldsIgnored[] = {
    "pid", "tgid", "comm", "cgroup_id", "ns_id", "mnt_ns", "user_ns", "pid_ns", "dev", "ino",
    "generation", "mode", "ctime_sec", "ctime_nsec", "i_version", "size", "f_flags", "f_mode",
    "mmap_flags", "writers", "readers", "root_dev", "root_ino", "start_boottime", "flags",
    "path_truncated", "deleted", "denied", "nsima", "fsuid", "fsgid"};

std::string lower(std::string_view s) {
  std::string out(s);
  for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

// "" when every field is known, else the sentence naming the first unknown one.
std::string unknown_event_field(const json& j) {
  for (const auto& [key, value] : j.items()) {
    bool known = false;
    for (auto f : kEventFieldsRead) known |= f == key;
    for (auto f : kEventFieldsIgnored) known |= f == key;
    if (known) continue;
    std::string msg = "unknown field '" + key + "' in the event";
    for (auto f : kEventFieldsRead)
      if (lower(f) == lower(key)) return msg + " (did you mean '" + std::string(f) + "'?)";
    std::string names;
    for (auto f : kEventFieldsRead) names += (names.empty() ? "" : ", ") + std::string(f);
    return msg + " (fields: " + names + ")";
  }
  return "";
}

Result<std::vector<Access>> accesses_from_json(const std::string& text, std::string* path) {
  json j = json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object())
    return make_error(EINVAL, "event is not a JSON object", "event");
  if (auto why = unknown_event_field(j); !why.empty()) return make_error(EINVAL, why, "event");
  std::string error;
  auto fail = [&]() { return make_error(EINVAL, error, "event"); };

  Event ev;
  if (!read_creds(j, "", &ev.cred, &error)) return fail();
  ev.new_cred = ev.cred;
  if (!read_creds(j, "new_", &ev.new_cred, &error)) return fail();
  auto cap_effective = get_u64(j, "cap_effective", &error);
  auto cap_setuid = get_bool(j, "cap_setuid", &error);
  auto cap_setgid = get_bool(j, "cap_setgid", &error);
  auto mask = get_mask(j, "mask", &error);
  auto prot = get_prot(j, "prot", &error);
  auto reqprot = get_prot(j, "reqprot", &error);
  auto fowner = get_u32(j, "fowner", &error);
  auto fgroup = get_u32(j, "fgroup", &error);
  auto fsname = get_string(j, "fsname", &error);
  auto uuid = get_uuid(j, &error);
  auto p = get_string(j, "path", &error);
  auto func_s = get_string(j, "func", &error);
  auto hook_s = get_string(j, "hook", &error);
  std::optional<uint64_t> fsmagic;
  if (auto it = j.find("fsmagic"); it != j.end() && it->is_string()) {
    // A string is hexadecimal, like the policy's fsmagic= (with or without 0x).
    std::string s = it->get<std::string>();
    json one =
        json::object({{"fsmagic", (s.starts_with("0x") || s.starts_with("0X")) ? s : "0x" + s}});
    fsmagic = get_u64(one, "fsmagic", &error);
  } else {
    fsmagic = get_u64(j, "fsmagic", &error);
  }
  if (!error.empty()) return fail();

  if (cap_effective) ev.cred.cap_effective = *cap_effective;
  if (cap_setuid)
    ev.cred.cap_effective = (ev.cred.cap_effective & ~(1ull << 7)) | (*cap_setuid ? 1ull << 7 : 0);
  if (cap_setgid)
    ev.cred.cap_effective = (ev.cred.cap_effective & ~(1ull << 6)) | (*cap_setgid ? 1ull << 6 : 0);
  ev.i_uid = fowner.value_or(0);
  ev.i_gid = fgroup.value_or(0);
  ev.fs_magic = fsmagic.value_or(0);
  ev.fs_name = fsname.value_or("");
  if (uuid) ev.fs_uuid = *uuid;
  if (p) *path = *p;

  if (func_s) {
    auto f = func_from_name(*func_s);
    if (!f || *f == Func::kNone)
      return make_error(EINVAL, "unknown func '" + *func_s + "'", "event");
    // Default masks are what the kernel passes for that func: an open for read for FILE_CHECK,
    // MAY_EXEC for exec and mmap, MAY_READ for the kernel_read_file() funcs.
    uint32_t def = NSIMA_MAY_READ;
    if (*f == Func::kMmapCheck || *f == Func::kMmapCheckReqprot || *f == Func::kBprmCheck ||
        *f == Func::kCredsCheck)
      def = NSIMA_MAY_EXEC;
    ev.hook = Hook::kFileOpen;
    ev.mask = mask.value_or(def);
    auto all = accesses_of(ev);  // one FILE_CHECK access carrying the file and creds
    Access a = all.front();
    a.func = *f;
    return std::vector<Access>{a};
  }
  if (!hook_s) return make_error(EINVAL, "event needs a 'func' or a 'hook' field", "event");
  if (*hook_s == "file_open") {
    ev.hook = Hook::kFileOpen;
    if (!mask) return make_error(EINVAL, "a file_open event needs 'mask'", "event");
    ev.mask = *mask;
  } else if (*hook_s == "mmap_file") {
    ev.hook = Hook::kMmapFile;
    ev.prot = prot.value_or(0);
    ev.reqprot = reqprot.value_or(ev.prot);
  } else if (*hook_s == "bprm_check") {
    ev.hook = Hook::kBprmCheck;
    ev.new_cred.cap_effective = ev.cred.cap_effective;
  } else {
    return make_error(EINVAL, "unknown hook '" + *hook_s + "' (file_open, mmap_file, bprm_check)",
                      "event");
  }
  return accesses_of(ev);
}

std::string yes_no(bool b) { return b ? "yes" : "no"; }

std::string rule_ref(const Policy& p, int idx) {
  if (idx < 0) return "no rule";
  const Rule& r = p.rule(static_cast<size_t>(idx));
  return p.filename() + ":" + std::to_string(r.line) + ": " + trim(r.text);
}

json rule_json(const Policy& p, int idx) {
  if (idx < 0) return nullptr;
  const Rule& r = p.rule(static_cast<size_t>(idx));
  return json{{"index", idx},
              {"file", p.filename()},
              {"line", r.line},
              {"text", trim(r.text)},
              {"action", std::string(action_name(r.action))}};
}

std::string access_line(const Access& a, const std::string& path) {
  std::string s = "access " + std::string(func_name(a.func)) + " mask=" + mask_string(a.mask) +
                  " uid=" + std::to_string(a.uid) + " euid=" + std::to_string(a.euid) +
                  " suid=" + std::to_string(a.suid) + " gid=" + std::to_string(a.gid) +
                  " egid=" + std::to_string(a.egid) + " sgid=" + std::to_string(a.sgid) +
                  " cap_setuid=" + yes_no(a.cap_setuid) + " cap_setgid=" + yes_no(a.cap_setgid) +
                  " fowner=" + std::to_string(a.fowner) + " fgroup=" + std::to_string(a.fgroup) +
                  " fsmagic=" + hex64(a.fsmagic) + " fsname=" + a.fsname +
                  " fsuuid=" + format_uuid(a.fsuuid);
  if (!path.empty()) s += " path=" + path;
  return s;
}

std::string decision_line(const Decision& d) {
  std::string algos;
  for (const auto& n : d.appraise_algos) algos += (algos.empty() ? "" : ",") + n;
  return "measure=" + yes_no(d.measure) + " appraise=" + yes_no(d.appraise) +
         " audit=" + yes_no(d.audit) + " hash=" + yes_no(d.hash) +
         " pcr=" + (d.pcr < 0 ? std::string("default") : std::to_string(d.pcr)) +
         " template=" + (d.template_name.empty() ? std::string("default") : d.template_name) +
         " digsig_required=" + yes_no(d.digsig_required) +
         " permit_directio=" + yes_no(d.permit_directio) +
         " modsig_allowed=" + yes_no(d.modsig_allowed) +
         " verity_required=" + yes_no(d.verity_required) +
         " appraise_algos=" + (algos.empty() ? std::string("any") : algos) +
         " cred_dependent=" + yes_no(d.cred_dependent);
}

std::vector<std::string> access_notes(const Policy& p, const Access& a, const Decision& d) {
  std::vector<std::string> notes;
  if (!func_observable(a.func))
    notes.push_back("nsima never sees " + std::string(func_name(a.func)) +
                    " accesses; this is what the kernel would decide");
  if (d.hash_rule >= 0 && !d.hash &&
      p.rule(static_cast<size_t>(d.hash_rule)).action == Action::kHash)
    notes.push_back("a hash rule matched but a later appraise rule takes precedence");
  if (d.cred_dependent)
    notes.push_back("a rule depends on the credentials: other users may be decided differently");
  return notes;
}

}  // namespace

int cmd_check(const std::string& file, std::ostream& out, std::ostream& err) {
  auto text = read_source(file);
  if (!text) {
    err << text.error().to_string() << "\n";
    return 1;
  }
  auto errors = check_rules(*text, file);
  if (!errors.empty()) {
    for (const auto& e : errors) err << e.to_string() << "\n";
    err << errors.size() << (errors.size() == 1 ? " error" : " errors") << "\n";
    return 1;
  }
  auto policy = Policy::parse(*text, file);
  if (!policy) {  // cannot happen after check_rules() found nothing, but stay honest
    err << policy.error().to_string() << "\n";
    return 1;
  }
  out << policy->size() << (policy->size() == 1 ? " rule OK" : " rules OK") << "\n";
  for (const auto& n : notes_for(*policy)) out << n << "\n";
  return 0;
}

int cmd_explain(const std::string& file, const std::string& event_json, std::ostream& out,
                std::ostream& err, bool as_json) {
  auto text = read_source(file);
  if (!text) {
    err << text.error().to_string() << "\n";
    return 1;
  }
  auto policy = Policy::parse(*text, file);
  if (!policy) {
    err << policy.error().to_string() << "\n";
    return 1;
  }
  std::string path;
  auto accesses = accesses_from_json(event_json, &path);
  if (!accesses) {
    err << accesses.error().to_string() << "\n";
    return 2;
  }

  json doc = {{"policy", file}, {"accesses", json::array()}};
  if (!path.empty()) doc["path"] = path;
  if (accesses->empty()) {
    if (as_json)
      out << doc.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
    else
      out << "no IMA func applies to this event (an mmap without PROT_EXEC is never judged)\n";
    return 0;
  }
  for (const Access& a : *accesses) {
    Decision d = policy->evaluate(a);
    std::string f(func_name(a.func));
    auto notes = access_notes(*policy, a, d);
    if (as_json) {
      json aj = {{"func", f},
                 {"mask", a.mask},
                 {"uid", a.uid},
                 {"euid", a.euid},
                 {"suid", a.suid},
                 {"gid", a.gid},
                 {"egid", a.egid},
                 {"sgid", a.sgid},
                 {"cap_setuid", a.cap_setuid},
                 {"cap_setgid", a.cap_setgid},
                 {"fowner", a.fowner},
                 {"fgroup", a.fgroup},
                 {"fsmagic", hex64(a.fsmagic)},
                 {"fsname", a.fsname},
                 {"fsuuid", format_uuid(a.fsuuid)},
                 {"rules",
                  {{"measure", rule_json(*policy, d.measure_rule)},
                   {"appraise", rule_json(*policy, d.appraise_rule)},
                   {"audit", rule_json(*policy, d.audit_rule)},
                   {"hash", rule_json(*policy, d.hash_rule)}}},
                 {"decision",
                  {{"measure", d.measure},
                   {"appraise", d.appraise},
                   {"audit", d.audit},
                   {"hash", d.hash},
                   {"pcr", d.pcr < 0 ? json(nullptr) : json(d.pcr)},
                   {"template", d.template_name.empty() ? json(nullptr) : json(d.template_name)},
                   {"digsig_required", d.digsig_required},
                   {"permit_directio", d.permit_directio},
                   {"modsig_allowed", d.modsig_allowed},
                   {"verity_required", d.verity_required},
                   {"appraise_algos", d.appraise_algos},
                   {"cred_dependent", d.cred_dependent}}},
                 {"notes", notes}};
      doc["accesses"].push_back(std::move(aj));
      continue;
    }
    out << access_line(a, path) << "\n";
    out << f << " measure: " << rule_ref(*policy, d.measure_rule) << "\n";
    out << f << " appraise: " << rule_ref(*policy, d.appraise_rule) << "\n";
    out << f << " audit: " << rule_ref(*policy, d.audit_rule) << "\n";
    out << f << " hash: " << rule_ref(*policy, d.hash_rule) << "\n";
    out << f << " decision: " << decision_line(d) << "\n";
    for (const auto& n : notes) out << f << " note: " << n << "\n";
  }
  if (as_json) out << doc.dump(-1, ' ', false, json::error_handler_t::replace) << "\n";
  return 0;
}

int cmd_show_builtin(const std::string& name, std::ostream& out, std::ostream& err) {
  std::string_view text = builtin_text(name);
  if (text.empty()) {
    err << "unknown builtin policy '" << name << "'; known:";
    for (const auto& n : builtin_names()) err << " " << n;
    err << "\n";
    return 1;
  }
  out << text;
  return 0;
}

}  // namespace nsima::policy
