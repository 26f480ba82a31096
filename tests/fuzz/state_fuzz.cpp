// SPDX-License-Identifier: Apache-2.0
// libFuzzer target for the state nsimad reads back at start-up from its state directory
// (daemon/ns): ns.json (load_ns_configs, whose policy_text is then parsed), the namespace id mark
// next-id (Registry::init) and the operator's overrides.json (VerdictWriter::load). Any byte
// string is cut at its NUL bytes into these three files (ns.json is written for the namespaces
// "host" and "2"). Invariants: nothing throws; what loads is what the loader promises (a restored
// config's name is its directory's and its id is not 0; an accepted mark is > 1 and is the next
// id issued, or ENOSPC once the ids are used up); what loads round-trips through the writer of
// the same file. Invariant violations trap so that libFuzzer records the input. Run by
// run_fuzz.sh (ctest fuzz.state).
#include <unistd.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <vector>

#include "common/log.h"
#include "ns/ns_config.h"
#include "ns/registry.h"
#include "ns/verdict_writer.h"
#include "policy/policy.h"

namespace {

namespace fs = std::filesystem;
using namespace nsima::ns;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

fs::path* root = nullptr;

void write_file(const fs::path& p, std::string_view s) {
  fs::create_directories(p.parent_path());
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(s.data(), static_cast<std::streamsize>(s.size()));
  check(static_cast<bool>(out));
}

bool same(const NsConfig& a, const NsConfig& b) {
  return a.name == b.name && a.id == b.id && a.cgroup == b.cgroup && a.vtpm == b.vtpm &&
         a.policy_origin == b.policy_origin && a.policy_text == b.policy_text &&
         a.boot_id == b.boot_id && a.drops_seen == b.drops_seen &&
         a.unresolved_seen == b.unresolved_seen &&
         a.unattributed_drops_seen == b.unattributed_drops_seen &&
         a.container == b.container && a.model_mode == b.model_mode &&
         a.model_agent == b.model_agent && a.model_agent_fail == b.model_agent_fail &&
         a.model_agent_timeout_ms == b.model_agent_timeout_ms;
}

void ns_configs(std::string_view text) {
  const fs::path state = *root / "state";
  write_file(state / "ns" / kHostNsName / "ns.json", text);
  write_file(state / "ns" / "2" / "ns.json", text);
  auto configs = load_ns_configs(state.string());
  check(configs.size() <= 2);
  for (const auto& c : configs) {
    check(!c.name.empty() && c.id != 0 && (c.name == kHostNsName || c.name == "2"));
    if (!c.policy_text.empty()) (void)nsima::policy::Policy::parse(c.policy_text, c.policy_origin);
    const fs::path again = *root / "again";
    fs::remove_all(again);
    auto w = save_ns_config(again.string(), c);
    check(w.has_value());
    auto back = load_ns_configs(again.string());
    check(back.size() == 1 && same(back[0], c));
  }
}

void id_mark(std::string_view text) {
  const fs::path state = *root / "state";
  write_file(state / "next-id", text);
  Registry reg(RegistryOptions{(*root / "cg").string(), state.string(), 23}, nullptr);
  if (!reg.init(1)) return;
  auto id = reg.allocate_id();
  if (!id) {  // an accepted mark of UINT32_MAX: every id is used up, which must say so
    check(id.error().code == ENOSPC);
    return;
  }
  check(*id > kHostNsId);
  std::ifstream in(state / "next-id");
  uint64_t next = 0;
  check(static_cast<bool>(in >> next) && next == uint64_t{*id} + 1);
}

void overrides(std::string_view text) {
  const fs::path state = *root / "state";
  write_file(state / "overrides.json", text);
  VerdictWriter w(nullptr, state.string());
  if (!w.load()) return;
  auto before = w.overrides();
  const uint32_t subtree[] = {7};
  const FileRef f{1, 2, 3};
  bool known = false;
  for (auto& o : before) known |= o.ns_id == 7 && o.file == f;
  check(w.deny(7, f, nsima::Stamp{}, "/fuzz", subtree).has_value());
  VerdictWriter again(nullptr, state.string());
  check(again.load().has_value());
  auto after = again.overrides();
  check(after.size() == before.size() + (known ? 0 : 1));
  for (size_t i = 0; i < before.size(); ++i) {
    check(after[i].ns_id == before[i].ns_id && after[i].file == before[i].file &&
          after[i].path == before[i].path);
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  nsima::set_log_level("off");
  const char* tmp = std::getenv("TMPDIR");
  std::string tmpl = std::string(tmp ? tmp : "/tmp") + "/nsima-state-fuzz-XXXXXX";
  check(::mkdtemp(tmpl.data()) != nullptr);
  root = new fs::path(tmpl);
  std::atexit([] { fs::remove_all(*root); });
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  std::vector<std::string_view> parts;
  for (size_t at = 0;;) {
    size_t nul = in.find('\0', at);
    parts.push_back(in.substr(at, nul == std::string_view::npos ? std::string_view::npos : nul - at));
    if (nul == std::string_view::npos || parts.size() == 3) break;
    at = nul + 1;
  }
  parts.resize(3);
  fs::remove_all(*root / "state");
  ns_configs(parts[0]);
  id_mark(parts[1]);
  overrides(parts[2]);
  return 0;
}
