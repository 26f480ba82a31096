// SPDX-License-Identifier: Apache-2.0
#include "control/schema.h"

#include "nsima/control_protocol.h"

namespace nsima::control {

namespace {

using nlohmann::json;

FieldSpec field(std::string_view name, FieldType type, bool required,
                std::vector<std::string_view> one_of = {}) {
  return FieldSpec{name, type, required, std::move(one_of), false};
}
FieldSpec required_string(std::string_view name) { return field(name, FieldType::kString, true); }
FieldSpec string(std::string_view name) { return field(name, FieldType::kString, false); }
FieldSpec string_or_empty(std::string_view name) {
  FieldSpec f = string(name);
  f.may_be_empty = true;
  return f;
}

CommandSpec command(std::string_view name, std::vector<FieldSpec> fields = {},
                    std::vector<std::string_view> exclusive = {}, bool one_required = false) {
  return CommandSpec{name, std::move(fields), std::move(exclusive), one_required};
}

std::string dq(std::string_view s) { return "\"" + std::string(s) + "\""; }

// "a", "a or b", "a, b or c" (each quoted).
std::string alternatives(const std::vector<std::string_view>& v) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) {
    if (i) out += i + 1 == v.size() ? " or " : ", ";
    out += dq(v[i]);
  }
  return out;
}

const char* type_text(FieldType t) {
  switch (t) {
    case FieldType::kString:
      return "a string";
    case FieldType::kBool:
      return "a boolean";
    case FieldType::kUint:
      return "a non-negative integer";
    case FieldType::kStrings:
      return "an array of strings";
  }
  return "?";
}

// What the request carried, for "got ...": the JSON type, and the value for short scalars.
std::string got(const json& v) {
  std::string t = v.type_name();
  if (v.is_number()) return t + " " + v.dump();
  return t;
}

Error bad(std::string msg, std::string_view field = {}) {
  return Error{EINVAL, std::move(msg), std::string(field)};
}

Result<void> check_field(const FieldSpec& f, const json& v) {
  const std::string name = dq(f.name);
  switch (f.type) {
    case FieldType::kString: {
      if (!v.is_string())
        return tl::unexpected(bad("field " + name + " must be a string, got " + got(v), f.name));
      const auto& s = v.get_ref<const std::string&>();
      if (s.empty() && !f.may_be_empty)
        return tl::unexpected(bad("field " + name + " must not be empty", f.name));
      if (!f.one_of.empty()) {
        bool ok = false;
        for (auto a : f.one_of) ok |= a == s;
        if (!ok)
          return tl::unexpected(bad(
              "field " + name + " must be " + alternatives(f.one_of) + ", got " + dq(s),
              f.name));
      }
      return {};
    }
    case FieldType::kBool:
      if (!v.is_boolean())
        return tl::unexpected(bad("field " + name + " must be a boolean, got " + got(v), f.name));
      return {};
    case FieldType::kUint:
      if (!v.is_number_unsigned() && !(v.is_number_integer() && v.get<int64_t>() >= 0))
        return tl::unexpected(
            bad("field " + name + " must be a non-negative integer, got " + got(v), f.name));
      return {};
    case FieldType::kStrings:
      if (!v.is_array())
        return tl::unexpected(bad("field " + name + " must be an array of strings, got " + got(v),
                                  f.name));
      for (size_t i = 0; i < v.size(); ++i)
        if (!v[i].is_string() || v[i].get_ref<const std::string&>().empty())
          return tl::unexpected(bad("field " + name + " item " + std::to_string(i + 1) +
                                        " must be a non-empty string, got " + got(v[i]),
                                    f.name));
      return {};
  }
  return {};
}

}  // namespace

