// SPDX-License-Identifier: Apache-2.0
// /etc/nsima/nsimad.conf parsing: defaults, every value kind, every error names file:line:col
// and the reason, and the shipped systemd/nsimad.conf documents every key with its default.
#include "config/config.h"

#include <gtest/gtest.h>

#include <fstream>
#include <regex>
#include <sstream>

namespace nsima::config {
namespace {

std::string error_of(std::string_view text) {
  auto r = parse(text, "/etc/nsima/nsimad.conf");
  EXPECT_FALSE(r.has_value()) << text;
  return r ? "" : r.error().to_string();
}

TEST(Config, EmptyFileIsAllDefaults) {
  auto r = parse("", "f");
  ASSERT_TRUE(r) << r.error().to_string();
  Settings d;
  EXPECT_EQ(r->log_level, d.log_level);
  EXPECT_EQ(r->socket, "/run/nsima/nsimad.sock");
  EXPECT_EQ(r->host_pcr, 23);
  EXPECT_EQ(r->host_tcti, "auto");
  EXPECT_EQ(r->container_builtin, "container-default");
  EXPECT_EQ(r->container_on_error, "fail");
  EXPECT_FALSE(r->container_vtpm);
}

TEST(Config, EveryKindOfValue) {
  auto r = parse(R"(
[daemon]
log_level = "debug"
state_dir = "/srv/nsima"
pin_dir = ""
[control]
socket = "/run/x.sock"
[host]
tcti = "swtpm:path=/run/t.sock"
pcr = 16
policy = "/etc/nsima/host.policy"
[measure]
hash = "sha512"
template = "ima-sig"
hash_threads = 4
[container]
builtin = "container-measure"
vtpm = true
appraise = "enforce"
on_error = "allow"
timeout_ms = 5000
)",
                 "f");
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(r->log_level, "debug");
  EXPECT_EQ(r->state_dir, "/srv/nsima");
  EXPECT_EQ(r->pin_dir, "");
  EXPECT_EQ(r->socket, "/run/x.sock");
  EXPECT_EQ(r->host_tcti, "swtpm:path=/run/t.sock");
  EXPECT_EQ(r->host_pcr, 16);
  EXPECT_EQ(r->host_policy, "/etc/nsima/host.policy");
  EXPECT_EQ(r->hash, "sha512");
  EXPECT_EQ(r->template_name, "ima-sig");
  EXPECT_EQ(r->hash_threads, 4);
  EXPECT_EQ(r->container_builtin, "container-measure");
  EXPECT_TRUE(r->container_vtpm);
  EXPECT_EQ(r->container_appraise, "enforce");
  EXPECT_EQ(r->container_on_error, "allow");
  EXPECT_EQ(r->container_timeout_ms, 5000);
  EXPECT_EQ(r->run_dir, "/run/nsima");  // untouched keys keep their defaults
}

TEST(Config, UnknownKeyNamesLineColumnAndTheKeysOfItsSection) {
  EXPECT_EQ(error_of("[host]\npcr = 16\n  pcrr = 3\n"),
            "/etc/nsima/nsimad.conf:3:3: unknown key \"pcrr\" in [host] (keys: tcti, pcr, "
            "policy, builtin)");
}

TEST(Config, UnknownSectionAndTopLevelKey) {
  EXPECT_EQ(error_of("[hots]\npcr = 1\n"),
            "/etc/nsima/nsimad.conf:1:2: unknown section \"hots\" (sections: [daemon], "
            "[control], [host], [measure], [container])");
  EXPECT_NE(error_of("log_level = \"info\"\n").find(":1:1: unknown section \"log_level\""),
            std::string::npos);
}

TEST(Config, BadValuesSayWhy) {
  EXPECT_EQ(error_of("[host]\npcr = 99\n"),
            "/etc/nsima/nsimad.conf:2:7: [host] pcr must be an integer from 0 to 23, got the "
            "integer 99");
  EXPECT_EQ(error_of("[host]\npcr = \"23\"\n"),
            "/etc/nsima/nsimad.conf:2:7: [host] pcr must be an integer from 0 to 23, got the "
            "string \"23\"");
  EXPECT_EQ(error_of("[daemon]\nlog_level = \"loud\"\n"),
            "/etc/nsima/nsimad.conf:2:13: [daemon] log_level must be \"trace\", \"debug\", "
            "\"info\", \"warn\", \"error\" or \"off\", got \"loud\"");
  EXPECT_EQ(error_of("[daemon]\nstate_dir = \"var/lib\"\n"),
            "/etc/nsima/nsimad.conf:2:13: [daemon] state_dir must be an absolute path, got "
            "\"var/lib\"");
  EXPECT_EQ(error_of("[container]\nvtpm = \"yes\"\n"),
            "/etc/nsima/nsimad.conf:2:8: [container] vtpm must be true or false, got the string "
            "\"yes\"");
  EXPECT_NE(error_of("[measure]\nhash = \"sha257\"\n").find("[measure] hash must be a kernel hash"),
            std::string::npos);
  EXPECT_NE(error_of("[control]\nsocket = \"\"\n").find(":2:10: [control] socket must not be empty"),
            std::string::npos);
  EXPECT_EQ(error_of("[host]\npolicy = \"/p\"\nbuiltin = \"tcb\"\n"),
            "/etc/nsima/nsimad.conf: [host] policy and builtin exclude each other");
}

TEST(Config, SyntaxErrorsNameThePlace) {
  std::string e = error_of("[host]\npcr 23\n");
  EXPECT_EQ(e.rfind("/etc/nsima/nsimad.conf:2:", 0), 0u) << e;
  EXPECT_NE(e.find("TOML syntax:"), std::string::npos) << e;
  e = error_of("[host]\npcr = 1\npcr = 2\n");
  EXPECT_EQ(e.rfind("/etc/nsima/nsimad.conf:3:", 0), 0u) << e;
  e = error_of("[host]\n[host]\n");
  EXPECT_EQ(e.rfind("/etc/nsima/nsimad.conf:2:", 0), 0u) << e;
}

TEST(Config, SectionMustBeATable) {
  EXPECT_EQ(error_of("host = 3\n"),
            "/etc/nsima/nsimad.conf:1:1: \"host\" must be a table ([host]), got the integer 3");
}

TEST(Config, LoadMissingFile) {
  auto r = load("/nonexistent/nsimad.conf", false);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->host_pcr, 23);
  auto e = load("/nonexistent/nsimad.conf", true);
  ASSERT_FALSE(e);
  EXPECT_EQ(e.error().to_string(),
            "/nonexistent/nsimad.conf: cannot read the config file: No such file or directory");
}

