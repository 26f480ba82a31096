// SPDX-License-Identifier: Apache-2.0
// The layout of every struct that crosses the BPF boundary, as the BPF object's BTF records it
// (what the kernel side really uses), against sizeof/offsetof in the C++ build of
// include/nsima/bpf_abi.h. A field moved on one side only fails here, not in the VM.
#include <bpf/btf.h>
#include <bpf/libbpf.h>

#include <cstddef>
#include <map>
#include <string>

#include <gtest/gtest.h>

#include "nsima/bpf_abi.h"

namespace {

struct Layout {
  size_t size;
  std::map<std::string, size_t> offsets;
};

Layout btf_layout(const btf* b, const char* name) {
  Layout out{0, {}};
  int id = btf__find_by_name_kind(b, name, BTF_KIND_STRUCT);
  if (id < 0) return out;
  const btf_type* t = btf__type_by_id(b, id);
  out.size = t->size;
  const btf_member* m = btf_members(t);
  for (int i = 0; i < btf_vlen(t); ++i)
    out.offsets[btf__name_by_offset(b, m[i].name_off)] = btf_member_bit_offset(t, i) / 8;
  return out;
}

#define FIELD(s, f) {#f, offsetof(s, f)}

class AbiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    b_ = btf__parse_elf(NSIMA_BPF_OBJECT, nullptr);
    ASSERT_NE(b_, nullptr) << "cannot read BTF from " << NSIMA_BPF_OBJECT;
  }
  void TearDown() override { btf__free(b_); }
  void expect_layout(const char* name, size_t size, const std::map<std::string, size_t>& cxx) {
    Layout l = btf_layout(b_, name);
    ASSERT_NE(l.size, 0u) << "struct " << name << " not in the BPF object's BTF";
    EXPECT_EQ(l.size, size) << "sizeof(struct " << name << ")";
    EXPECT_EQ(l.offsets.size(), cxx.size()) << "member count of struct " << name;
    for (auto& [field, off] : cxx) {
      auto it = l.offsets.find(field);
      ASSERT_NE(it, l.offsets.end()) << name << "." << field << " missing in BTF";
      EXPECT_EQ(it->second, off) << "offset of " << name << "." << field;
    }
  }
  btf* b_ = nullptr;
};

TEST_F(AbiTest, Event) {
  expect_layout("nsima_event", sizeof(nsima_event),
                {FIELD(nsima_event, hook),       FIELD(nsima_event, flags),
                 FIELD(nsima_event, ktime_ns),   FIELD(nsima_event, pid),
                 FIELD(nsima_event, tgid),       FIELD(nsima_event, cgroup_id),
                 FIELD(nsima_event, ns_id),      FIELD(nsima_event, mnt_ns),
                 FIELD(nsima_event, user_ns),    FIELD(nsima_event, pid_ns),
                 FIELD(nsima_event, cred),       FIELD(nsima_event, new_cred),
                 FIELD(nsima_event, dev),        FIELD(nsima_event, ino),
                 FIELD(nsima_event, generation), FIELD(nsima_event, i_mode),
                 FIELD(nsima_event, i_uid),      FIELD(nsima_event, i_gid),
                 FIELD(nsima_event, stamp),      FIELD(nsima_event, fs_magic),
                 FIELD(nsima_event, fs_uuid),    FIELD(nsima_event, fs_name),
                 FIELD(nsima_event, f_flags),    FIELD(nsima_event, f_mode),
                 FIELD(nsima_event, mask),       FIELD(nsima_event, prot),
                 FIELD(nsima_event, reqprot),    FIELD(nsima_event, mmap_flags),
                 FIELD(nsima_event, comm),       FIELD(nsima_event, path_len),
                 FIELD(nsima_event, i_writecount), FIELD(nsima_event, i_readcount),
                 FIELD(nsima_event, pad),        FIELD(nsima_event, root_dev),
                 FIELD(nsima_event, root_ino),   FIELD(nsima_event, start_boottime),
                 FIELD(nsima_event, self_exec_id), FIELD(nsima_event, kernel_sha256),
                 FIELD(nsima_event, path)});
}