const std::vector<CommandSpec>& command_specs() {
  // Keep in step with include/nsima/control_protocol.h.
  static const std::vector<CommandSpec> kSpecs = {
      command(kCmdHello,
              {field(kFieldVersion, FieldType::kUint, true), string(kFieldClient)}),
      command(kCmdStatus),
      command(kCmdWatch, {required_string(kFieldCgroup)}),
      command(kCmdVerdict,
              {required_string(kFieldCgroup), required_string(kFieldPath),
               field(kFieldVerdict, FieldType::kString, true, {"allow", "deny"}),
               string(kFieldRoot)}),
      // ns_create: "policy_text": "" is a namespace without policy; neither it nor "builtin":
      // nsimad's default container policy.
      command(kCmdNsCreate,
              {required_string(kFieldCgroup), string_or_empty(kFieldPolicyText), string(kFieldPolicyName),
               string(kFieldBuiltin), field(kFieldVtpm, FieldType::kBool, false),
               field(kFieldAppraise, FieldType::kString, false, {"enforce", "log", "off"}),
               field(kFieldCerts, FieldType::kStrings, false), string(kFieldKeys),
               string(kFieldRootfs), string(kFieldContainer),
               field(kFieldModelMode, FieldType::kString, false, {"learn", "seal", "enforce"}),
               string(kFieldModelText), string(kFieldModelName), string(kFieldModelAgent),
               field(kFieldModelAgentFail, FieldType::kString, false, {"closed", "open"}),
               field(kFieldModelAgentTimeout, FieldType::kUint, false),
               field(kFieldTemplate, FieldType::kString, false, {"ima-ng", "ima-sig", "ima"}),
               field(kFieldHash, FieldType::kString, false,
                     {"sha1", "sha256", "sha384", "sha512"})},
              {kFieldPolicyText, kFieldBuiltin}),
      command(kCmdNsList),
      command(kCmdNsDelete, {required_string(kFieldNs)}),
      command(kCmdPolicyLoad,
              {required_string(kFieldNs), string(kFieldPolicyText), string(kFieldPolicyName),
               string(kFieldBuiltin)},
              {kFieldPolicyText, kFieldBuiltin}, /*one_required=*/true),
      command(kCmdPolicyShow, {required_string(kFieldNs)}),
      command(kCmdLog,
              {required_string(kFieldNs),
               field(kFieldFormat, FieldType::kString, false, {kFormatAscii, kFormatBinary}),
               field(kFieldFollow, FieldType::kBool, false),
               field(kFieldFrom, FieldType::kUint, false)}),
      command(kCmdPcr, {required_string(kFieldNs), field(kFieldAll, FieldType::kBool, false)}),
      command(kCmdQuote, {required_string(kFieldNs), required_string(kFieldNonce)}),
      command(kCmdKeysAdd,
              {required_string(kFieldNs), field(kFieldCerts, FieldType::kStrings, true)}),
      command(kCmdKeysList, {required_string(kFieldNs)}),
      command(kCmdKeysRemove, {required_string(kFieldNs), required_string(kFieldKeyid)}),
      command(kCmdDigestsLoad,
              {required_string(kFieldNs), field(kFieldManifest, FieldType::kString, true),
               string(kFieldName), string(kFieldSig)}),
      command(kCmdDigestsRevoke, {required_string(kFieldNs), required_string(kFieldDigest)}),
      command(kCmdAppraiseMode,
              {required_string(kFieldNs),
               field(kFieldMode, FieldType::kString, true, {"enforce", "log", "off"})}),
      command(kCmdAppraise, {required_string(kFieldNs), required_string(kFieldRoot)}),
      command(kCmdAudit,
              {required_string(kFieldNs), field(kFieldFollow, FieldType::kBool, false),
               field(kFieldFrom, FieldType::kUint, false)}),
      command(kCmdModelMode,
              {required_string(kFieldNs),
               field(kFieldMode, FieldType::kString, true, {"learn", "seal", "enforce"})}),
      command(kCmdModelLoad,
              {required_string(kFieldNs), required_string(kFieldModelText),
               string(kFieldModelName),
               field(kFieldMode, FieldType::kString, false, {"seal", "enforce"})}),
      command(kCmdModelSave, {required_string(kFieldNs)}),
      command(kCmdModelState,
              {required_string(kFieldNs), field(kFieldExtend, FieldType::kBool, false)}),
      command(kCmdModelForensics, {required_string(kFieldNs)}),
      // a verifier's (nsimactl verify / vtpm)
      command(kCmdVtpmCa),
      command(kCmdVtpmIdentity, {required_string(kFieldNs)}),
      command(kCmdVtpmActivate, {required_string(kFieldNs), required_string(kFieldIdObject),
                                 required_string(kFieldEncSecret)}),
  };
  return kSpecs;
}

