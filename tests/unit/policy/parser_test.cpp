// SPDX-License-Identifier: Apache-2.0
// Parser tests: every action, condition, option and operator of the kernel grammar, the number
// syntax of kstrtoul()/kstrtoint(), duplicates, token-order rules, comments and blank lines, and
// the exact file:line:column of rejected policies.
#include "policy/parser.h"

#include <gtest/gtest.h>

#include "nsima/bpf_abi.h"
#include "policy_test_util.h"

namespace nsima::policy {
namespace {

using testing::accepted;
using testing::parse_ok;
using testing::policy_ok;
using testing::rejected_at;

TEST(ParserActions, EveryAction) {
  EXPECT_EQ(parse_ok("measure").action, Action::kMeasure);
  EXPECT_EQ(parse_ok("dont_measure").action, Action::kDontMeasure);
  EXPECT_EQ(parse_ok("appraise").action, Action::kAppraise);
  EXPECT_EQ(parse_ok("dont_appraise").action, Action::kDontAppraise);
  EXPECT_EQ(parse_ok("audit").action, Action::kAudit);
  EXPECT_EQ(parse_ok("hash").action, Action::kHash);
  EXPECT_EQ(parse_ok("dont_hash").action, Action::kDontHash);
}

TEST(ParserActions, NoDontAudit) {
  EXPECT_TRUE(rejected_at("dont_audit func=FILE_CHECK", 1, 1, "dont_audit", "no dont_audit"));
}

TEST(ParserActions, ExactlyOneAction) {
  EXPECT_TRUE(rejected_at("measure dont_measure", 1, 9, "dont_measure", "second action"));
  EXPECT_TRUE(rejected_at("func=FILE_CHECK", 1, 1, "func=FILE_CHECK", "no action"));
  // The action may come anywhere in the rule (only template= cares about order).
  EXPECT_EQ(parse_ok("func=BPRM_CHECK measure").action, Action::kMeasure);
}

TEST(ParserActions, KeywordsAreCaseSensitive) {
  EXPECT_TRUE(rejected_at("Measure", 1, 1, "Measure", "unknown token"));
  EXPECT_TRUE(rejected_at("measure func=file_check", 1, 9, "func=file_check", "unknown func"));
}

TEST(ParserFunc, EveryFuncAndAlias) {
  struct Case {
    const char* text;
    Func func;
  } cases[] = {
      {"FILE_CHECK", Func::kFileCheck},
      {"PATH_CHECK", Func::kFileCheck},
      {"MMAP_CHECK", Func::kMmapCheck},
      {"FILE_MMAP", Func::kMmapCheck},
      {"MMAP_CHECK_REQPROT", Func::kMmapCheckReqprot},
      {"BPRM_CHECK", Func::kBprmCheck},
      {"CREDS_CHECK", Func::kCredsCheck},
      {"MODULE_CHECK", Func::kModuleCheck},
      {"FIRMWARE_CHECK", Func::kFirmwareCheck},
      {"KEXEC_KERNEL_CHECK", Func::kKexecKernelCheck},
      {"KEXEC_INITRAMFS_CHECK", Func::kKexecInitramfsCheck},
      {"KEXEC_CMDLINE", Func::kKexecCmdline},
      {"POLICY_CHECK", Func::kPolicyCheck},
      {"KEY_CHECK", Func::kKeyCheck},
      {"CRITICAL_DATA", Func::kCriticalData},
  };
  for (const auto& c : cases) {
    std::string line = std::string("measure func=") + c.text;
    EXPECT_EQ(parse_ok(line).func, c.func) << line;
  }
  EXPECT_EQ(parse_ok("appraise func=SETXATTR_CHECK appraise_algos=sha256").func,
            Func::kSetxattrCheck);
  EXPECT_EQ(parse_ok("measure").func, Func::kNone);
}

TEST(ParserFunc, UnknownAndDuplicate) {
  EXPECT_TRUE(rejected_at("measure func=POST_SETATTR", 1, 9, "func=POST_SETATTR", "unknown func"));
  EXPECT_TRUE(rejected_at("measure func=NONE", 1, 9, "func=NONE", "unknown func"));
  EXPECT_TRUE(rejected_at("measure func=FILE_CHECK func=FILE_CHECK", 1, 25, "func=FILE_CHECK",
                          "duplicate func"));
  EXPECT_TRUE(rejected_at("measure func=", 1, 9, "func=", "empty value"));
}

TEST(ParserMask, ExactAndInclusive) {
  struct Case {
    const char* text;
    uint32_t bit;
  } cases[] = {{"MAY_EXEC", NSIMA_MAY_EXEC},
               {"MAY_WRITE", NSIMA_MAY_WRITE},
               {"MAY_READ", NSIMA_MAY_READ},
               {"MAY_APPEND", NSIMA_MAY_APPEND}};
  for (const auto& c : cases) {
    Rule r = parse_ok(std::string("measure mask=") + c.text);
    EXPECT_EQ(r.mask, c.bit);
    EXPECT_FALSE(r.mask_inclusive);
    Rule ri = parse_ok(std::string("measure mask=^") + c.text);
    EXPECT_EQ(ri.mask, c.bit);
    EXPECT_TRUE(ri.mask_inclusive);
  }
}

TEST(ParserMask, Rejections) {
  EXPECT_TRUE(rejected_at("measure mask=MAY_OPEN", 1, 9, "mask=MAY_OPEN", "unknown mask"));
  EXPECT_TRUE(rejected_at("measure mask=^^MAY_READ", 1, 9, "mask=^^MAY_READ", "unknown mask"));
  EXPECT_TRUE(rejected_at("measure mask=MAY_READ|MAY_WRITE", 1, 9, "mask=MAY_READ|MAY_WRITE",
                          "unknown mask"));
  EXPECT_TRUE(rejected_at("measure mask=MAY_READ mask=^MAY_READ", 1, 23, "mask=^MAY_READ",
                          "duplicate mask"));
}

TEST(ParserFsmagic, HexWithOrWithoutPrefix) {
  EXPECT_EQ(parse_ok("dont_measure fsmagic=0x9fa0").fsmagic, 0x9fa0u);
  EXPECT_EQ(parse_ok("dont_measure fsmagic=9fa0").fsmagic, 0x9fa0u);
  EXPECT_EQ(parse_ok("dont_measure fsmagic=0X9FA0").fsmagic, 0x9fa0u);
  EXPECT_EQ(parse_ok("dont_measure fsmagic=+0x10").fsmagic, 0x10u);  // kstrtoul skips one '+'
  EXPECT_EQ(parse_ok("dont_measure fsmagic=ffffffffffffffff").fsmagic, ~0ull);
  EXPECT_TRUE(rejected_at("dont_measure fsmagic=0x", 1, 14, "fsmagic=0x", "hexadecimal"));
  EXPECT_TRUE(rejected_at("dont_measure fsmagic=0x9fa0g", 1, 14, "fsmagic=0x9fa0g", "hexadecimal"));
  EXPECT_TRUE(rejected_at("dont_measure fsmagic=-1", 1, 14, "fsmagic=-1", "hexadecimal"));
  EXPECT_TRUE(rejected_at("dont_measure fsmagic=10000000000000000", 1, 14,
                          "fsmagic=10000000000000000", "out of range"));
  EXPECT_TRUE(rejected_at("dont_measure fsmagic=1 fsmagic=2", 1, 24, "fsmagic=2", "duplicate"));
  // The kernel's duplicate test is "fsmagic already non-zero", so fsmagic=0 can be overridden.
  EXPECT_EQ(parse_ok("dont_measure fsmagic=0 fsmagic=0x9fa0").fsmagic, 0x9fa0u);
}

TEST(ParserFsname, RepeatsLastWins) {
  EXPECT_EQ(parse_ok("measure fsname=ext4").fsname, "ext4");
  EXPECT_EQ(parse_ok("measure fsname=ext4 fsname=overlay").fsname, "overlay");
  // No quoting: '=' inside the value is part of it.
  EXPECT_EQ(parse_ok("measure fsname=a=b").fsname, "a=b");
}

TEST(ParserFsuuid, CanonicalUuid) {
  Rule r = parse_ok("measure fsuuid=8BCBE394-4f13-4144-be8e-5aa9ea2ce2f6");
  ASSERT_TRUE(r.fsuuid);
  EXPECT_EQ(format_uuid(*r.fsuuid), "8bcbe394-4f13-4144-be8e-5aa9ea2ce2f6");
  // uuid_parse() only looks at the first 36 characters.
  EXPECT_TRUE(accepted("measure fsuuid=8bcbe394-4f13-4144-be8e-5aa9ea2ce2f6xyz"));
  EXPECT_TRUE(rejected_at("measure fsuuid=8bcbe3944f134144be8e5aa9ea2ce2f6", 1, 9,
                          "fsuuid=8bcbe3944f134144be8e5aa9ea2ce2f6", "UUID"));
  EXPECT_TRUE(rejected_at("measure fsuuid=8bcbe394-4f13-4144-be8e-5aa9ea2ce2f", 1, 9,
                          "fsuuid=8bcbe394-4f13-4144-be8e-5aa9ea2ce2f", "UUID"));
  EXPECT_TRUE(
      rejected_at("measure fsuuid=8bcbe394-4f13-4144-be8e-5aa9ea2ce2f6 "
                  "fsuuid=8bcbe394-4f13-4144-be8e-5aa9ea2ce2f6",
                  1, 53, "fsuuid=8bcbe394-4f13-4144-be8e-5aa9ea2ce2f6", "duplicate"));
  // Duplicate test is "uuid not null", like fsmagic.
  EXPECT_TRUE(
      accepted("measure fsuuid=00000000-0000-0000-0000-000000000000 "
               "fsuuid=8bcbe394-4f13-4144-be8e-5aa9ea2ce2f6"));
}

TEST(ParserIds, EveryKeyAndOperator) {
  struct Key {
    const char* key;
    IdCond Rule::*slot;
    bool effective;
  } keys[] = {{"uid", &Rule::uid, false},       {"euid", &Rule::uid, true},
              {"gid", &Rule::gid, false},       {"egid", &Rule::gid, true},
              {"fowner", &Rule::fowner, false}, {"fgroup", &Rule::fgroup, false}};
  for (const auto& k : keys) {
    for (char op : {'=', '<', '>'}) {
      std::string line = std::string("measure ") + k.key + op + "1000";
      Rule r = parse_ok(line);
      const IdCond& c = r.*(k.slot);
      EXPECT_TRUE(c.set) << line;
      EXPECT_EQ(c.value, 1000u) << line;
      EXPECT_EQ(c.op, op == '=' ? CmpOp::kEq : op == '<' ? CmpOp::kLt : CmpOp::kGt) << line;
      EXPECT_EQ(c.effective, k.effective) << line;
    }
  }
}

TEST(ParserIds, SharedSlotsAndDuplicates) {
  EXPECT_TRUE(rejected_at("measure uid=0 euid=0", 1, 15, "euid=0", "share one slot"));
  EXPECT_TRUE(rejected_at("measure euid>5 uid<3", 1, 16, "uid<3", "share one slot"));
  EXPECT_TRUE(rejected_at("measure gid=0 egid=0", 1, 15, "egid=0", "share one slot"));
  EXPECT_TRUE(rejected_at("measure fowner=0 fowner>1", 1, 18, "fowner>1", "duplicate fowner"));
  EXPECT_TRUE(rejected_at("measure fgroup=0 fgroup<1", 1, 18, "fgroup<1", "duplicate fgroup"));
  // Different slots combine.
  Rule r = parse_ok("measure uid=1 egid=2 fowner=3 fgroup=4");
  EXPECT_TRUE(r.uid.set && r.gid.set && r.fowner.set && r.fgroup.set);
}

TEST(ParserIds, NumberSyntax) {
  EXPECT_EQ(parse_ok("measure uid=+7").uid.value, 7u);
  EXPECT_EQ(parse_ok("measure uid=007").uid.value, 7u);  // base 10, leading zeros
  EXPECT_EQ(parse_ok("measure uid=4294967294").uid.value, 4294967294u);
  EXPECT_TRUE(rejected_at("measure uid=4294967295", 1, 9, "uid=4294967295", "out of range"));
  EXPECT_TRUE(rejected_at("measure uid=4294967296", 1, 9, "uid=4294967296", "out of range"));
  EXPECT_TRUE(rejected_at("measure uid=0x10", 1, 9, "uid=0x10", "decimal"));
  EXPECT_TRUE(rejected_at("measure uid=-1", 1, 9, "uid=-1", "decimal"));
  EXPECT_TRUE(rejected_at("measure uid>=5", 1, 9, "uid>=5", "decimal"));
  EXPECT_TRUE(rejected_at("measure uid=", 1, 9, "uid=", "empty value"));
  EXPECT_TRUE(rejected_at("measure uid!5", 1, 9, "uid!5", "unknown token"));
}

TEST(ParserLists, KeyringsAndLabel) {
  Rule k = parse_ok("measure func=KEY_CHECK keyrings=.builtin_trusted_keys|.ima");
  ASSERT_TRUE(k.keyrings);
  EXPECT_EQ(*k.keyrings, (std::vector<std::string>{".builtin_trusted_keys", ".ima"}));
  Rule l = parse_ok("measure func=CRITICAL_DATA label=selinux|kernel_info");
  ASSERT_TRUE(l.labels);
  EXPECT_EQ(*l.labels, (std::vector<std::string>{"selinux", "kernel_info"}));
  EXPECT_TRUE(rejected_at("measure func=KEY_CHECK keyrings=.ima||_ima", 1, 24,
                          "keyrings=.ima||_ima", "empty items"));
  EXPECT_TRUE(
      rejected_at("measure func=KEY_CHECK keyrings=|.ima", 1, 24, "keyrings=|.ima", "empty items"));
  EXPECT_TRUE(
      rejected_at("measure func=KEY_CHECK keyrings=.ima|", 1, 24, "keyrings=.ima|", "empty items"));
  EXPECT_TRUE(rejected_at("measure func=KEY_CHECK keyrings=a keyrings=b", 1, 35, "keyrings=b",
                          "duplicate"));
  EXPECT_TRUE(
      rejected_at("measure func=CRITICAL_DATA label=a label=b", 1, 36, "label=b", "duplicate"));
}

TEST(ParserAppraiseType, ValuesAndVerityOrder) {
  Rule r = parse_ok("appraise func=BPRM_CHECK appraise_type=imasig");
  EXPECT_TRUE(r.digsig_required);
  EXPECT_TRUE(r.check_blacklist);
  EXPECT_FALSE(r.modsig_allowed);
  Rule m = parse_ok("appraise func=MODULE_CHECK appraise_type=imasig|modsig");
  EXPECT_TRUE(m.digsig_required && m.modsig_allowed);
  Rule v = parse_ok("appraise func=BPRM_CHECK digest_type=verity appraise_type=sigv3");
  EXPECT_TRUE(v.digsig_required && v.verity_required);
  // sigv3 only after digest_type=verity; imasig never after it.
  EXPECT_TRUE(rejected_at("appraise func=BPRM_CHECK appraise_type=sigv3", 1, 26,
                          "appraise_type=sigv3", "requires digest_type=verity"));
  EXPECT_TRUE(rejected_at("appraise func=BPRM_CHECK digest_type=verity appraise_type=imasig", 1, 45,
                          "appraise_type=imasig", "cannot follow digest_type=verity"));
  EXPECT_TRUE(
      rejected_at("appraise func=MODULE_CHECK digest_type=verity appraise_type=imasig|modsig", 1,
                  47, "appraise_type=imasig|modsig", "cannot follow"));
  // digest_type after a signature requirement is refused outright.
  EXPECT_TRUE(rejected_at("appraise func=BPRM_CHECK appraise_type=imasig digest_type=verity", 1, 47,
                          "digest_type=verity", "must come before appraise_type"));
  EXPECT_TRUE(rejected_at("appraise appraise_type=modsig", 1, 10, "appraise_type=modsig",
                          "unknown appraise_type"));
  // No duplicate check in the kernel for appraise_type= or digest_type=.
  EXPECT_TRUE(accepted("appraise appraise_type=imasig appraise_type=imasig"));
  EXPECT_TRUE(accepted("measure digest_type=verity digest_type=verity"));
  EXPECT_TRUE(rejected_at("measure digest_type=hash", 1, 9, "digest_type=hash", "only verity"));
}

TEST(ParserAppraiseFlag, ParsedAndIgnored) {
  Rule r = parse_ok("appraise func=MODULE_CHECK appraise_flag=check_blacklist");
  EXPECT_FALSE(r.digsig_required);
  EXPECT_EQ(r.to_string(), "appraise func=MODULE_CHECK ");
  // Any value, any action: only logged by 6.12.
  EXPECT_TRUE(accepted("measure appraise_flag=whatever"));
}

TEST(ParserAppraiseAlgos, KernelHashNames) {
  Rule r = parse_ok("appraise func=BPRM_CHECK appraise_algos=sha512,sha256,sha3-256");
  EXPECT_EQ(r.appraise_algo_names(), (std::vector<std::string>{"sha256", "sha512", "sha3-256"}));
  for (const char* algo : {"md4", "md5", "sha1", "rmd160", "sha224", "sha384", "wp256", "wp384",
                           "wp512", "streebog256", "streebog512", "sha3-384", "sha3-512"})
    EXPECT_TRUE(accepted(std::string("appraise appraise_algos=") + algo)) << algo;
  EXPECT_TRUE(rejected_at("appraise appraise_algos=sha256,", 1, 10, "appraise_algos=sha256,",
                          "unknown hash algorithm ''"));
  EXPECT_TRUE(rejected_at("appraise appraise_algos=SHA256", 1, 10, "appraise_algos=SHA256",
                          "unknown hash algorithm"));
  EXPECT_TRUE(rejected_at("appraise appraise_algos=tgr192", 1, 10, "appraise_algos=tgr192",
                          "not available"));
  EXPECT_TRUE(rejected_at("appraise appraise_algos=sha1 appraise_algos=sha256", 1, 30,
                          "appraise_algos=sha256", "duplicate"));
}

TEST(ParserPcr, RangeAndRepeat) {
  EXPECT_EQ(parse_ok("measure pcr=0").pcr, 0);
  EXPECT_EQ(parse_ok("measure pcr=63").pcr, 63);
  EXPECT_EQ(parse_ok("measure pcr=+5").pcr, 5);
  EXPECT_EQ(parse_ok("measure pcr=-0").pcr, 0);         // kstrtoint("-0") is 0
  EXPECT_EQ(parse_ok("measure pcr=4 pcr=11").pcr, 11);  // no duplicate check: last wins
  EXPECT_TRUE(rejected_at("measure pcr=64", 1, 9, "pcr=64", "0 to 63"));
  EXPECT_TRUE(rejected_at("measure pcr=-1", 1, 9, "pcr=-1", "0 to 63"));
  EXPECT_TRUE(rejected_at("measure pcr=x", 1, 9, "pcr=x", "0 to 63"));
  EXPECT_TRUE(rejected_at("measure pcr=99999999999", 1, 9, "pcr=99999999999", "0 to 63"));
}

TEST(ParserTemplate, NamesFormatsAndOrder) {
  for (std::string_view name : {"ima-ng", "ima-sig", "ima"}) {
    const TemplateDesc* t = find_template(name);
    ASSERT_NE(t, nullptr) << name;
    EXPECT_EQ(parse_ok("measure template=" + std::string(t->name)).template_name, t->name);
    // A format string finds the template that has it; read-back shows the name.
    EXPECT_EQ(parse_ok("measure template=" + std::string(t->fmt)).template_name, t->name);
  }
  EXPECT_TRUE(rejected_at("measure func=BPRM_CHECK template=ima-sigv3", 1, 25, "template=ima-sigv3",
                          "no kernel defines ima-sigv3"));
  EXPECT_TRUE(rejected_at("measure template=d-ng|n-ng|iuid", 1, 9, "template=d-ng|n-ng|iuid",
                          "unknown template"));
  // A custom format string names what nsima can write instead.
  EXPECT_TRUE(rejected_at("measure template=d-ng|n-ng|iuid", 1, 9, "template=d-ng|n-ng|iuid",
                          "nsima produces ima-ng, ima-sig and ima"));
  EXPECT_TRUE(rejected_at("template=ima-sig measure", 1, 1, "template=ima-sig",
                          "only valid after the measure action"));
  EXPECT_TRUE(rejected_at("dont_measure template=ima-sig", 1, 14, "template=ima-sig",
                          "only valid after the measure action"));
  EXPECT_TRUE(rejected_at("appraise template=ima-sig", 1, 10, "template=ima-sig",
                          "only valid after the measure action"));
  EXPECT_TRUE(rejected_at("measure template=ima-sig template=ima-ng", 1, 26, "template=ima-ng",
                          "duplicate template"));
}

// Templates the kernel knows but nsima's pipeline cannot fill are refused where the rule names
// them (by name or by format string), instead of being replaced by the namespace's default.
TEST(ParserTemplate, TemplatesNsimaCannotProduceAreRefused) {
  size_t refused = 0;
  for (const auto& t : builtin_templates()) {
    if (template_produced(t.name)) continue;
    ++refused;
    std::string name(t.name);
    std::string why = "nsima cannot produce the " + name +
                      " template yet: it writes ima-ng, ima-sig and ima entries only";
    EXPECT_TRUE(rejected_at("measure func=FILE_CHECK template=" + name, 1, 25,
                            "template=" + name, why));
    EXPECT_TRUE(rejected_at("measure func=FILE_CHECK template=" + std::string(t.fmt), 1, 25,
                            "template=" + std::string(t.fmt), why));
    // Also on a func nsima never sees, and in a whole policy (file:line:column).
    EXPECT_TRUE(rejected_at("measure func=BPRM_CHECK\nmeasure func=KEY_CHECK template=" + name,
                            2, 24, "template=" + name, why));
  }
  // ima-ngv2, ima-sigv2, ima-buf, ima-modsig, evm-sig.
  EXPECT_EQ(refused, 5u);
  // The kernel's own checks come first: their message wins over nsima's.
  EXPECT_TRUE(rejected_at("measure func=KEY_CHECK mask=MAY_READ template=ima-buf", 1, 24,
                          "mask=MAY_READ", "not allowed with func=KEY_CHECK"));
  // check_rules (nsimactl policy check) reports it with the others.
  auto errors = check_rules("measure template=ima-modsig\nmeasure func=NOPE\n", "c.policy");
  ASSERT_EQ(errors.size(), 2u);
  EXPECT_EQ(errors[0].where, "c.policy:1:9");
  EXPECT_NE(errors[0].message.find("nsima cannot produce the ima-modsig template"),
            std::string::npos)
      << errors[0].to_string();
}

TEST(ParserPermitDirectio, BareFlag) {
  EXPECT_TRUE(parse_ok("measure permit_directio").permit_directio);
  EXPECT_TRUE(parse_ok("measure permit_directio permit_directio").permit_directio);
  EXPECT_TRUE(rejected_at("measure permit_directio=1", 1, 9, "permit_directio=1", "unknown"));
}

TEST(ParserLsm, ParsedThenRejected) {
  for (const char* f :
       {"obj_user", "obj_role", "obj_type", "subj_user", "subj_role", "subj_type"}) {
    std::string tok = std::string(f) + "=system_u";
    EXPECT_TRUE(
        rejected_at("measure func=FILE_CHECK " + tok, 1, 25, tok, "nsima cannot see LSM labels"))
        << f;
  }
  // Syntax errors elsewhere in the rule come first: the LSM refusal is the last check.
  EXPECT_TRUE(rejected_at("measure obj_type=a func=NOPE", 1, 20, "func=NOPE", "unknown func"));
  EXPECT_TRUE(rejected_at("measure obj_type=a obj_type=b", 1, 20, "obj_type=b", "duplicate"));
}

TEST(ParserLines, CommentsBlanksAndSeparators) {
  Policy p = policy_ok(
      "# a comment\n"
      "\n"
      "   \t  \n"
      "  # indented comment\n"
      "\tmeasure\tfunc=BPRM_CHECK   mask=MAY_EXEC  \n"
      "dont_measure fsmagic=0x9fa0");  // no final newline
  ASSERT_EQ(p.size(), 2u);
  EXPECT_EQ(p.rule(0).line, 5u);
  EXPECT_EQ(p.rule(0).text, "\tmeasure\tfunc=BPRM_CHECK   mask=MAY_EXEC  ");
  EXPECT_EQ(p.rule(1).line, 6u);
}

TEST(ParserLines, TrailingCommentIsAnError) {
  EXPECT_TRUE(rejected_at("measure func=BPRM_CHECK # exec", 1, 25, "#", "own"));
}

TEST(ParserLines, CarriageReturnIsAnError) {
  // The kernel splits on spaces and tabs only: "FILE_CHECK\r" is not a func.
  // Messages show the carriage return escaped, never raw (it would move a terminal's cursor).
  EXPECT_TRUE(rejected_at("measure\r\n", 1, 1, "measure\\r", "carriage return"));
  EXPECT_TRUE(rejected_at("dont_measure fsmagic=0x9fa0\n\r\n", 2, 1, "\\r", "carriage return"));
  // Inside a value: the value's own error, and the CRLF hint.
  EXPECT_TRUE(rejected_at("measure func=BPRM_CHECK\r\n", 1, 9, "func=BPRM_CHECK\\r",
                          "unknown func 'BPRM_CHECK\\r' (did you mean 'BPRM_CHECK'?) (a carriage "
                          "return is part of it: CRLF line endings?)"));
}

TEST(ParserHints, NearestKeywordForATypo) {
  EXPECT_TRUE(rejected_at("mesure func=BPRM_CHECK", 1, 1, "mesure", "unknown token (did you mean 'measure'?)"));
  EXPECT_TRUE(rejected_at("dont_mesure", 1, 1, "dont_mesure", "(did you mean 'dont_measure'?)"));
  EXPECT_TRUE(rejected_at("measure fnc=BPRM_CHECK", 1, 9, "fnc=BPRM_CHECK",
                          "unknown token (did you mean 'func=BPRM_CHECK'?)"));
  EXPECT_TRUE(rejected_at("measure func=BPRM_CHEK", 1, 9, "func=BPRM_CHEK",
                          "unknown func 'BPRM_CHEK' (did you mean 'BPRM_CHECK'?)"));
  EXPECT_TRUE(rejected_at("measure mask=^MAY_REED", 1, 9, "mask=^MAY_REED",
                          "unknown mask '^MAY_REED' (did you mean '^MAY_READ'?)"));
  // Nothing near: no guess, the known names instead.
  EXPECT_TRUE(rejected_at("measure func=NOTHING_LIKE_IT", 1, 9, "func=NOTHING_LIKE_IT",
                          "(known: FILE_CHECK"));
  auto p = Policy::parse("zzz", "t.policy");
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().message, "'zzz': unknown token");
}

TEST(ParserHints, BinaryAndHugeTokensAreEscapedAndCut) {
  std::string bin = "measure func=";
  for (int i = 0; i < 3000; ++i) bin += "\x01\xff";
  auto p = Policy::parse(bin, "t.policy");
  ASSERT_FALSE(p);
  const std::string& m = p.error().message;
  EXPECT_EQ(m.rfind("'func=\\x01\\xff\\x01", 0), 0u) << m;
  EXPECT_NE(m.find("... (6005 bytes)'"), std::string::npos) << m;
  EXPECT_LT(m.size(), 700u) << m;
  for (unsigned char c : m) EXPECT_TRUE(c >= 0x20 && c < 0x7f) << m;
}

TEST(ParserHints, APolicyOverTheLimitIsRefusedWhole) {
  std::string big;
  while (big.size() <= kMaxPolicyBytes) big += "measure func=BPRM_CHECK\n";
  auto p = Policy::parse(big, "big.policy");
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().code, EFBIG);
  EXPECT_EQ(p.error().to_string(), "big.policy: policy is " + std::to_string(big.size()) +
                                       " bytes, more than the 4194304 bytes nsima loads");
  auto errors = check_rules(big, "big.policy");
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].code, EFBIG);
}