// The shipped file parses, and documents every key (as "# key = default" or "key = value")
// under its section with the default the parser uses.
TEST(Config, ShippedFileDocumentsEveryKeyWithItsDefault) {
  const std::string path = std::string(NSIMA_SOURCE_DIR) + "/systemd/nsimad.conf";
  auto loaded = load(path, true);
  ASSERT_TRUE(loaded) << loaded.error().to_string();
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  const std::string text = ss.str();
  for (const auto& k : keys()) {
    size_t sec = text.find("[" + std::string(k.section) + "]\n");
    ASSERT_NE(sec, std::string::npos) << "section [" << k.section << "] missing";
    size_t end = text.find("\n[", sec + 1);
    std::string body = text.substr(sec, end == std::string::npos ? std::string::npos : end - sec);
    std::string line = "# " + std::string(k.key) + " = " + std::string(k.default_text);
    bool documented = body.find("\n" + line + " ") != std::string::npos ||
                      body.find("\n" + line + "\n") != std::string::npos;
    // a key the file sets must say its default in the comment after it
    std::regex set("\\n" + std::string(k.key) + " = [^\\n]*# default " +
                   std::regex_replace(std::string(k.default_text), std::regex("[\\\\\"]"), "\\$&"));
    documented |= std::regex_search(body, set);
    EXPECT_TRUE(documented) << "[" << k.section << "] " << k.key << " (default " << k.default_text
                            << ") is not documented in " << path;
  }
}

}  // namespace
}  // namespace nsima::config