const CommandSpec* find_command(std::string_view name) {
  for (const auto& c : command_specs())
    if (c.name == name) return &c;
  return nullptr;
}

Result<void> validate_request(const json& req) {
  if (!req.is_object())
    return tl::unexpected(bad("bad request: expected a JSON object with a \"cmd\" string, got " +
                              std::string(req.type_name())));
  auto cmd_it = req.find(kFieldCmd);
  if (cmd_it == req.end())
    return tl::unexpected(bad("bad request: missing field \"cmd\" (a string)", kFieldCmd));
  if (!cmd_it->is_string())
    return tl::unexpected(
        bad("field \"cmd\" must be a string, got " + got(*cmd_it), kFieldCmd));
  const auto& cmd = cmd_it->get_ref<const std::string&>();
  const CommandSpec* spec = find_command(cmd);
  if (!spec) {
    std::string names;
    for (const auto& c : command_specs()) names += (names.empty() ? "" : ", ") + std::string(c.name);
    return tl::unexpected(bad("unknown command " + dq(cmd) + " (commands: " + names + ")",
                              kFieldCmd));
  }
  for (const auto& [key, value] : req.items()) {
    if (key == kFieldCmd) continue;
    const FieldSpec* f = nullptr;
    for (const auto& fs : spec->fields)
      if (fs.name == key) f = &fs;
    if (!f) {
      std::string names;
      for (const auto& fs : spec->fields)
        names += (names.empty() ? "" : ", ") + std::string(fs.name);
      return tl::unexpected(bad("unknown field " + dq(key) + " in a " + dq(cmd) +
                                    " request (" +
                                    (names.empty() ? "it takes no fields" : "fields: " + names) +
                                    ")",
                                key));
    }
    if (auto r = check_field(*f, value); !r) return r;
  }
  for (const auto& f : spec->fields)
    if (f.required && !req.contains(f.name))
      return tl::unexpected(
          bad("missing field " + dq(f.name) + " (" + type_text(f.type) + ")", f.name));
  if (!spec->exclusive.empty()) {
    std::vector<std::string_view> given;
    for (auto name : spec->exclusive)
      if (req.contains(name)) given.push_back(name);
    if (given.size() > 1)
      return tl::unexpected(bad("fields " + dq(given[0]) + " and " + dq(given[1]) +
                                    " exclude each other",
                                given[1]));
    if (given.empty() && spec->one_required) {
      std::string names;
      for (size_t i = 0; i < spec->exclusive.size(); ++i)
        names += (i ? " or " : "") + dq(spec->exclusive[i]);
      return tl::unexpected(bad("missing field " + names, spec->exclusive[0]));
    }
  }
  if (req.contains(kFieldModelText) && req.value(kFieldCmd, "") == kCmdNsCreate &&
      !req.contains(kFieldModelMode))
    return tl::unexpected(bad("field \"model_text\" needs \"model_mode\" (learn, seal or "
                              "enforce)",
                              kFieldModelText));
  if (req.contains(kFieldModelName) && !req.contains(kFieldModelText))
    return tl::unexpected(bad("field \"model_name\" names a \"model_text\", which is missing",
                              kFieldModelName));
  if (req.contains(kFieldPolicyName) && !req.contains(kFieldPolicyText))
    return tl::unexpected(bad("field \"policy_name\" names a \"policy_text\", which is missing",
                              kFieldPolicyName));
  return {};
}

}  // namespace nsima::control
