// SPDX-License-Identifier: Apache-2.0
// ns_create's per-namespace template and hash (kernel ima_template= / ima_hash=, as the IMA
// namespace proposals pass them): the namespace's list is written with them, ns_list shows them,
// and they are kept across a restart even when nsimad's own --template/--hash differ; values
// outside the kernel's sets are refused naming the field. A real pipeline without BPF or TPM in
// a private cgroup2 mount, requests through handle_request (needs root).
#include <fcntl.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <thread>

#include <gtest/gtest.h>

#include "control/base64.h"
#include "control/handlers.h"
#include "nsima/control_protocol.h"

namespace nsima::control {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

class NsSettingsTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/nsima-nsset-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    cg_ = dir_ + "/cg";
    fs::create_directories(cg_);
    ASSERT_EQ(::mount("none", cg_.c_str(), "cgroup2", 0, nullptr), 0)
        << "mount cgroup2: " << strerror(errno) << " (tests run as root)";
    mounted_ = true;
    // cgroup2 is one hierarchy however often it is mounted: names of this process only, so
    // that tests running at the same time never share a cgroup
    cgc_ = cg_ + "/nsset-" + std::to_string(::getpid()) + "-c";
    cgd_ = cg_ + "/nsset-" + std::to_string(::getpid()) + "-d";
    fs::create_directories(cgc_);
    fs::create_directories(cgd_);
    fs::create_directories(dir_ + "/files");
  }
  void TearDown() override {
    stop();
    if (mounted_) {
      ::rmdir((cgc_).c_str());
      ::rmdir((cgd_).c_str());
      ::umount(cg_.c_str());
    }
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  void start(measure::HashAlgo hash, measure::TemplateKind tmpl) {
    ns::PipelineOptions o;
    o.cgroup_root = cg_;
    o.state_dir = dir_ + "/state";
    o.run_dir = dir_ + "/run";
    o.host_tcti = "";
    o.hash_algo = hash;
    o.default_template = tmpl;
    p_ = std::make_unique<ns::Pipeline>(o, nullptr);
    auto r = p_->init();
    ASSERT_TRUE(r) << r.error().to_string();
    p_->start();
    ctx_.pipeline = p_.get();
    ctx_.stopping = [] { return false; };
  }
  void stop() {
    if (p_) p_->stop();
    p_.reset();
  }
  // One request, its first answer line.
  json call(const json& req) {
    int sv[2];
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    Connection client{UniqueFd{sv[1]}};
    std::thread t([&, fd = sv[0]] {
      Connection server{UniqueFd{fd}};
      handle_request(ctx_, req, server);
    });
    auto line = client.read_line(kMaxRequestBytes, std::chrono::seconds(20));
    t.join();
    return line ? json::parse(*line, nullptr, false) : json{{"read_error", client.error()}};
  }
  json ns_entry(const std::string& id) {
    json a = call({{kFieldCmd, kCmdNsList}});
    for (auto& n : a["namespaces"])
      if (n.value("id", "") == id) return n;
    return json();
  }
  // A file read by root in namespace `ns_id`, measured before this returns.
  std::string measure_file(uint32_t ns_id, const std::string& content) {
    std::string path = dir_ + "/files/f" + std::to_string(++files_);
    std::ofstream(path) << content;
    Event ev;
    ev.hook = Hook::kFileOpen;
    ev.ns_id = ns_id;
    ev.tgid = ev.pid = static_cast<uint32_t>(::getpid());
    struct stat st {}, self {};
    EXPECT_EQ(::stat(path.c_str(), &st), 0);
    ::stat("/proc/self/ns/mnt", &self);
    ev.mnt_ns = static_cast<uint32_t>(self.st_ino);
    ev.kdev = dev_to_kdev(st.st_dev);
    ev.ino = st.st_ino;
    int fd = ::open(path.c_str(), O_RDONLY);
    int gen = 0;
    ::ioctl(fd, FS_IOC_GETVERSION, &gen);
    ::close(fd);
    ev.generation = static_cast<uint32_t>(gen);
    ev.i_mode = st.st_mode;
    ev.stamp = Stamp{st.st_ctim.tv_sec, static_cast<uint32_t>(st.st_ctim.tv_nsec), 0,
                     static_cast<uint64_t>(st.st_size)};
    struct statfs sfs {};
    ::statfs(path.c_str(), &sfs);
    ev.fs_magic = static_cast<uint64_t>(sfs.f_type);
    ev.mask = NSIMA_MAY_READ;
    ev.path = path;
    p_->submit(std::move(ev));
    p_->drain();
    return path;
  }

  std::string dir_, cg_, cgc_, cgd_;
  bool mounted_ = false;
  int files_ = 0;
  std::unique_ptr<ns::Pipeline> p_;
  DaemonContext ctx_;
};

