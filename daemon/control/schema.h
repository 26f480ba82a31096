// SPDX-License-Identifier: Apache-2.0
// The one place where control requests are checked before a handler reads them: per command, the
// fields it takes, their JSON types, which are required, and the values a field may take. A
// request that does not fit is answered with one sentence naming the field, e.g.
//   field "vtpm" must be a boolean, got string
//   unknown field "vTPM" in a "ns_create" request (fields: cgroup, policy_text, ...)
// so no handler ever meets a value of the wrong type (which nlohmann::json would turn into an
// exception, answered as "internal error: [json.exception...]"). The commands and fields are
// documented in include/nsima/control_protocol.h; the table in schema.cpp must match it.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/result.h"

namespace nsima::control {

enum class FieldType {
  kString,  // a non-empty JSON string unless `may_be_empty`
  kBool,    // true / false
  kUint,    // an integer >= 0 (fits uint64)
  kStrings, // a JSON array of non-empty strings
};

struct FieldSpec {
  std::string_view name;
  FieldType type = FieldType::kString;
  bool required = false;
  std::vector<std::string_view> one_of;  // allowed values of a string; empty = any
  bool may_be_empty = false;
};

struct CommandSpec {
  std::string_view name;
  std::vector<FieldSpec> fields;  // "cmd" is implied
  // At most one of these may be given; with `one_required`, exactly one.
  std::vector<std::string_view> exclusive;
  bool one_required = false;
};

// Every command nsimad answers, in the order the protocol header lists them.
const std::vector<CommandSpec>& command_specs();
const CommandSpec* find_command(std::string_view name);

// Checks `req` against its command's schema. On error, Error::message is the sentence to answer
// (EINVAL); Error::where names the field ("" for errors about the request as a whole).
Result<void> validate_request(const nlohmann::json& req);

}  // namespace nsima::control
