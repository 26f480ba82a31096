// SPDX-License-Identifier: Apache-2.0
// The pipeline without BPF (events built from real files on this host) against a real swtpm as
// host TPM: policies per namespace and hierarchy, lists whose PCR (read with tpm2_pcrread)
// equals their replay, shared children recorded in the owner's list, pcr= refused where it would
// reach another component's PCR, violations for files that changed identity, and restart
// recovery: a logged but unextended entry is extended, a list that disagrees with its PCR stops.
#include "pipeline_fixture.h"

namespace nsima::ns {
namespace {

using pipetest::PipelineTest;
using pipetest::sha256_file;
namespace fs = std::filesystem;

TEST_F(PipelineTest, HierarchyListsAndHostPcr) {
  start();
  ASSERT_TRUE(p_->load_policy("host", "measure func=FILE_CHECK mask=^MAY_READ uid=0\n", "h"));
  Pipeline::CreateOptions o;
  o.policy_text = "measure func=FILE_CHECK mask=^MAY_READ\n";
  o.policy_origin = "child.policy";
  auto a = p_->create_namespace(cgroup("a"), o);
  ASSERT_TRUE(a) << a.error().to_string();
  auto f1 = file("one", "1"), f2 = file("two", "22"), f3 = file("three", "333");
  submit(read_event(f1, kHostNsId));
  submit(read_event(f2, *a));        // root in the child: both lists
  submit(read_event(f3, *a, 1000));  // uid 1000 in the child: child's list only
  submit(read_event(f1, kHostNsId));  // repeat: nothing new

  std::string host = list("host"), child = list(std::to_string(*a));
  EXPECT_NE(host.find("ima-ng sha256:" + sha256_file(f1) + " " + f1 + "\n"), std::string::npos)
      << host;
  EXPECT_NE(host.find(f2 + "\n"), std::string::npos);
  EXPECT_NE(child.find("ima-ng sha256:" + sha256_file(f3) + " " + f3 + "\n"), std::string::npos);
  EXPECT_EQ(child.find(f1), std::string::npos);
  // the host owns the TPM: the child's entries are recorded in its list too (f3 via the copy)
  std::istringstream lines(child);
  std::string line;
  std::getline(lines, line);  // boot_aggregate, not copied
  while (std::getline(lines, line))
    EXPECT_NE(host.find(line + "\n"), std::string::npos) << "not in the owner's list: " << line;
  EXPECT_EQ(std::count(host.begin(), host.end(), '\n'), 4) << host;  // boot_aggregate + 3
  expect_pcr_matches_list("host");
  auto info = p_->namespace_info(std::to_string(*a));
  ASSERT_TRUE(info);
  EXPECT_EQ(info->owner, "host");
  EXPECT_EQ(info->pcr, 23);
}

TEST_F(PipelineTest, PcrOfAnotherComponentIsRefused) {
  start();
  auto r = p_->load_policy("host", "measure func=FILE_CHECK pcr=11\n", "bad.policy");
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("PCR 11 of the host TPM"), std::string::npos)
      << r.error().to_string();
  EXPECT_EQ(r.error().where, "bad.policy:1");
  EXPECT_TRUE(p_->load_policy("host", "measure func=FILE_CHECK pcr=23\n", "ok.policy"));
}

TEST_F(PipelineTest, ChangedFileIsAViolationNotASkip) {
  start();
  ASSERT_TRUE(p_->load_policy("host", "measure func=FILE_CHECK\n", "p"));
  auto f = file("swap", "old");
  Event ev = read_event(f, kHostNsId);
  fs::remove(f);
  file("swap", "new content, new inode");
  submit(ev);
  std::string host = list("host");
  // named for what happened: the path now names another inode
  EXPECT_NE(host.find("ima-ng sha256:" + std::string(64, '0') + " nsima:unreadable:replaced:" + f +
                      "\n"),
            std::string::npos)
      << host;
  EXPECT_EQ(p_->namespace_info("host")->violations, 1u);
  expect_pcr_matches_list("host");  // the violation extended 0xFF..
}

TEST_F(PipelineTest, RestartFinishesUnextendedEntries) {
  start();
  ASSERT_TRUE(p_->load_policy("host", "measure func=FILE_CHECK\n", "p"));
  submit(read_event(file("a", "a"), kHostNsId));
  auto view = p_->list_view("host");
  ASSERT_TRUE(view);
  p_->stop();
  p_.reset();
  {
    // As if nsimad died between writing an entry and extending it.
    measure::ListConfig lc;
    lc.default_pcr = 23;
    lc.banks = {measure::HashAlgo::kSha1, measure::HashAlgo::kSha256,
                measure::HashAlgo::kSha384, measure::HashAlgo::kSha512};
    auto l = measure::MeasurementList::open(opts_.state_dir + "/ns/host", lc);
    ASSERT_TRUE(l) << l.error().to_string();
    measure::Entry e;
    e.digest = *measure::Digest::from_hex(measure::HashAlgo::kSha256, std::string(64, 'a'));
    e.name = "/logged/but/not/extended";
    auto out = l->append(e);
    ASSERT_TRUE(out && out->added);
  }
  start();
  EXPECT_NE(list("host").find("/logged/but/not/extended"), std::string::npos);
  EXPECT_FALSE(p_->namespace_info("host")->disabled);
  expect_pcr_matches_list("host");
}

TEST_F(PipelineTest, ListThatDisagreesWithItsPcrStops) {
  start();
  ASSERT_TRUE(p_->load_policy("host", "measure func=FILE_CHECK\n", "p"));
  submit(read_event(file("a", "a"), kHostNsId));
  p_->stop();
  p_.reset();
  {
    auto t = tpm::EsysTpm::open(tpm_.tcti());
    ASSERT_TRUE(t);
    std::vector<tpm::BankDigest> ds;
    auto banks = (*t)->banks();
    ASSERT_TRUE(banks);
    for (auto b : *banks)
      ds.push_back({b, std::vector<uint8_t>(tpm::bank_digest_size(b), 0x42)});
    ASSERT_TRUE((*t)->extend(23, ds));  // someone else extended nsima's PCR
  }
  start();
  auto info = p_->namespace_info("host");
  ASSERT_TRUE(info);
  EXPECT_TRUE(info->disabled);
  EXPECT_NE(info->disabled_reason.find("does not replay to PCR 23"), std::string::npos)
      << info->disabled_reason;
  // and it measures nothing more
  uint64_t before = info->entries;
  submit(read_event(file("b", "b"), kHostNsId));
  EXPECT_EQ(p_->namespace_info("host")->entries, before);
}

TEST_F(PipelineTest, NamespacesAndPoliciesSurviveRestart) {
  start();
  Pipeline::CreateOptions o;
  o.policy_text = "measure func=FILE_CHECK\n";
  o.policy_origin = "child.policy";
  const std::string cg_a = cgroup("a");
  auto a = p_->create_namespace(cg_a, o);
  ASSERT_TRUE(a);
  submit(read_event(file("x", "x"), *a));
  std::string before = list(std::to_string(*a));
  restart();
  auto info = p_->namespace_info(std::to_string(*a));
  ASSERT_TRUE(info);
  EXPECT_EQ(info->cgroup_path, cg_a);
  EXPECT_EQ(info->policy_origin, "child.policy");
  EXPECT_EQ(list(std::to_string(*a)), before);
  submit(read_event(file("y", "y"), *a));  // continues the same list
  EXPECT_NE(list(std::to_string(*a)).find(dir_ + "/files/y"), std::string::npos);
  expect_pcr_matches_list("host");
  // deleting archives the list and forgets the namespace
  ASSERT_TRUE(p_->delete_namespace(std::to_string(*a)));
  EXPECT_FALSE(p_->namespace_info(std::to_string(*a)));
  EXPECT_TRUE(fs::exists(opts_.state_dir + "/archive"));
}

}  // namespace
}  // namespace nsima::ns
