// SPDX-License-Identifier: Apache-2.0
// nsima-oci-hook's inputs: runc's and crun's state JSON (validators.md §5, as they print it),
// malformed state, /proc/PID/cgroup of v2, v1 and hybrid hosts, and annotations -> ns_create.
#include "hook/oci_state.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

namespace nsima::hook {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

std::string err(const Result<OciState>& r) { return r ? "" : r.error().to_string(); }

// runc 1.1.5, createRuntime (host pid) and poststop (no pid).
constexpr const char* kRuncCreate =
    R"({"ociVersion":"1.0.2-dev","id":"t1","status":"creating","pid":21592,"bundle":"/w/ctr/bundle","annotations":{"org.nsima.builtin":"container-measure"}})";
constexpr const char* kRuncStop =
    R"({"ociVersion":"1.0.2-dev","id":"t1","status":"stopped","bundle":"/w/ctr/bundle"})";
// crun 1.8.1: "ociVersion":"1.0", "root", createRuntime status "created", poststop pid 0.
constexpr const char* kCrunCreate =
    R"({"ociVersion":"1.0","id":"c1","pid":4242,"root":"rootfs","bundle":"/w/ctr/bundle","status":"created"})";
constexpr const char* kCrunStop =
    R"({"ociVersion":"1.0","id":"c1","pid":0,"root":"rootfs","bundle":"/w/ctr/bundle","status":"stopped"})";

TEST(OciState, Runc) {
  auto c = parse_state(kRuncCreate);
  ASSERT_TRUE(c) << err(c);
  EXPECT_EQ(c->id, "t1");
  EXPECT_EQ(c->status, "creating");
  EXPECT_EQ(c->pid, 21592);
  EXPECT_EQ(c->bundle, "/w/ctr/bundle");
  EXPECT_EQ(c->annotations.at("org.nsima.builtin"), "container-measure");
  auto s = parse_state(kRuncStop);
  ASSERT_TRUE(s) << err(s);
  EXPECT_FALSE(s->pid.has_value());
  EXPECT_EQ(s->status, "stopped");
}

TEST(OciState, Crun) {
  auto c = parse_state(kCrunCreate);
  ASSERT_TRUE(c) << err(c);
  EXPECT_EQ(c->oci_version, "1.0");
  EXPECT_EQ(c->pid, 4242);
  EXPECT_EQ(c->status, "created");
  EXPECT_TRUE(c->annotations.empty());
  auto s = parse_state(kCrunStop);
  ASSERT_TRUE(s) << err(s);
  EXPECT_EQ(s->pid, 0);
}

TEST(OciState, MalformedIsOneSentence) {
  std::string t = kRuncCreate;
  EXPECT_EQ(err(parse_state(t.substr(0, 40))).rfind(
                "the OCI state on stdin is not valid JSON (parse error at line 1, column 41", 0),
            0u)
      << err(parse_state(t.substr(0, 40)));
  EXPECT_EQ(err(parse_state("")), "the OCI state on stdin is empty (a runtime passes the container state as JSON)");
  EXPECT_EQ(err(parse_state("[1]")), "the OCI state on stdin is not a JSON object");
  EXPECT_EQ(err(parse_state(R"({"id":"x"})")), "the OCI state has no \"ociVersion\"");
  EXPECT_EQ(err(parse_state(R"({"ociVersion":"1.0"})")), "the OCI state has no \"id\"");
  EXPECT_EQ(err(parse_state(R"({"ociVersion":"1.0","id":"x","pid":"12"})")),
            "the OCI state's \"pid\" is not a non-negative integer");
  EXPECT_EQ(err(parse_state(R"({"ociVersion":"1.0","id":"x","pid":-3})")),
            "the OCI state's \"pid\" is not a non-negative integer");
  EXPECT_EQ(err(parse_state(R"({"ociVersion":"1.0","id":"../x"})")),
            "the OCI state's container id \"../x\" is not 1 to 1024 characters of "
            "A-Za-z0-9_+.- (nor . or ..)");
  EXPECT_EQ(err(parse_state(R"({"ociVersion":"1.0","id":"x","annotations":{"a":1}})")),
            "the OCI state's annotation \"a\" is not a string");
}

TEST(Cgroup, V2) {
  auto p = cgroup_v2_path("0::/machine.slice/libpod-abc.scope/container\n", "/proc/7/cgroup");
  ASSERT_TRUE(p) << p.error().to_string();
  EXPECT_EQ(*p, "/machine.slice/libpod-abc.scope/container");
}

TEST(Cgroup, V1AndHybridAreRefused) {
  const std::string hybrid =
      "12:pids:/t2\n11:memory:/t2\n1:name=systemd:/t2\n0::/t2\n";  // this build host (validators §5)
  auto p = cgroup_v2_path(hybrid, "/proc/7/cgroup");
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().to_string(),
            "this host uses cgroup v1 (/proc/7/cgroup lists v1 hierarchies): nsima needs the "
            "unified cgroup v2 hierarchy (boot with systemd.unified_cgroup_hierarchy=1)");
  EXPECT_FALSE(cgroup_v2_path("4:cpu,cpuacct:/t2\n", "f"));
  EXPECT_EQ(cgroup_v2_path("", "/proc/7/cgroup").error().to_string(),
            "/proc/7/cgroup has no cgroup v2 entry (0::PATH)");
  EXPECT_EQ(cgroup_v2_path("garbage\n", "/proc/7/cgroup").error().to_string(),
            "/proc/7/cgroup has a line that is not ID:CONTROLLERS:PATH");
}