TEST_F(NsSettingsTest, TemplateAndHashPerNamespaceShownAndKeptAcrossRestarts) {
  start(measure::HashAlgo::kSha256, measure::TemplateKind::kImaNg);
  json made = call({{kFieldCmd, kCmdNsCreate},
                    {kFieldCgroup, cgc_},
                    {kFieldPolicyText, "measure func=FILE_CHECK mask=^MAY_READ\n"},
                    {kFieldTemplate, "ima-sig"},
                    {kFieldHash, "sha512"}});
  ASSERT_TRUE(made.value(kFieldOk, false)) << made;
  const std::string id = made["namespace"].value("id", "");
  EXPECT_EQ(made["namespace"].value("template", ""), "ima-sig");
  EXPECT_EQ(made["namespace"].value("hash", ""), "sha512");
  EXPECT_EQ(ns_entry("host").value("template", ""), "ima-ng") << "the host keeps nsimad's";
  EXPECT_EQ(ns_entry("host").value("hash", ""), "sha256");

  // The list is written with them: an ima-sig entry with a sha512 digest of the file.
  std::string path = measure_file(static_cast<uint32_t>(std::stoul(id)), "abc");
  auto text = p_->render_list(id, true);
  ASSERT_TRUE(text) << text.error().to_string();
  const std::string sha512_abc =
      "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3"
      "feebbd454d4423643ce80e2a9ac94fa54ca49f";
  EXPECT_NE(text->find(" ima-sig sha512:" + sha512_abc + " " + path), std::string::npos) << *text;

  // A restart with other defaults: the namespace's list goes on as it was started.
  stop();
  start(measure::HashAlgo::kSha384, measure::TemplateKind::kImaNg);
  json again = ns_entry(id);
  EXPECT_EQ(again.value("template", ""), "ima-sig") << again;
  EXPECT_EQ(again.value("hash", ""), "sha512") << again;
  std::string path2 = measure_file(static_cast<uint32_t>(std::stoul(id)), "abc2");
  auto text2 = p_->render_list(id, true);
  ASSERT_TRUE(text2);
  EXPECT_NE(text2->find(" ima-sig sha512:"), text2->rfind(" ima-sig sha512:")) << *text2;
  EXPECT_NE(text2->find(path2), std::string::npos) << *text2;
  EXPECT_EQ(ns_entry("host").value("hash", ""), "sha384") << "the host follows nsimad's flags";
}

TEST_F(NsSettingsTest, DefaultsAreRecordedAndBadValuesNamed) {
  start(measure::HashAlgo::kSha256, measure::TemplateKind::kImaNg);
  json made = call({{kFieldCmd, kCmdNsCreate}, {kFieldCgroup, cgc_}});
  ASSERT_TRUE(made.value(kFieldOk, false)) << made;
  EXPECT_EQ(made["namespace"].value("template", ""), "ima-ng");
  EXPECT_EQ(made["namespace"].value("hash", ""), "sha256");
  json ns_json = json::parse(std::ifstream(dir_ + "/state/ns/" +
                                           made["namespace"].value("id", "") + "/ns.json"));
  EXPECT_EQ(ns_json.value("template", ""), "ima-ng");
  EXPECT_EQ(ns_json.value("hash", ""), "sha256");
  EXPECT_EQ(call({{kFieldCmd, kCmdNsCreate}, {kFieldCgroup, cgc_}, {kFieldHash, "md5"}})
                .value(kFieldError, ""),
            "field \"hash\" must be \"sha1\", \"sha256\", \"sha384\" or \"sha512\", got \"md5\"");
  EXPECT_EQ(
      call({{kFieldCmd, kCmdNsCreate}, {kFieldCgroup, cgc_}, {kFieldTemplate, "ima-buf"}})
          .value(kFieldError, ""),
      "field \"template\" must be \"ima-ng\", \"ima-sig\" or \"ima\", got \"ima-buf\"");
  // 'ima' holds sha1 digests only: its default hash is sha1, another is refused.
  json bad = call({{kFieldCmd, kCmdNsCreate}, {kFieldCgroup, cgd_}, {kFieldTemplate, "ima"},
                   {kFieldHash, "sha256"}});
  EXPECT_NE(bad.value(kFieldError, "").find("the 'ima' template records sha1 digests only"),
            std::string::npos)
      << bad;
}

TEST_F(NsSettingsTest, ImaTemplateDefaultsToSha1) {
  start(measure::HashAlgo::kSha256, measure::TemplateKind::kImaNg);
  json made = call({{kFieldCmd, kCmdNsCreate}, {kFieldCgroup, cgc_}, {kFieldTemplate, "ima"}});
  ASSERT_TRUE(made.value(kFieldOk, false)) << made;
  EXPECT_EQ(made["namespace"].value("template", ""), "ima");
  EXPECT_EQ(made["namespace"].value("hash", ""), "sha1");
}

}  // namespace
}  // namespace nsima::control
