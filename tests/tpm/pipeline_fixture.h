// SPDX-License-Identifier: Apache-2.0
// The pipeline without BPF, against a real swtpm as host TPM: a private cgroup2 mount, files in a
// temp dir, events built from them as the hooks would report them (tests/tpm/pipeline_*_test.cpp).
#pragma once

#include "ns/pipeline.h"

#include <fcntl.h>
#include <linux/fs.h>
#include <openssl/evp.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include <gtest/gtest.h>

#include "common/hex.h"
#include "measure/measurement_list.h"
#include "swtpm_fixture.h"
#include "tpm/esys_tpm.h"
#include "tpm/vtpm_manager.h"

namespace nsima::ns {
namespace pipetest {


namespace fs = std::filesystem;

inline std::string sha256_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  std::string data = ss.str();
  unsigned char md[32];
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), md, &len, EVP_sha256(), nullptr);
  return to_hex(md, len);
}

class PipelineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/nsima-pipeline-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    cg_ = dir_ + "/cg";
    fs::create_directories(cg_);
    // A cgroup2 mount of its own: works beside a v1 hierarchy. It shows the one cgroup2
    // hierarchy every test process shares, so a test's cgroups are named by its pid (cgroup()):
    // tests run in parallel (ctest -j) must not remove each other's.
    ASSERT_EQ(mount("none", cg_.c_str(), "cgroup2", 0, nullptr), 0)
        << "mount cgroup2: " << strerror(errno) << " (tests run as root)";
    mounted_ = true;
    fs::create_directories(dir_ + "/files");
    std::string err;
    ASSERT_TRUE(tpm_.start(&err)) << err;
    opts_.cgroup_root = cg_;
    opts_.state_dir = dir_ + "/state";
    opts_.run_dir = dir_ + "/run";
    opts_.host_tcti = tpm_.tcti();
    opts_.vtpm_ek_cert = false;  // EK certificates are tested in attest_test / cli_verify_test
  }
  void TearDown() override {
    p_.reset();
    // vTPMs outlive nsimad on purpose (daemon/tpm/README.md); a test leaves none behind.
    {
      tpm::VtpmOptions vo;
      vo.state_root = fs::path(opts_.state_dir) / "vtpm";
      vo.run_root = fs::path(opts_.run_dir) / "vtpm";
      tpm::VtpmManager m(vo);
      if (auto all = m.attach_all())
        for (auto& i : *all) (void)m.destroy(i.ns);
    }
    if (mounted_) {
      // cgroup directories go leaf first (rmdir only; they are real cgroups of this host)
      std::vector<std::string> dirs;
      std::error_code ec;
      std::string mine = "t-" + std::to_string(getpid()) + "-";
      for (auto& top : fs::directory_iterator(cg_, ec)) {
        if (top.path().filename().string().rfind(mine, 0) != 0) continue;
        dirs.push_back(top.path().string());
        for (auto& d : fs::recursive_directory_iterator(top.path(), ec))
          if (d.is_directory(ec)) dirs.push_back(d.path().string());
      }
      std::sort(dirs.begin(), dirs.end(), [](auto& a, auto& b) { return a.size() > b.size(); });
      for (auto& d : dirs) rmdir(d.c_str());
      umount(cg_.c_str());
    }
    for (auto& m : mounts_) umount2(m.c_str(), MNT_DETACH);  // after the vTPMs are gone
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::vector<std::string> mounts_;  // extra mounts of a test (unmounted in TearDown)

  void start() {
    p_ = std::make_unique<Pipeline>(opts_, nullptr);
    auto r = p_->init();
    ASSERT_TRUE(r) << r.error().to_string();
    p_->start();
  }
  void restart() {
    p_->stop();
    p_.reset();
    start();
  }

  // A cgroup directory of this test ("t-<pid>-<name>" below the root, removed in TearDown).
  std::string cgroup(const std::string& rel) {
    std::string p = cg_ + "/t-" + std::to_string(getpid()) + "-" + rel;
    fs::create_directories(p);
    return p;
  }

  std::string file(const std::string& name, const std::string& content) {
    std::string path = dir_ + "/files/" + name;
    std::ofstream(path) << content;
    return path;
  }

  Event read_event(const std::string& path, uint32_t ns_id, uint32_t uid = 0) {
    Event ev;
    ev.hook = Hook::kFileOpen;
    ev.ns_id = ns_id;
    ev.tgid = ev.pid = static_cast<uint32_t>(getpid());
    struct stat st;
    EXPECT_EQ(stat(path.c_str(), &st), 0);
    struct stat self;
    stat("/proc/self/ns/mnt", &self);
    ev.mnt_ns = static_cast<uint32_t>(self.st_ino);
    ev.kdev = dev_to_kdev(st.st_dev);
    ev.ino = st.st_ino;
    int fd = open(path.c_str(), O_RDONLY);
    int gen = 0;
    ioctl(fd, FS_IOC_GETVERSION, &gen);
    close(fd);
    ev.generation = static_cast<uint32_t>(gen);
    ev.i_mode = st.st_mode;
    ev.stamp = Stamp{st.st_ctim.tv_sec, static_cast<uint32_t>(st.st_ctim.tv_nsec), 0,
                     static_cast<uint64_t>(st.st_size)};
    struct statfs sfs;
    statfs(path.c_str(), &sfs);
    ev.fs_magic = static_cast<uint64_t>(sfs.f_type);
    ev.mask = NSIMA_MAY_READ;
    ev.cred.uid = ev.cred.euid = ev.cred.fsuid = uid;  // gids 0
    ev.path = path;
    return ev;
  }

  void submit(Event ev) {
    p_->submit(std::move(ev));
    p_->drain();
  }

  std::string list(const std::string& ns) {
    auto r = p_->render_list(ns, true);
    EXPECT_TRUE(r) << r.error().to_string();
    return r ? *r : "";
  }

  // PCR read by tpm2_pcrread (not through nsima) vs the list's replay.
  void expect_pcr_matches_list(const std::string& ns) {
    auto rep = p_->pcr_report(ns);
    ASSERT_TRUE(rep) << rep.error().to_string();
    auto out = nsima::testing::run_tool(
        {"tpm2_pcrread", "-T", tpm_.tcti(), "sha256:" + std::to_string(rep->pcr)});
    ASSERT_EQ(out.rc, 0) << out.output;
    std::string v = rep->expected.at("sha256");
    for (auto& c : v) c = static_cast<char>(toupper(c));
    EXPECT_NE(out.output.find("0x" + v), std::string::npos)
        << "tpm2_pcrread: " << out.output << " list replay: " << v;
  }

  std::string dir_, cg_;
  bool mounted_ = false;
  nsima::testing::SwtpmProcess tpm_;
  PipelineOptions opts_;
  std::unique_ptr<Pipeline> p_;
};

}  // namespace pipetest
}  // namespace nsima::ns