class FakeProc : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::temp_directory_path() / ("nsima-hook-test-" + std::to_string(getpid()));
    fs::remove_all(dir_);
    fs::create_directories(dir_ / "proc/42");
    fs::create_directories(dir_ / "cg/ctr/c1");
    std::ofstream(dir_ / "proc/42/cgroup") << "0::/ctr/c1\n";
  }
  void TearDown() override { fs::remove_all(dir_); }
  fs::path dir_;
};

TEST_F(FakeProc, ContainerCgroup) {
  auto cg = container_cgroup(42, (dir_ / "cg").string(), (dir_ / "proc").string());
  ASSERT_TRUE(cg) << cg.error().to_string();
  EXPECT_EQ(*cg, (dir_ / "cg/ctr/c1").string());
  auto gone = container_cgroup(43, (dir_ / "cg").string(), (dir_ / "proc").string());
  ASSERT_FALSE(gone);
  EXPECT_EQ(gone.error().to_string(), "process 43 named by the OCI state is gone (no " +
                                          (dir_ / "proc/43/cgroup").string() + ")");
  std::ofstream(dir_ / "proc/42/cgroup") << "0::/\n";
  auto root = container_cgroup(42, (dir_ / "cg").string(), (dir_ / "proc").string());
  ASSERT_FALSE(root);
  EXPECT_EQ(root.error().to_string(),
            "process 42 is in the root cgroup: the runtime gave the container no cgroup of its own");
}

TEST_F(FakeProc, BundleRootfs) {
  std::ofstream(dir_ / "config.json") << R"({"root":{"path":"rootfs","readonly":true}})";
  auto r = bundle_rootfs(dir_.string());
  ASSERT_TRUE(r) << r.error().to_string();
  EXPECT_EQ(*r, (dir_ / "rootfs").string());
  std::ofstream(dir_ / "config.json") << R"({"root":{"path":"/var/lib/c/merged"}})";
  EXPECT_EQ(*bundle_rootfs(dir_.string()), "/var/lib/c/merged");
  std::ofstream(dir_ / "config.json") << R"({"process":{}})";
  EXPECT_FALSE(bundle_rootfs(dir_.string()));
}

Result<std::string> files(const std::string& path) {
  if (path == "/etc/nsima/web.policy") return std::string("measure func=BPRM_CHECK\n");
  return make_error(ENOENT, "No such file or directory", path);
}

OciState with(std::map<std::string, std::string> ann) {
  auto st = parse_state(kCrunCreate);
  st->annotations = std::move(ann);
  return *st;
}

