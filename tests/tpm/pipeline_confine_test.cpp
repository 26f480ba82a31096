// SPDX-License-Identifier: Apache-2.0
// The pipeline with its confined parser (daemon/confine), as nsimad runs it: security.ima values
// read for an appraisal and the manifests of `digests load` are parsed by nsima-parse-test; a
// parse that crashes or hangs is a failed appraisal (audit line `malformed: parser-crashed` /
// `parser-timeout`) or a refused load naming it, and the next parse works.
#include <sys/xattr.h>

#include <fstream>

#include "measure/hasher.h"
#include "pipeline_fixture.h"

namespace nsima::ns {
namespace pipetest {
namespace {

class PipelineConfineTest : public PipelineTest {
 protected:
  void SetUp() override {
    PipelineTest::SetUp();
    opts_.parser = std::make_shared<confine::Parser>(
        confine::ParserOptions{NSIMA_PARSE_TEST_BIN, std::chrono::milliseconds(500), 2});
  }
  Pipeline::CreateOptions appraising() {
    Pipeline::CreateOptions o;
    o.vtpm = false;
    o.appraise = "enforce";
    o.policy_text = "measure func=FILE_CHECK mask=^MAY_READ\nappraise func=FILE_CHECK mask=^MAY_READ\n";
    o.policy_origin = "ns.policy";
    return o;
  }
  // A file whose security.ima is `value`.
  std::string signed_file(const std::string& name, const std::string& content, std::string value) {
    std::string p = file(name, content);
    EXPECT_EQ(::setxattr(p.c_str(), "security.ima", value.data(), value.size(), 0), 0) << p;
    return p;
  }
  std::string audit_text(const std::string& ns) {
    auto path = p_->audit_path(ns);
    EXPECT_TRUE(path) << path.error().to_string();
    std::ifstream in(*path);
    return {std::istreambuf_iterator<char>(in), {}};
  }
};

std::string sha256_ng(const std::string& content) {
  auto d = measure::hash_bytes(measure::HashAlgo::kSha256,
                               {reinterpret_cast<const uint8_t*>(content.data()), content.size()});
  std::string v = {0x04, 0x04};
  v.append(reinterpret_cast<const char*>(d->data()), d->size());
  return v;
}

TEST_F(PipelineConfineTest, SecurityImaIsParsedByTheWorker) {
  start();
  auto ns = p_->create_namespace(cgroup("c"), appraising());
  ASSERT_TRUE(ns) << ns.error().to_string();
  const std::string id = std::to_string(*ns);
  ASSERT_TRUE(opts_.parser->start());  // as nsimad does at start-up
  ASSERT_EQ(opts_.parser->worker_pids().size(), 2u);
  const uint64_t parses = opts_.parser->stats().parses;

  submit(read_event(signed_file("good", "good\n", sha256_ng("good\n")), *ns));
  EXPECT_GT(opts_.parser->stats().parses, parses) << "security.ima was not parsed by the worker";
  EXPECT_EQ(p_->counters().appraise_failed, 0u) << audit_text(id);

  submit(read_event(signed_file("crash", "c\n", "\x04nsima-test:abort"), *ns));
  submit(read_event(signed_file("hang", "h\n", "\x04nsima-test:loop"), *ns));
  EXPECT_EQ(p_->counters().appraise_failed, 2u);
  const std::string audit = audit_text(id);
  EXPECT_NE(audit.find(R"("malformed":"parser-crashed")"), std::string::npos) << audit;
  EXPECT_NE(audit.find(R"("malformed":"parser-timeout")"), std::string::npos) << audit;
  EXPECT_NE(audit.find("SIGABRT"), std::string::npos) << audit;

  // The pipeline goes on: the next value is parsed (by a new worker) and passes.
  submit(read_event(signed_file("after", "after\n", sha256_ng("after\n")), *ns));
  EXPECT_EQ(p_->counters().appraise_failed, 2u) << audit_text(id);
  EXPECT_EQ(p_->counters().appraised, 4u);
}

TEST_F(PipelineConfineTest, DigestsLoadIsParsedByTheWorker) {
  start();
  auto ns = p_->create_namespace(cgroup("d"), appraising());
  ASSERT_TRUE(ns) << ns.error().to_string();
  const std::string id = std::to_string(*ns);
  const std::string line = std::string(64, 'a') + "  /usr/bin/a\n";
  auto ok = p_->digests_load(id, line, "a.sha256", {});
  ASSERT_TRUE(ok) << ok.error().to_string();
  EXPECT_EQ(ok->added, 1u);
  auto bad = p_->digests_load(id, "not a manifest\n", "bad.sha256", {});
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().to_string(), "bad.sha256:1: line does not start with a hex digest");
  auto crash = p_->digests_load(id, line, "nsima-test:abort", {});
  ASSERT_FALSE(crash);
  EXPECT_EQ(crash.error().to_string().rfind("nsima-test:abort: the manifest could not be parsed: "
                                            "parser-crashed: nsima-parse (pid ",
                                            0),
            0u)
      << crash.error().to_string();
  auto again = p_->digests_load(id, std::string(64, 'b') + "  /usr/bin/b\n", "b.sha256", {});
  ASSERT_TRUE(again) << again.error().to_string();
  EXPECT_EQ(again->added, 1u);
}

}  // namespace
}  // namespace pipetest
}  // namespace nsima::ns