TEST_F(AbiTest, CredAndStamp) {
  expect_layout("nsima_cred", sizeof(nsima_cred),
                {FIELD(nsima_cred, uid), FIELD(nsima_cred, euid), FIELD(nsima_cred, suid),
                 FIELD(nsima_cred, gid), FIELD(nsima_cred, egid), FIELD(nsima_cred, sgid),
                 FIELD(nsima_cred, fsuid), FIELD(nsima_cred, fsgid),
                 FIELD(nsima_cred, cap_effective)});
  expect_layout("nsima_stamp", sizeof(nsima_stamp),
                {FIELD(nsima_stamp, ctime_sec), FIELD(nsima_stamp, ctime_nsec),
                 FIELD(nsima_stamp, pad), FIELD(nsima_stamp, i_version),
                 FIELD(nsima_stamp, size)});
}

TEST_F(AbiTest, MapKeysAndValues) {
  expect_layout("nsima_verdict_key", sizeof(nsima_verdict_key),
                {FIELD(nsima_verdict_key, ns_id), FIELD(nsima_verdict_key, generation),
                 FIELD(nsima_verdict_key, dev), FIELD(nsima_verdict_key, ino)});
  expect_layout("nsima_verdict", sizeof(nsima_verdict),
                {FIELD(nsima_verdict, stamp), FIELD(nsima_verdict, verdict),
                 FIELD(nsima_verdict, quiet), FIELD(nsima_verdict, judged),
                 FIELD(nsima_verdict, denied), FIELD(nsima_verdict, model_quiet),
                 FIELD(nsima_verdict, pad)});
  expect_layout("nsima_model_quiet_key", sizeof(nsima_model_quiet_key),
                {FIELD(nsima_model_quiet_key, ns_id), FIELD(nsima_model_quiet_key, hook),
                 FIELD(nsima_model_quiet_key, tgid), FIELD(nsima_model_quiet_key, path_len),
                 FIELD(nsima_model_quiet_key, start_boottime),
                 FIELD(nsima_model_quiet_key, self_exec_id), FIELD(nsima_model_quiet_key, cred),
                 FIELD(nsima_model_quiet_key, dev), FIELD(nsima_model_quiet_key, ino),
                 FIELD(nsima_model_quiet_key, generation), FIELD(nsima_model_quiet_key, i_mode),
                 FIELD(nsima_model_quiet_key, i_uid), FIELD(nsima_model_quiet_key, i_gid),
                 FIELD(nsima_model_quiet_key, stamp), FIELD(nsima_model_quiet_key, f_flags),
                 FIELD(nsima_model_quiet_key, prot), FIELD(nsima_model_quiet_key, mmap_flags),
                 FIELD(nsima_model_quiet_key, pad), FIELD(nsima_model_quiet_key, path)});
  expect_layout("nsima_cgroup", sizeof(nsima_cgroup),
                {FIELD(nsima_cgroup, ns_id), FIELD(nsima_cgroup, flags)});
  expect_layout("nsima_cg_cache", sizeof(nsima_cg_cache),
                {FIELD(nsima_cg_cache, ns_id), FIELD(nsima_cg_cache, flags),
                 FIELD(nsima_cg_cache, epoch)});
  expect_layout("nsima_ctl", sizeof(nsima_ctl),
                {FIELD(nsima_ctl, epoch), FIELD(nsima_ctl, self_tgid), FIELD(nsima_ctl, tick_ns),
                 FIELD(nsima_ctl, self_start)});
  expect_layout("nsima_tag", sizeof(nsima_tag), {FIELD(nsima_tag, sha256)});
  expect_layout("nsima_self_open", sizeof(nsima_self_open),
                {FIELD(nsima_self_open, dev), FIELD(nsima_self_open, ino),
                 FIELD(nsima_self_open, generation), FIELD(nsima_self_open, pad),
                 FIELD(nsima_self_open, stamp)});
  expect_layout("nsima_trust_key", sizeof(nsima_trust_key),
                {FIELD(nsima_trust_key, ns_id), FIELD(nsima_trust_key, sha256)});
}

}  // namespace