TEST(Plan, DefaultsFromTheConfig) {
  config::Settings cfg;
  auto p = plan_create(with({}), "/sys/fs/cgroup/c1", cfg, files);
  ASSERT_TRUE(p) << p.error().to_string();
  EXPECT_EQ(p->request, json::parse(R"({"cmd":"ns_create","cgroup":"/sys/fs/cgroup/c1",
      "builtin":"container-default","vtpm":false,"container":"c1"})"))
      << "the container id goes with the request (ns list shows it)";
  cfg.container_vtpm = true;
  cfg.container_builtin = "tcb";
  p = plan_create(with({}), "/c", cfg, files);
  EXPECT_EQ(p->request["builtin"], "tcb");
  EXPECT_EQ(p->request["vtpm"], true);
  EXPECT_EQ(p->policy_desc, "builtin tcb");
}

TEST(Plan, Annotations) {
  config::Settings cfg;
  auto p = plan_create(with({{kAnnPolicy, "/etc/nsima/web.policy"}, {kAnnVtpm, "true"}}), "/c",
                       cfg, files);
  ASSERT_TRUE(p) << p.error().to_string();
  EXPECT_EQ(p->request["policy_text"], "measure func=BPRM_CHECK\n");
  EXPECT_EQ(p->request["policy_name"], "/etc/nsima/web.policy");
  EXPECT_FALSE(p->request.contains("builtin"));
  EXPECT_EQ(p->request["vtpm"], true);
  p = plan_create(with({{kAnnBuiltin, "container-measure"}, {kAnnVtpm, "false"}}), "/c", cfg, files);
  EXPECT_EQ(p->request["builtin"], "container-measure");
  EXPECT_EQ(p->request["vtpm"], false);
}

TEST(Plan, AppraisalFieldsPassThrough) {
  config::Settings cfg;
  auto st = with({{kAnnAppraise, "enforce"}, {kAnnKeys, "/etc/keys"}, {kAnnDigests, "/etc/d.list"}});
  st.bundle = "/nonexistent-bundle";
  auto p = plan_create(st, "/c", cfg, files);
  ASSERT_FALSE(p);  // enforce needs the rootfs (pre-appraisal): the bundle must be readable
  EXPECT_NE(p.error().message.find("/nonexistent-bundle/config.json"), std::string::npos);
  st.annotations[kAnnAppraise] = "off";
  p = plan_create(st, "/c", cfg, files);
  ASSERT_TRUE(p) << p.error().to_string();
  EXPECT_EQ(p->request["appraise"], "off");
  EXPECT_EQ(p->request["keys"], "/etc/keys");
  EXPECT_FALSE(p->request.contains("rootfs"));
  EXPECT_EQ(p->digests, "/etc/d.list");
}

TEST(Plan, BadAnnotationsAreOneSentence) {
  config::Settings cfg;
  auto e = [&](std::map<std::string, std::string> a) {
    auto p = plan_create(with(std::move(a)), "/c", cfg, files);
    return p ? std::string() : p.error().to_string();
  };
  EXPECT_EQ(e({{kAnnPolicy, "/etc/nsima/missing.policy"}}),
            "the policy file /etc/nsima/missing.policy named by annotation org.nsima.policy "
            "cannot be read: No such file or directory");
  EXPECT_EQ(e({{kAnnPolicy, "web.policy"}}),
            "annotation org.nsima.policy must be an absolute path, got \"web.policy\"");
  EXPECT_EQ(e({{kAnnPolicy, "/etc/nsima/web.policy"}, {kAnnBuiltin, "tcb"}}),
            "annotations org.nsima.builtin and org.nsima.policy exclude each other");
  EXPECT_EQ(e({{kAnnVtpm, "yes"}}), "annotation org.nsima.vtpm must be \"true\" or \"false\", got \"yes\"");
  EXPECT_EQ(e({{kAnnAppraise, "strict"}}),
            "annotation org.nsima.appraise must be \"enforce\", \"log\" or \"off\", got \"strict\"");
}

}  // namespace
}  // namespace nsima::hook
