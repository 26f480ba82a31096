// SPDX-License-Identifier: Apache-2.0
// Control requests are checked against their command's schema before a handler reads them: a
// field of the wrong type, an unknown field, a missing or empty one, a value outside its set and
// conflicting fields are each answered with one sentence naming the field, never with
// "internal error: [json.exception...]". Checked on the validator (every field of every command),
// through handle_request() with no pipeline at all (so nothing reaches a handler), and through a
// real control socket.
#include "control/schema.h"

#include <sys/socket.h>
#include <unistd.h>

#include <filesystem>

#include <gtest/gtest.h>

#include "control/handlers.h"
#include "control/server.h"
#include "nsima/control_protocol.h"

namespace nsima::control {
namespace {

using nlohmann::json;

std::string error_of(const json& req) {
  auto r = validate_request(req);
  return r ? std::string("(accepted)") : r.error().message;
}

// A request of `spec` that passes: every required field with a valid value.
json valid_request(const CommandSpec& spec) {
  json req{{kFieldCmd, spec.name}};
  for (const auto& f : spec.fields) {
    if (!f.required) continue;
    switch (f.type) {
      case FieldType::kString:
        req[std::string(f.name)] = f.one_of.empty() ? "x" : std::string(f.one_of.front());
        break;
      case FieldType::kBool:
        req[std::string(f.name)] = true;
        break;
      case FieldType::kUint:
        req[std::string(f.name)] = 1;
        break;
      case FieldType::kStrings:
        req[std::string(f.name)] = json::array({"x"});
        break;
    }
  }
  if (spec.one_required) req[std::string(spec.exclusive.front())] = "x";
  return req;
}

TEST(ControlSchema, EveryCommandHasASchemaAndItsMinimalRequestPasses) {
  for (const char* cmd : {kCmdHello, kCmdStatus, kCmdWatch, kCmdVerdict, kCmdNsCreate, kCmdNsList,
                          kCmdNsDelete, kCmdPolicyLoad, kCmdPolicyShow, kCmdLog, kCmdPcr,
                          kCmdQuote, kCmdKeysAdd, kCmdKeysList, kCmdKeysRemove, kCmdDigestsLoad,
                          kCmdDigestsRevoke, kCmdAppraiseMode, kCmdAppraise, kCmdAudit,
                          kCmdModelMode, kCmdModelLoad, kCmdModelSave, kCmdModelState,
                          kCmdModelForensics, kCmdVtpmCa, kCmdVtpmIdentity, kCmdVtpmActivate}) {
    const CommandSpec* spec = find_command(cmd);
    ASSERT_NE(spec, nullptr) << cmd;
    EXPECT_EQ(error_of(valid_request(*spec)), "(accepted)") << cmd;
  }
  EXPECT_EQ(command_specs().size(), 28u);
}

TEST(ControlSchema, WrongTypeNamesTheFieldAndWhatItGot) {
  size_t checked = 0;
  for (const auto& spec : command_specs()) {
    for (const auto& f : spec.fields) {
      json req = valid_request(spec);
      const std::string name(f.name);
      const std::string field = "field \"" + name + "\" must be ";
      switch (f.type) {
        case FieldType::kString:
          req[name] = 5;
          EXPECT_EQ(error_of(req), field + "a string, got number 5") << spec.name;
          req[name] = json::array({"x"});
          EXPECT_EQ(error_of(req), field + "a string, got array") << spec.name;
          break;
        case FieldType::kBool:
          req[name] = "yes";
          EXPECT_EQ(error_of(req), field + "a boolean, got string") << spec.name;
          req[name] = 1;
          EXPECT_EQ(error_of(req), field + "a boolean, got number 1") << spec.name;
          break;
        case FieldType::kUint:
          req[name] = -1;
          EXPECT_EQ(error_of(req), field + "a non-negative integer, got number -1") << spec.name;
          req[name] = 1.5;
          EXPECT_EQ(error_of(req), field + "a non-negative integer, got number 1.5") << spec.name;
          req[name] = "7";
          EXPECT_EQ(error_of(req), field + "a non-negative integer, got string") << spec.name;
          break;
        case FieldType::kStrings:
          req[name] = "x";
          EXPECT_EQ(error_of(req), field + "an array of strings, got string") << spec.name;
          req[name] = json::array({"x", 3});
          EXPECT_EQ(error_of(req), "field \"" + name + "\" item 2 must be a non-empty string, got number 3")
              << spec.name;
          break;
      }
      req[name] = nullptr;
      EXPECT_NE(error_of(req).find("field \"" + name + "\" must be "), std::string::npos)
          << spec.name << " " << name;
      EXPECT_NE(error_of(req).find(", got null"), std::string::npos) << spec.name << " " << name;
      ++checked;
    }
  }
  EXPECT_GE(checked, 22u);
  // The case the issue names.
  EXPECT_EQ(error_of({{"cmd", "ns_create"}, {"cgroup", "/sys/fs/cgroup/c"}, {"vtpm", "yes"}}),
            "field \"vtpm\" must be a boolean, got string");
}

TEST(ControlSchema, UnknownMissingEmptyAndOutOfSetFields) {
  EXPECT_EQ(error_of({{"cmd", "log"}, {"ns", "2"}, {"fromm", 1}}),
            "unknown field \"fromm\" in a \"log\" request (fields: ns, format, follow, from)");
  EXPECT_EQ(error_of({{"cmd", "status"}, {"verbose", true}}),
            "unknown field \"verbose\" in a \"status\" request (it takes no fields)");
  // quote no longer takes a directory: nsimactl writes the files itself.
  EXPECT_EQ(error_of({{"cmd", "quote"}, {"ns", "2"}, {"nonce", "00"}, {"dir", "/tmp/q"}}),
            "unknown field \"dir\" in a \"quote\" request (fields: ns, nonce)");
  EXPECT_EQ(error_of({{"cmd", "log"}}), "missing field \"ns\" (a string)");
  EXPECT_EQ(error_of({{"cmd", "verdict"}, {"cgroup", "/c"}, {"path", "/x"}}),
            "missing field \"verdict\" (a string)");
  EXPECT_EQ(error_of({{"cmd", "log"}, {"ns", ""}}), "field \"ns\" must not be empty");
  EXPECT_EQ(error_of({{"cmd", "log"}, {"ns", "2"}, {"format", "xml"}}),
            "field \"format\" must be \"ascii\" or \"binary\", got \"xml\"");
  EXPECT_EQ(error_of({{"cmd", "verdict"}, {"cgroup", "/c"}, {"path", "/x"}, {"verdict", "maybe"}}),
            "field \"verdict\" must be \"allow\" or \"deny\", got \"maybe\"");
  EXPECT_EQ(error_of({{"cmd", "ns_create"}, {"cgroup", "/c"}, {"builtin", "tcb"},
                      {"policy_text", "measure\n"}}),
            "fields \"policy_text\" and \"builtin\" exclude each other");
  EXPECT_EQ(error_of({{"cmd", "policy_load"}, {"ns", "2"}}),
            "missing field \"policy_text\" or \"builtin\"");
  EXPECT_EQ(error_of({{"cmd", "policy_load"}, {"ns", "2"}, {"builtin", "tcb"},
                      {"policy_name", "x.policy"}}),
            "field \"policy_name\" names a \"policy_text\", which is missing");
  // ns_create without a policy is a watch-only namespace: valid.
  EXPECT_EQ(error_of({{"cmd", "ns_create"}, {"cgroup", "/c"}}), "(accepted)");
  EXPECT_EQ(error_of({{"cmd", "log"}, {"ns", "2"}, {"format", "binary"}, {"follow", true},
                      {"from", 18446744073709551615ull}}),
            "(accepted)");
}

TEST(ControlSchema, RequestAsAWhole) {
  EXPECT_EQ(error_of(json::array({1})),
            "bad request: expected a JSON object with a \"cmd\" string, got array");
  EXPECT_EQ(error_of({{"ns", "2"}}), "bad request: missing field \"cmd\" (a string)");
  EXPECT_EQ(error_of({{"cmd", 3}}), "field \"cmd\" must be a string, got number 3");
  EXPECT_EQ(error_of({{"cmd", "frobnicate"}}),
            "unknown command \"frobnicate\" (commands: hello, status, watch, verdict, ns_create, "
            "ns_list, ns_delete, policy_load, policy_show, log, pcr, quote, keys_add, keys_list, "
            "keys_remove, digests_load, digests_revoke, appraise_mode, appraise, audit, "
            "model_mode, model_load, model_save, model_state, model_forensics, vtpm_ca, "
            "vtpm_identity, vtpm_activate)");
}

TEST(ControlSchema, ModelRequests) {
  EXPECT_EQ(error_of({{"cmd", "model_mode"}, {"ns", "2"}, {"mode", "forget"}}),
            "field \"mode\" must be \"learn\", \"seal\" or \"enforce\", got \"forget\"");
  EXPECT_EQ(error_of({{"cmd", "model_load"}, {"ns", "2"}, {"model_text", "x"}, {"mode", "learn"}}),
            "field \"mode\" must be \"seal\" or \"enforce\", got \"learn\"");
  EXPECT_EQ(error_of({{"cmd", "ns_create"}, {"cgroup", "/c"}, {"model_text", "x"}}),
            "field \"model_text\" needs \"model_mode\" (learn, seal or enforce)");
  EXPECT_EQ(error_of({{"cmd", "model_state"}, {"ns", "2"}, {"extend", "yes"}}),
            "field \"extend\" must be a boolean, got string");
}

// One request through handle_request() with no pipeline: a bad request must be answered before
// any handler touches it (a handler would dereference the null pipeline).
json answer(const json& req) {
  int sv[2];
  EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
  Connection server(UniqueFd{sv[0]}), client(UniqueFd{sv[1]});
  DaemonContext ctx;  // pipeline, maps, events: null
  ctx.stopping = [] { return false; };
  handle_request(ctx, req, server);
  auto line = client.read_line(1 << 20, std::chrono::seconds(5));
  EXPECT_TRUE(line) << client.error();
  return line ? json::parse(*line, nullptr, false) : json();
}

TEST(ControlSchema, HandlersAnswerTheSchemaErrorWithoutReachingThePipeline) {
  json a = answer({{"cmd", "ns_create"}, {"cgroup", "/sys/fs/cgroup/c"}, {"vtpm", "yes"}});
  EXPECT_EQ(a, json({{"ok", false}, {"error", "field \"vtpm\" must be a boolean, got string"}}));
  a = answer({{"cmd", "log"}, {"ns", "host"}, {"follow", "true"}});
  EXPECT_EQ(a.value("error", ""), "field \"follow\" must be a boolean, got string");
  a = answer({{"cmd", "policy_load"}, {"ns", "host"}, {"policy_text", 42}});
  EXPECT_EQ(a.value("error", ""), "field \"policy_text\" must be a string, got number 42");
  a = answer({{"cmd", "quote"}, {"ns", "host"}, {"nonce", json::object()}});
  EXPECT_EQ(a.value("error", ""), "field \"nonce\" must be a string, got object");
  for (const auto& spec : command_specs()) {
    json req = valid_request(spec);
    req["bogus"] = 1;
    a = answer(req);
    EXPECT_FALSE(a.value("ok", true)) << spec.name;
    EXPECT_EQ(a.value("error", "").rfind("unknown field \"bogus\" in a \"" +
                                             std::string(spec.name) + "\" request",
                                         0),
              0u)
        << a.dump();
  }
}

TEST(ControlSchema, OverTheSocket) {
  char tmpl[] = "/tmp/nsima-control-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  const std::string sock = std::string(tmpl) + "/run/nsimad.sock";
  DaemonContext ctx;
  ctx.stopping = [] { return false; };
  Server server(sock, [&](const json& req, Connection& conn) { handle_request(ctx, req, conn); });
  ASSERT_TRUE(server.start());
  auto conn = connect_to(sock);
  ASSERT_TRUE(conn) << conn.error().to_string();
  auto roundtrip = [&](const std::string& line) {
    EXPECT_TRUE(conn->send_line(line));
    auto got = conn->read_line(1 << 20, std::chrono::seconds(5));
    EXPECT_TRUE(got) << conn->error();
    return got ? json::parse(*got, nullptr, false) : json();
  };
  EXPECT_EQ(roundtrip("{\"cmd\":\"ns_create\",\"cgroup\":\"/c\",\"vtpm\":\"yes\"}"),
            json({{"ok", false}, {"error", "field \"vtpm\" must be a boolean, got string"}}));
  EXPECT_EQ(roundtrip("not json").value("error", ""),
            "bad request: not JSON (expected a JSON object with a \"cmd\" string)");
  EXPECT_EQ(roundtrip("[1,2]").value("error", ""),
            "bad request: expected a JSON object with a \"cmd\" string, got array");
  // The connection stays usable after errors.
  EXPECT_EQ(roundtrip("{\"cmd\":\"pcr\",\"ns\":7}").value("error", ""),
            "field \"ns\" must be a string, got number 7");
  server.stop();
  std::error_code ec;
  std::filesystem::remove_all(tmpl, ec);
}

}  // namespace
}  // namespace nsima::control