TEST(ParserLines, EmptyPolicyIsAnError) {
  for (const char* text : {"", "# only comments\n\n", "\n \t\n"}) {
    auto p = Policy::parse(text, "t.policy");
    ASSERT_FALSE(p);
    EXPECT_EQ(p.error().where, "t.policy:1:1");
    EXPECT_EQ(p.error().message, "policy has no rules (the kernel refuses an empty policy)");
  }
}

TEST(ParserErrors, PositionIsLineAndColumnOfTheToken) {
  std::string text =
      "# header\n"
      "measure func=BPRM_CHECK\n"
      "\n"
      "dont_measure fsmagic=0x9fa0\n"
      "measure func=FILE_CHECK\tmask=MAY_RAED uid=0\n";
  // Tabs count as one byte: the mask token starts at byte 25.
  EXPECT_TRUE(rejected_at(text, 5, 25, "mask=MAY_RAED", "unknown mask"));
}

TEST(ParserErrors, WholePolicyOrNothing) {
  auto p = Policy::parse("measure func=BPRM_CHECK\nmeasure func=NOPE\n", "t.policy");
  EXPECT_FALSE(p);
}

TEST(ParserErrors, CheckRulesReportsEveryError) {
  auto errors = check_rules("measure func=NOPE\nmeasure\nappraise pcr=1\nhash x\n", "f");
  ASSERT_EQ(errors.size(), 3u);
  EXPECT_EQ(errors[0].where, "f:1:9");
  EXPECT_EQ(errors[1].where, "f:3:10");
  EXPECT_EQ(errors[2].where, "f:4:6");
}

TEST(ParserErrors, UnknownTokens) {
  EXPECT_TRUE(rejected_at("measure foo", 1, 9, "foo", "unknown token"));
  EXPECT_TRUE(rejected_at("measure foo=bar", 1, 9, "foo=bar", "unknown token"));
  EXPECT_TRUE(rejected_at("measure fsname<x", 1, 9, "fsname<x", "only the = operator"));
  EXPECT_TRUE(rejected_at("measure \"func=BPRM_CHECK\"", 1, 9, "\"func=BPRM_CHECK\"", "unknown"));
}

TEST(ParserRule, KeepsProvenance) {
  auto r = parse_rule("  measure func=BPRM_CHECK ", "x.policy", 42);
  ASSERT_TRUE(r);
  EXPECT_EQ(r->line, 42u);
  EXPECT_EQ(r->text, "  measure func=BPRM_CHECK ");
}

}  // namespace
}  // namespace nsima::policy
