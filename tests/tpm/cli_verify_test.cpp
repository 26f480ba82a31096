// SPDX-License-Identifier: Apache-2.0
// `nsimactl verify` and `nsimactl vtpm` against a pipeline with real swtpm vTPMs (nsimactl runs as
// a child against the control server in this process):
//   - online: a vTPM namespace verifies (EK certificate to the CA nsimactl prints, credential
//     activation, quote, replay); a namespace without a vTPM verifies through its owner, with
//     the owner-copy check;
//   - the host list records the vTPM's creation and deletion with the EK public digest, which
//     openssl computes alike from the EK certificate tpm2_nvread reads;
//   - offline over the saved evidence: passes; a flipped list byte fails (list-replay); a quote
//     signed by another vTPM's AK, presented with this vTPM's EK, fails (ak-binding); a child
//     list byte flipped fails owner-copy; --pcrs files replay.
#include <sys/wait.h>

#include <cctype>
#include <cstdio>

#include "cli_fixture.h"

namespace nsima::ns {
namespace pipetest {
namespace {

std::string slurp(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

class CliVerifyTest : public CliServedTest {
 protected:
  void SetUp() override {
    CliServedTest::SetUp();
    opts_.vtpm_ek_cert = true;
  }
  // A vTPM namespace with a measuring policy and a few measured files.
  std::string vtpm_ns(const std::string& name) {
    Pipeline::CreateOptions o;
    o.vtpm = true;
    o.policy_text = "measure func=FILE_CHECK mask=^MAY_READ\n";
    o.policy_origin = "t.policy";
    auto id = p_->create_namespace(cgroup(name), o);
    EXPECT_TRUE(id) << id.error().to_string();
    if (!id) return "";
    for (int i = 0; i < 3; ++i)
      submit(read_event(file(name + std::to_string(i), name + "x" + std::to_string(i)), *id));
    return std::to_string(*id);
  }

};

TEST_F(CliVerifyTest, OnlineAndOfflineVerification) {
  start();
  serve();
  const std::string a = vtpm_ns("a");
  ASSERT_FALSE(a.empty());
  const std::string ca = dir_ + "/ca.pem";
  Out c = sh(nsimactl("vtpm ca-cert > " + ca));
  ASSERT_EQ(c.rc, 0) << c.text;
  ASSERT_NE(slurp(ca).find("BEGIN CERTIFICATE"), std::string::npos);

  // Online.
  const std::string ev = dir_ + "/ev";
  Out v = sh(nsimactl("verify --ns " + a + " --ca " + ca + " --save " + ev));
  EXPECT_EQ(v.rc, 0) << v.text;
  for (const char* k : {"ok     ek-cert", "ok     ak-binding", "ok     quote-signature",
                        "ok     nonce", "ok     pcr-digest", "ok     list-replay",
                        "verified: namespace " })
    EXPECT_NE(v.text.find(k), std::string::npos) << k << "\n" << v.text;
  Out j = sh(nsimactl("verify --json --ns " + a + " --ca " + ca));
  EXPECT_EQ(j.rc, 0) << j.text;
  auto js = nlohmann::json::parse(j.text, nullptr, false);
  ASSERT_TRUE(js.is_object()) << j.text;
  EXPECT_TRUE(js.value("ok", false));
  EXPECT_EQ(js.value("attested", 0), 4);  // boot_aggregate + 3 files

  // The host list: the creation entry names the namespace and the EK digest, and that digest is
  // what openssl computes from the EK certificate in the vTPM.
  auto inst = p_->vtpm_identity(a);
  ASSERT_TRUE(inst) << inst.error().to_string();
  {
    std::ofstream(dir_ + "/ek.der", std::ios::binary)
        .write(reinterpret_cast<const char*>(inst->id.ek_cert.data()),
               static_cast<std::streamsize>(inst->id.ek_cert.size()));
  }
  Out dg = sh("openssl x509 -inform DER -in " + dir_ + "/ek.der -pubkey -noout | openssl pkey "
              "-pubin -outform DER | sha256sum");
  ASSERT_EQ(dg.rc, 0) << dg.text;
  const std::string ek_hex = dg.text.substr(0, 64);
  std::string host = list("host");
  EXPECT_NE(host.find("nsima:ns-" + a + "-vtpm-created:ek-sha256:" + ek_hex), std::string::npos)
      << host;
  // A measured entry, not a violation: its template hash column is not zero.
  auto line_start = host.rfind('\n', host.find("vtpm-created")) + 1;
  EXPECT_NE(host.substr(line_start + 3, 40), std::string(40, '0')) << host;

  // Offline over the saved evidence.
  const std::string off = nsimactl("verify --list " + ev + "/binary_runtime_measurements --quote " +
                                   ev + " --identity " + ev + " --ca " + ca);
  Out o1 = sh(off + " --trusted-ak " + ev + "/ak.pub");
  EXPECT_EQ(o1.rc, 0) << o1.text;
  // Without a bound AK the offline verify refuses to trust the AK.
  Out o2 = sh(off);
  EXPECT_EQ(o2.rc, 1) << o2.text;
  EXPECT_NE(o2.text.find("FAILED ak-binding"), std::string::npos) << o2.text;
  // A flipped list byte (inside the last entry's path).
  std::string bin = slurp(ev + "/binary_runtime_measurements");
  ASSERT_GT(bin.size(), 10u);
  std::string bad = bin;
  bad[bad.size() - 3] ^= 0x01;
  std::ofstream(dir_ + "/bad.list", std::ios::binary) << bad;
  Out o3 = sh(nsimactl("verify --list " + dir_ + "/bad.list --quote " + ev + " --identity " + ev +
                       " --ca " + ca + " --trusted-ak " + ev + "/ak.pub"));
  EXPECT_EQ(o3.rc, 1) << o3.text;
  EXPECT_NE(o3.text.find("FAILED list-replay"), std::string::npos) << o3.text;
  EXPECT_NE(o3.text.find("verification of namespace"), std::string::npos) << o3.text;

  // A quote signed by another vTPM's AK, presented with this vTPM's EK certificate.
  const std::string b = vtpm_ns("b");
  ASSERT_FALSE(b.empty());
  const std::string evb = dir_ + "/evb";
  Out vb = sh(nsimactl("verify --ns " + b + " --ca " + ca + " --save " + evb));
  ASSERT_EQ(vb.rc, 0) << vb.text;
  fs::copy_file(ev + "/ek.pub", evb + "/ek.pub", fs::copy_options::overwrite_existing);
  fs::copy_file(ev + "/ek.crt", evb + "/ek.crt", fs::copy_options::overwrite_existing);
  Out o4 = sh(nsimactl("verify --list " + evb + "/binary_runtime_measurements --quote " + evb +
                       " --identity " + evb + " --ca " + ca + " --trusted-ak " + ev + "/ak.pub"));
  EXPECT_EQ(o4.rc, 1) << o4.text;
  EXPECT_NE(o4.text.find("ok     ek-cert"), std::string::npos) << o4.text;
  EXPECT_NE(o4.text.find("FAILED ak-binding"), std::string::npos) << o4.text;

  // Deletion is recorded too, with the same EK digest.
  ASSERT_TRUE(p_->delete_namespace(a));
  host = list("host");
  EXPECT_NE(host.find("nsima:ns-" + a + "-vtpm-deleted:ek-sha256:" + ek_hex), std::string::npos)
      << host;
}

TEST_F(CliVerifyTest, NamespaceWithoutVtpmIsVerifiedThroughItsOwner) {
  start();
  serve();
  const std::string parent = vtpm_ns("p");
  ASSERT_FALSE(parent.empty());
  Pipeline::CreateOptions o;
  o.policy_text = "measure func=FILE_CHECK mask=^MAY_READ\n";
  o.policy_origin = "t.policy";
  auto child = p_->create_namespace(cgroup("p/c"), o);
  ASSERT_TRUE(child) << child.error().to_string();
  for (int i = 0; i < 2; ++i)
    submit(read_event(file("c" + std::to_string(i), "cx" + std::to_string(i)), *child));
  const std::string ca = dir_ + "/ca.pem";
  ASSERT_EQ(sh(nsimactl("vtpm ca-cert > " + ca)).rc, 0);
  const std::string c = std::to_string(*child);
  const std::string ev = dir_ + "/ev";
  Out v = sh(nsimactl("verify --ns " + c + " --ca " + ca + " --save " + ev));
  EXPECT_EQ(v.rc, 0) << v.text;
  EXPECT_NE(v.text.find("ok     owner-copy: 2 entries"), std::string::npos) << v.text;
  // Its identity request says where it is attested.
  Out idc = sh(nsimactl("vtpm identity --ns " + c + " --out " + dir_ + "/idc"));
  EXPECT_EQ(idc.rc, 1) << idc.text;
  EXPECT_NE(idc.text.find("has no vTPM"), std::string::npos) << idc.text;

  // Offline owner-copy: the child's list against the owner's saved list.
  const std::string cl = dir_ + "/child.list";
  ASSERT_EQ(sh(nsimactl("log --ns " + c + " --format binary > " + cl)).rc, 0);
  const std::string off = nsimactl("verify --owner-list " + ev + "/binary_runtime_measurements --quote " +
                                   ev + " --identity " + ev + " --ca " + ca + " --trusted-ak " +
                                   ev + "/ak.pub --list ");
  Out o1 = sh(off + cl);
  EXPECT_EQ(o1.rc, 0) << o1.text;
  std::string bad = slurp(cl);
  bad[bad.size() - 2] ^= 0x01;
  std::ofstream(dir_ + "/bad.list", std::ios::binary) << bad;
  Out o2 = sh(off + dir_ + "/bad.list");
  EXPECT_EQ(o2.rc, 1) << o2.text;
  EXPECT_NE(o2.text.find("FAILED owner-copy"), std::string::npos) << o2.text;

  // --pcrs files (nsimactl pcr --evmctl) replay the owner's list, unsigned.
  ASSERT_EQ(sh(nsimactl("pcr --ns " + parent + " --evmctl " + dir_ + "/evm")).rc, 0);
  Out o3 = sh(nsimactl("verify --list " + dir_ + "/evm/binary_runtime_measurements --pcrs sha256," +
                       dir_ + "/evm/pcrs-sha256.txt"));
  EXPECT_EQ(o3.rc, 0) << o3.text;
  EXPECT_NE(o3.text.find("not signed"), std::string::npos) << o3.text;
}

}  // namespace
}  // namespace pipetest
}  // namespace nsima::ns
