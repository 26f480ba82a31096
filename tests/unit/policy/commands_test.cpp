// SPDX-License-Identifier: Apache-2.0
// The offline commands: exit codes and the stable, greppable output of check, explain (text and
// JSON, from a `nsimactl watch` line or a direct func access) and show-builtin.
#include "policy/commands.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/event.h"
#include "policy_test_util.h"

namespace nsima::policy {
namespace {

class TempPolicy {
 public:
  explicit TempPolicy(const std::string& text) {
    char tmpl[] = "/tmp/nsima-policy-test-XXXXXX";
    int fd = mkstemp(tmpl);
    EXPECT_GE(fd, 0);
    close(fd);
    path_ = tmpl;
    std::ofstream(path_, std::ios::binary) << text;
  }
  ~TempPolicy() { std::remove(path_.c_str()); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

struct CmdResult {
  int rc;
  std::string out, err;
};

CmdResult check(const std::string& file) {
  std::ostringstream out, err;
  int rc = cmd_check(file, out, err);
  return {rc, out.str(), err.str()};
}

CmdResult explain(const std::string& file, const std::string& event, bool json = false) {
  std::ostringstream out, err;
  int rc = cmd_explain(file, event, out, err, json);
  return {rc, out.str(), err.str()};
}

bool has_line(const std::string& text, const std::string& line) {
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);)
    if (l == line) return true;
  return false;
}

TEST(CmdCheck, ValidPolicyWithNotes) {
  TempPolicy p(
      "measure func=BPRM_CHECK\n"
      "measure func=MODULE_CHECK\n"
      "measure func=FILE_CHECK pcr=30\n"
      "appraise appraise_flag=check_blacklist\n");
  CmdResult r = check(p.path());
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(has_line(r.out, "4 rules OK")) << r.out;
  EXPECT_TRUE(has_line(r.out, p.path() +
                                  ":2: note: func=MODULE_CHECK is a kernel hook nsima never sees: "
                                  "this rule never matches in nsima"))
      << r.out;
  EXPECT_NE(r.out.find(p.path() + ":3: note: pcr=30 is beyond"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find(p.path() + ":4: note: appraise_flag= is deprecated"), std::string::npos);
  EXPECT_EQ(r.err, "");
}

TEST(CmdCheck, InvalidPolicyListsEveryError) {
  TempPolicy p("measure func=NOPE\nmeasure\n\tdont_audit\n");
  CmdResult r = check(p.path());
  EXPECT_EQ(r.rc, 1);
  EXPECT_TRUE(has_line(r.err, p.path() + ":1:9: 'func=NOPE': unknown func 'NOPE' (known: " +
                                  "FILE_CHECK, MMAP_CHECK, MMAP_CHECK_REQPROT, BPRM_CHECK, "
                                  "CREDS_CHECK, MODULE_CHECK, FIRMWARE_CHECK, KEXEC_KERNEL_CHECK, "
                                  "KEXEC_INITRAMFS_CHECK, KEXEC_CMDLINE, POLICY_CHECK, KEY_CHECK, "
                                  "CRITICAL_DATA, SETXATTR_CHECK (aliases PATH_CHECK, FILE_MMAP))"))
      << r.err;
  EXPECT_TRUE(has_line(r.err, p.path() + ":3:2: 'dont_audit': unknown action: the kernel has no "
                                         "dont_audit"))
      << r.err;
  EXPECT_TRUE(has_line(r.err, "2 errors"));
  EXPECT_EQ(r.out, "");
}

TEST(CmdCheck, RefusesTemplatesNsimaCannotProduce) {
  // The kernel accepts all three; nsima would have to replace two by the default template.
  TempPolicy p(
      "measure func=BPRM_CHECK template=ima-sig\n"
      "measure func=FILE_CHECK template=ima-modsig\n"
      "measure func=MMAP_CHECK template=d-ng|n-ng|evmsig|xattrnames|xattrlengths|xattrvalues|"
      "iuid|igid|imode\n");
  CmdResult r = check(p.path());
  EXPECT_EQ(r.rc, 1);
  EXPECT_TRUE(has_line(r.err, p.path() +
                                  ":2:25: 'template=ima-modsig': nsima cannot produce the "
                                  "ima-modsig template yet: it writes ima-ng, ima-sig and ima "
                                  "entries only (name one of them, or drop template= for the "
                                  "namespace's default)"))
      << r.err;
  EXPECT_NE(r.err.find(p.path() + ":3:25: 'template=d-ng|n-ng|evmsig|"), std::string::npos)
      << r.err;
  EXPECT_NE(r.err.find("nsima cannot produce the evm-sig template"), std::string::npos) << r.err;
  EXPECT_TRUE(has_line(r.err, "2 errors")) << r.err;
  EXPECT_EQ(r.out, "");
}

TEST(CmdCheck, MissingFileAndBuiltins) {
  CmdResult m = check("/nonexistent/x.policy");
  EXPECT_EQ(m.rc, 1);
  EXPECT_EQ(m.err, "/nonexistent/x.policy: cannot open policy file: No such file or directory\n");
  CmdResult d = check("/tmp");
  EXPECT_EQ(d.rc, 1);
  EXPECT_EQ(d.err, "/tmp: cannot open policy file: it is a directory\n");
  CmdResult b = check("builtin:tcb");
  EXPECT_EQ(b.rc, 0);
  EXPECT_TRUE(has_line(b.out, "20 rules OK"));
  EXPECT_NE(b.out.find("builtin:tcb:39: note: func=MODULE_CHECK"), std::string::npos) << b.out;
  EXPECT_EQ(check("builtin:nope").rc, 1);
}

// check enforces load's size limit, and says so before reading the file.
TEST(CmdCheck, APolicyOverLoadsLimitIsRefused) {
  std::string big;
  while (big.size() <= kMaxPolicyBytes) big += "measure func=BPRM_CHECK\n";
  TempPolicy p(big);
  CmdResult r = check(p.path());
  EXPECT_EQ(r.rc, 1);
  EXPECT_EQ(r.err, p.path() + ": policy is " + std::to_string(big.size()) +
                       " bytes, more than the 4194304 bytes nsima loads\n");
}

TEST(CmdExplain, WatchLineBprmGivesTwoAccesses) {
  // A `nsimactl watch` line, as event_to_json() writes it.
  Event ev;
  ev.hook = Hook::kBprmCheck;
  ev.cred = Creds{1000, 1000, 1000, 1000, 1000, 1000, 0};
  ev.new_cred = Creds{1000, 0, 0, 1000, 1000, 1000, 0};  // setuid-root binary
  ev.fs_magic = 0xef53;
  ev.fs_name = "ext4";
  ev.i_uid = 0;
  ev.mask = NSIMA_MAY_EXEC;
  ev.path = "/usr/bin/passwd";
  TempPolicy p(
      "dont_measure fsmagic=0x9fa0\n"
      "measure func=BPRM_CHECK mask=MAY_EXEC\n"
      "measure func=CREDS_CHECK euid=0 pcr=11\n"
      "appraise fowner=0 appraise_type=imasig\n");
  // fsmagic in hex, as policies write it; explain reads it back.
  EXPECT_EQ(nlohmann::json::parse(event_to_json(ev)).value("fsmagic", ""), "0xef53");
  CmdResult r = explain(p.path(), event_to_json(ev));
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(has_line(
      r.out,
      "access BPRM_CHECK mask=MAY_EXEC uid=1000 euid=1000 suid=1000 gid=1000 egid=1000 sgid=1000 "
      "cap_setuid=no cap_setgid=no fowner=0 fgroup=0 fsmagic=0xef53 fsname=ext4 "
      "fsuuid=00000000-0000-0000-0000-000000000000 path=/usr/bin/passwd"))
      << r.out;
  EXPECT_TRUE(has_line(
      r.out, "BPRM_CHECK measure: " + p.path() + ":2: measure func=BPRM_CHECK mask=MAY_EXEC"))
      << r.out;
  EXPECT_TRUE(has_line(
      r.out, "BPRM_CHECK appraise: " + p.path() + ":4: appraise fowner=0 appraise_type=imasig"));
  EXPECT_TRUE(has_line(r.out, "BPRM_CHECK audit: no rule"));
  EXPECT_TRUE(has_line(r.out, "BPRM_CHECK hash: no rule"));
  EXPECT_TRUE(has_line(r.out,
                       "BPRM_CHECK decision: measure=yes appraise=yes audit=no hash=no pcr=default "
                       "template=default digsig_required=yes permit_directio=no modsig_allowed=no "
                       "verity_required=no appraise_algos=any cred_dependent=no"))
      << r.out;
  // CREDS_CHECK uses the new credentials: euid 0 after the setuid exec.
  EXPECT_TRUE(has_line(
      r.out, "CREDS_CHECK measure: " + p.path() + ":3: measure func=CREDS_CHECK euid=0 pcr=11"))
      << r.out;
  EXPECT_NE(r.out.find("CREDS_CHECK decision: measure=yes appraise=yes audit=no hash=no pcr=11 "),
            std::string::npos);
  EXPECT_TRUE(has_line(r.out,
                       "CREDS_CHECK note: a rule depends on the credentials: other users may be "
                       "decided differently"));
}

TEST(CmdExplain, MmapWithoutExecAndReqprot) {
  TempPolicy p("measure func=MMAP_CHECK\nmeasure func=MMAP_CHECK_REQPROT pcr=12\n");
  CmdResult none = explain(p.path(), R"({"hook":"mmap_file","prot":1,"reqprot":1})");
  EXPECT_EQ(none.rc, 0);
  EXPECT_NE(none.out.find("no IMA func applies"), std::string::npos);
  CmdResult both = explain(p.path(), R"({"hook":"mmap_file","prot":"PROT_READ|PROT_EXEC"})");
  ASSERT_EQ(both.rc, 0) << both.err;
  size_t req = both.out.find("access MMAP_CHECK_REQPROT");
  size_t eff = both.out.find("access MMAP_CHECK ");
  ASSERT_NE(req, std::string::npos);
  ASSERT_NE(eff, std::string::npos);
  EXPECT_LT(req, eff);  // the kernel's order
  EXPECT_NE(both.out.find("MMAP_CHECK_REQPROT decision: measure=yes appraise=no audit=no hash=no "
                          "pcr=12"),
            std::string::npos);
}

TEST(CmdExplain, DirectFuncWithNamedMaskAndHexFsmagic) {
  CmdResult r =
      explain("builtin:tcb",
              R"({"func":"FILE_CHECK","mask":"MAY_READ|MAY_WRITE","uid":0,"fsmagic":"9fa0"})");
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_TRUE(has_line(r.out, "FILE_CHECK measure: builtin:tcb:7: dont_measure fsmagic=0x9fa0"))
      << r.out;
  CmdResult root =
      explain("builtin:tcb", R"({"func":"FILE_CHECK","mask":"MAY_READ|MAY_WRITE","uid":0,
                                        "fsmagic":61267,"fsuuid":"8bcbe3944f134144be8e5aa9ea2ce2f6"})");
  ASSERT_EQ(root.rc, 0) << root.err;
  EXPECT_TRUE(has_line(root.out,
                       "FILE_CHECK measure: builtin:tcb:37: measure func=FILE_CHECK "
                       "mask=^MAY_READ euid=0"))
      << root.out;
  EXPECT_NE(root.out.find("fsuuid=8bcbe394-4f13-4144-be8e-5aa9ea2ce2f6"), std::string::npos);
  CmdResult mod = explain("builtin:tcb", R"({"func":"MODULE_CHECK"})");
  ASSERT_EQ(mod.rc, 0);
  EXPECT_TRUE(has_line(mod.out,
                       "MODULE_CHECK note: nsima never sees MODULE_CHECK accesses; this "
                       "is what the kernel would decide"))
      << mod.out;
  EXPECT_NE(mod.out.find("access MODULE_CHECK mask=MAY_READ "), std::string::npos);
}

TEST(CmdExplain, JsonOutput) {
  CmdResult r = explain("builtin:container-appraise",
                        R"({"hook":"bprm_check","uid":5,"fsmagic":61267,"path":"/bin/sh"})", true);
  ASSERT_EQ(r.rc, 0) << r.err;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_EQ(j["policy"], "builtin:container-appraise");
  EXPECT_EQ(j["path"], "/bin/sh");
  ASSERT_EQ(j["accesses"].size(), 2u);
  auto a = j["accesses"][0];
  EXPECT_EQ(a["func"], "BPRM_CHECK");
  EXPECT_EQ(a["rules"]["measure"]["line"], 37);
  EXPECT_EQ(a["rules"]["measure"]["text"], "measure func=BPRM_CHECK mask=MAY_EXEC");
  EXPECT_EQ(a["rules"]["appraise"]["action"], "appraise");
  EXPECT_TRUE(a["rules"]["audit"].is_null());
  EXPECT_EQ(a["decision"]["measure"], true);
  EXPECT_EQ(a["decision"]["digsig_required"], true);
  EXPECT_TRUE(a["decision"]["pcr"].is_null());
  EXPECT_EQ(j["accesses"][1]["func"], "CREDS_CHECK");
  EXPECT_EQ(j["accesses"][1]["rules"]["measure"], nullptr);
}

// Every field of a watch line is known (the unknown-field check must not refuse them): an mmap
// event, flagged denied and deleted, with the "nsima" note watch adds.
TEST(CmdExplain, EveryWatchLineFieldIsKnown) {
  Event ev;
  ev.hook = Hook::kMmapFile;
  ev.prot = 5;
  ev.reqprot = 5;
  ev.flags = NSIMA_EV_DENIED | NSIMA_EV_DELETED | NSIMA_EV_PATH_TRUNCATED;
  ev.path = "/lib/x.so";
  auto line = nlohmann::json::parse(event_to_json(ev));
  line["nsima"] = "measured in 1";
  CmdResult r = explain("builtin:tcb", line.dump());
  EXPECT_EQ(r.rc, 0) << r.err;
}

TEST(CmdExplain, Errors) {
  EXPECT_EQ(explain("builtin:tcb", "not json").rc, 2);
  EXPECT_EQ(explain("builtin:tcb", "[1]").rc, 2);
  EXPECT_EQ(explain("builtin:tcb", R"({"uid":0})").rc, 2);
  EXPECT_EQ(explain("builtin:tcb", R"({"hook":"file_open"})").rc, 2);  // mask needed
  EXPECT_EQ(explain("builtin:tcb", R"({"hook":"ptrace"})").rc, 2);
  EXPECT_EQ(explain("builtin:tcb", R"({"func":"NOPE"})").rc, 2);
  EXPECT_EQ(explain("builtin:tcb", R"({"func":"FILE_CHECK","uid":-1})").rc, 2);
  EXPECT_EQ(explain("builtin:tcb", R"({"func":"FILE_CHECK","mask":"MAY_FLY"})").rc, 2);
  EXPECT_EQ(explain("builtin:tcb", R"({"func":"FILE_CHECK","fsuuid":"xyz"})").rc, 2);
  // An unknown field is refused by name, never read as a default ("Uid" is not uid=0).
  CmdResult typo = explain("builtin:tcb", R"({"func":"FILE_CHECK","Uid":1000})");
  EXPECT_EQ(typo.rc, 2);
  EXPECT_NE(typo.err.find("unknown field 'Uid' in the event (did you mean 'uid'?)"),
            std::string::npos)
      << typo.err;
  CmdResult other = explain("builtin:tcb", R"({"func":"FILE_CHECK","colour":"red"})");
  EXPECT_EQ(other.rc, 2);
  EXPECT_NE(other.err.find("unknown field 'colour' in the event (fields: func, hook, path,"),
            std::string::npos)
      << other.err;
  CmdResult bad = explain("/nonexistent.policy", R"({"func":"FILE_CHECK"})");
  EXPECT_EQ(bad.rc, 1);
  EXPECT_NE(bad.err.find("/nonexistent.policy"), std::string::npos);
}

TEST(CmdShowBuiltin, PrintsTheFileText) {
  std::ostringstream out, err;
  EXPECT_EQ(cmd_show_builtin("secure_boot", out, err), 0);
  EXPECT_EQ(out.str(), builtin_text("secure_boot"));
  std::ostringstream out2, err2;
  EXPECT_EQ(cmd_show_builtin("nope", out2, err2), 1);
  EXPECT_NE(err2.str().find("container-default"), std::string::npos);
}

}  // namespace
}  // namespace nsima::policy

namespace nsima::policy {
namespace {

// The JSON seeds of the fuzz corpus are valid events.
TEST(CmdExplain, SeedEventsExplain) {
  for (const char* name : {"event-bprm.json", "event-mmap.json", "event-func.json"}) {
    std::ifstream in(std::string(NSIMA_SOURCE_DIR) + "/tests/unit/policy/data/" + name);
    std::stringstream s;
    s << in.rdbuf();
    ASSERT_FALSE(s.str().empty()) << name;
    CmdResult r = explain("builtin:tcb", s.str());
    EXPECT_EQ(r.rc, 0) << name << ": " << r.err;
    EXPECT_NE(r.out.find(" decision: "), std::string::npos) << name;
  }
}

}  // namespace
}  // namespace nsima::policy
