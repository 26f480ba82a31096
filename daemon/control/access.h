// SPDX-License-Identifier: Apache-2.0
// Who may use which control command: root every command, a member of the configured read-only
// group ([control] read_group) only the commands that read (they change nothing in nsimad, its
// namespaces, their policies, keys, verdicts or files). A command not listed here is root only,
// so a new command is never readable by accident.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace nsima::control {

enum class Access { kFull, kRead };

bool is_read_command(std::string_view cmd);
// The reading commands, for messages and docs.
const std::vector<std::string_view>& read_commands();
const char* access_name(Access a);  // "full" | "read"

}  // namespace nsima::control
