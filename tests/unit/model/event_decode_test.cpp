// SPDX-License-Identifier: Apache-2.0
// Model events from the BPF side into cells: sockaddr bytes as the libc structs lay them out
// (sockaddr_in, sockaddr_in6, sockaddr_un pathname/abstract/unnamed, AF_UNSPEC, unknown
// families), mprotect inode fields, task targets, and malformed records refused.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <cstring>

#include <gtest/gtest.h>

#include "model/event_decode.h"

namespace nsima::model {
namespace {

template <class T>
std::span<const uint8_t> bytes_of(const T& v, size_t n = sizeof(T)) {
  return {reinterpret_cast<const uint8_t*>(&v), n};
}

TEST(EventDecodeTest, Inet) {
  sockaddr_in in{};
  in.sin_family = AF_INET;
  in.sin_port = htons(443);
  inet_pton(AF_INET, "93.184.216.34", &in.sin_addr);
  SocketAddrCell c = sockaddr_cell(AF_INET, SOCK_STREAM, IPPROTO_TCP, bytes_of(in));
  EXPECT_EQ(c.family, uint32_t{AF_INET});
  EXPECT_EQ(c.port, 443);
  EXPECT_EQ(c.addr[0], 93);
  EXPECT_EQ(c.addr[3], 34);
  EXPECT_EQ(c.type, uint32_t{SOCK_STREAM});
  EXPECT_EQ(c.protocol, uint32_t{IPPROTO_TCP});
}

TEST(EventDecodeTest, Inet6) {
  sockaddr_in6 in6{};
  in6.sin6_family = AF_INET6;
  in6.sin6_port = htons(53);
  in6.sin6_flowinfo = htonl(0x12345);
  in6.sin6_scope_id = 2;
  inet_pton(AF_INET6, "::1", &in6.sin6_addr);
  SocketAddrCell c = sockaddr_cell(AF_INET6, SOCK_DGRAM, IPPROTO_UDP, bytes_of(in6));
  EXPECT_EQ(c.port, 53);
  EXPECT_EQ(c.flowinfo, 0x12345u);
  EXPECT_EQ(c.scope_id, 2u);
  EXPECT_EQ(c.addr[15], 1);
  EXPECT_EQ(c.addr[0], 0);
}

TEST(EventDecodeTest, Unix) {
  sockaddr_un un{};
  un.sun_family = AF_UNIX;
  std::strcpy(un.sun_path, "/run/app.sock");
  // connect(2) passes the whole struct: the path stops at its NUL
  SocketAddrCell c = sockaddr_cell(AF_UNIX, SOCK_STREAM, 0, bytes_of(un));
  EXPECT_EQ(std::string(c.data.begin(), c.data.end()), "/run/app.sock");
  // abstract: the name is exactly addrlen - 2 bytes, leading NUL kept
  sockaddr_un ab{};
  ab.sun_family = AF_UNIX;
  std::memcpy(ab.sun_path, "\0abstract", 9);
  c = sockaddr_cell(AF_UNIX, SOCK_SEQPACKET, 0, bytes_of(ab, 2 + 9));
  EXPECT_EQ(c.data, (std::vector<uint8_t>{0, 'a', 'b', 's', 't', 'r', 'a', 'c', 't'}));
  // unnamed (autobind): no path
  c = sockaddr_cell(AF_UNIX, SOCK_DGRAM, 0, bytes_of(ab, 2));
  EXPECT_TRUE(c.data.empty());
}

TEST(EventDecodeTest, UnspecAndShortAddresses) {
  sockaddr sa{};
  sa.sa_family = AF_UNSPEC;
  SocketAddrCell c = sockaddr_cell(AF_INET, SOCK_DGRAM, IPPROTO_UDP, bytes_of(sa));
  EXPECT_EQ(c.family, uint32_t{AF_UNSPEC}) << "the address's family, not the socket's";
  EXPECT_EQ(c.data.size(), sizeof(sa) - 2);
  c = sockaddr_cell(AF_INET, SOCK_DGRAM, IPPROTO_UDP, {});
  EXPECT_EQ(c.family, uint32_t{AF_INET}) << "no address: the socket's family";
  EXPECT_EQ(c.port, 0);
  std::vector<uint8_t> big(200, 7);
  big[0] = 16;  // AF_NETLINK
  big[1] = 0;
  c = sockaddr_cell(16, SOCK_RAW, 0, big);
  EXPECT_EQ(c.data.size(), kMaxSockaddrData);
  EXPECT_TRUE(encode_cell(EventType::kSocketBind, c));
}

nsima_model_event raw(uint32_t hook) {
  nsima_model_event e{};
  e.hook = hook;
  e.proc = {42, 0, 4242};
  e.target = {43, 0, 4343};
  e.cred = {1, 2, 3, 4, 5, 6, 7, 8, 0x1ff};
  std::memcpy(e.comm, "busybox", 7);
  return e;
}

TEST(EventDecodeTest, RecordsAndCells) {
  auto e = raw(NSIMA_MHOOK_FILE_MPROTECT);
  e.arg0 = 5;
  e.arg1 = 7;
  e.i_mode = 0100755;
  e.fs_magic = 0xEF53;
  e.fs_uuid[0] = 0xab;
  auto ev = decode_model_event(bytes_of(e));
  ASSERT_TRUE(ev) << ev.error().to_string();
  EXPECT_EQ(ev->proc, (ProcKey{42, 4242}));
  EXPECT_EQ(ev->coe, (Coe{1, 2, 3, 4, 5, 6, 7, 8, 0x1ff}));
  EXPECT_EQ(ev->comm, "busybox");
  EXPECT_EQ(model_event_type(ev->hook), EventType::kFileMprotect);
  auto cell = model_cell(*ev, kZeroDigest);
  ASSERT_TRUE(cell);
  const auto& m = std::get<MprotectCell>(*cell);
  ASSERT_TRUE(m.inode);
  EXPECT_EQ(m.inode->uuid[0], 0xab);
  EXPECT_EQ(m.reqprot, 5u);
  e.flags = NSIMA_MEV_ANONYMOUS;
  cell = model_cell(*decode_model_event(bytes_of(e)), kZeroDigest);
  EXPECT_FALSE(std::get<MprotectCell>(*cell).inode);

  auto t = raw(NSIMA_MHOOK_PTRACE_TRACEME);
  Digest tracer{};
  tracer[0] = 9;
  cell = model_cell(*decode_model_event(bytes_of(t)), tracer);
  EXPECT_EQ(std::get<TracemeCell>(*cell).tracer, tracer);
  EXPECT_FALSE(model_event_type(NSIMA_MHOOK_FORK));
  EXPECT_FALSE(model_cell(*decode_model_event(bytes_of(raw(NSIMA_MHOOK_FORK))), tracer));
}

TEST(EventDecodeTest, MalformedRecordsAreRefused) {
  auto e = raw(NSIMA_MHOOK_TASK_KILL);
  auto r = decode_model_event(bytes_of(e, sizeof e - 1));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().where, "mevents");
  EXPECT_NE(r.error().message.find("319 bytes"), std::string::npos) << r.error().message;
  e.hook = NSIMA_MHOOK_MAX;
  r = decode_model_event(bytes_of(e));
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("unknown hook"), std::string::npos);
}

}  // namespace
}  // namespace nsima::model
