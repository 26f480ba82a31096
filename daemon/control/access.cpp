// SPDX-License-Identifier: Apache-2.0
#include "control/access.h"

#include "nsima/control_protocol.h"

namespace nsima::control {

const std::vector<std::string_view>& read_commands() {
  // watch reads only: it never creates a namespace (an unregistered cgroup is an error).
  static const std::vector<std::string_view> kRead = {
      kCmdHello, kCmdStatus, kCmdNsList,   kCmdPolicyShow, kCmdLog,
      kCmdPcr,   kCmdQuote,  kCmdAudit,    kCmdKeysList,   kCmdWatch,
      // a verifier's requests: they read the vTPM's identity and answer its challenge
      kCmdVtpmCa, kCmdVtpmIdentity, kCmdVtpmActivate};
  return kRead;
}

bool is_read_command(std::string_view cmd) {
  for (auto c : read_commands())
    if (c == cmd) return true;
  return false;
}

const char* access_name(Access a) { return a == Access::kFull ? "full" : "read"; }

}  // namespace nsima::control
