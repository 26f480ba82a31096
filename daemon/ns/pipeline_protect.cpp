// SPDX-License-Identifier: Apache-2.0
// Self-protection's reports (bpf/protect.bpf.c): every refusal the kernel reports becomes a
// violation entry in the host list and an audit line in the host's audit log and in the
// attacker's namespace's. The kernel reports at most NSIMA_PROTECT_BURST refusals per
// (namespace, kind) per second; what it only counted (over that rate, or no ring space) is one
// host violation `nsima:protect-unreported:N` per tick that saw new ones.
#include <atomic>
#include <cctype>
#include <string>

#include "common/log.h"
#include "ns/pipeline.h"
#include "nsima/protect_abi.h"

namespace nsima::ns {

namespace {

const char* kind_name(uint32_t k) {
  switch (k) {
    case NSIMA_PROTECT_KIND_SIGNAL: return "signal";
    case NSIMA_PROTECT_KIND_PTRACE: return "ptrace";
    case NSIMA_PROTECT_KIND_BPF: return "bpf";
    case NSIMA_PROTECT_KIND_FILE: return "file";
    case NSIMA_PROTECT_KIND_CGROUP: return "cgroup";
  }
  return "unknown";
}

const char* op_name(uint32_t op) {
  switch (op) {
    case NSIMA_PROTECT_OP_WRITE: return "write";
    case NSIMA_PROTECT_OP_UNLINK: return "unlink";
    case NSIMA_PROTECT_OP_RENAME: return "rename";
    case NSIMA_PROTECT_OP_SETATTR: return "setattr";
    case NSIMA_PROTECT_OP_LINK: return "link";
    case NSIMA_PROTECT_OP_RMDIR: return "rmdir";
    case NSIMA_PROTECT_OP_CREATE: return "create";
  }
  return "op";
}

const char* obj_name(uint32_t t) {
  switch (t) {
    case NSIMA_PROTECT_OBJ_MAP: return "map";
    case NSIMA_PROTECT_OBJ_PROG: return "prog";
    case NSIMA_PROTECT_OBJ_LINK: return "link";
  }
  return "object";
}

// A name chosen by the attacker (a file or task name) as one token of a list entry's name.
std::string token(const std::string& s) {
  std::string out;
  for (char c : s.substr(0, 64))
    out += (std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '-' || c == '_')
               ? c
               : '_';
  return out.empty() ? "-" : out;
}

}  // namespace

bool Pipeline::protect_event(const Event& ev) {
  counters_.protect_events++;
  const uint32_t kind = ev.mask, detail = ev.prot, target = ev.reqprot;
  std::string what;  // after "nsima:protect:KIND:ns-N:"
  nlohmann::json rec = {{"kind", "protect"},     {"result", "refused"},
                        {"attack", kind_name(kind)}, {"uid", ev.cred.uid},
                        {"attacker_ns", ev.ns_id}};
  switch (kind) {
    case NSIMA_PROTECT_KIND_SIGNAL:
      what = "sig-" + std::to_string(detail) + ":pid-" + std::to_string(target) + ":" +
             token(ev.path);
      rec["signal"] = detail;
      rec["target_pid"] = target;
      break;
    case NSIMA_PROTECT_KIND_PTRACE:
      what = "mode-" + std::to_string(detail) + ":pid-" + std::to_string(target) + ":" +
             token(ev.path);
      rec["ptrace_mode"] = detail;
      rec["target_pid"] = target;
      break;
    case NSIMA_PROTECT_KIND_BPF:
      what = std::string(obj_name(detail)) + "-" + std::to_string(target);
      rec["object"] = obj_name(detail);
      rec["object_id"] = target;
      break;
    case NSIMA_PROTECT_KIND_FILE:
      what = std::string(op_name(detail)) + ":" + token(ev.path);
      rec["op"] = op_name(detail);
      rec["dev"] = ev.kdev;
      rec["ino"] = ev.ino;
      break;
    case NSIMA_PROTECT_KIND_CGROUP:
      what = "cgroup-" + std::to_string(ev.ino) + ":" + token(ev.path);
      rec["target_cgroup"] = ev.ino;
      break;
    default:
      what = "kind-" + std::to_string(kind);
  }
  const std::string name =
      "nsima:protect:" + std::string(kind_name(kind)) + ":ns-" + std::to_string(ev.ns_id) + ":" + what;
  Namespace& host = reg_.host();
  rec_->violation(&host, name);
  audit(&host, ev, rec);
  Namespace* attacker = reg_.find(ev.ns_id);
  if (attacker && attacker != &host) audit(attacker, ev, rec);
  static std::atomic<uint64_t> logged{0};
  if (logged.fetch_add(1) < 20)
    logger("protect")->warn("refused: {} (pid {} {}, namespace {})", name, ev.tgid, ev.comm,
                            ev.ns_id);
  return false;
}

void Pipeline::check_protect(const capture::Stats& st) {
  const uint64_t unreported = st.protect_suppressed + st.protect_dropped;
  if (unreported <= protect_unreported_seen_) return;
  rec_->violation(&reg_.host(), "nsima:protect-unreported:" +
                                    std::to_string(unreported - protect_unreported_seen_));
  protect_unreported_seen_ = unreported;
}

}  // namespace nsima::ns
