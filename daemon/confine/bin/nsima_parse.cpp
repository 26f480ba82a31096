// SPDX-License-Identifier: Apache-2.0
// nsima-parse: the confined parser nsimad and nsima-oci-hook start (../README.md). It is
// spawned with its socket as fd 3 and an empty environment, confines itself (sandbox.h), says
// hello, then answers one frame per request until the socket closes. It opens nothing, ever.
// Built twice: nsima-parse (installed) and nsima-parse-test (NSIMA_PARSE_TEST_OPS: requests
// that misbehave on purpose, for tests/unit/confine).
#include <pwd.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <string_view>
#include <vector>

#include "appraise/digest_list.h"
#include "confine/protocol.h"
#include "confine/sandbox.h"
#include "confine/wire.h"

#ifdef NSIMA_PARSE_TEST_OPS
#include <fcntl.h>
#endif

namespace {

using namespace nsima::confine;

bool read_all(uint8_t* p, size_t n) {
  while (n > 0) {
    ssize_t r = ::read(kWorkerFd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

bool write_all(const uint8_t* p, size_t n) {
  while (n > 0) {
    ssize_t r = ::write(kWorkerFd, p, n);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return false;
    p += r;
    n -= static_cast<size_t>(r);
  }
  return true;
}

bool send_frame(std::span<const uint8_t> body) {
  Writer w;
  w.u32(static_cast<uint32_t>(body.size()));
  return write_all(w.out().data(), 4) && write_all(body.data(), body.size());
}

#ifdef NSIMA_PARSE_TEST_OPS
// Requests that break the rules, each expected to end in a kill or a refused reply.
bool test_op(Op op, std::span<const uint8_t> input) {
  switch (op) {
    case Op::kTestAbort: abort();
    case Op::kTestLoop:
      for (;;) asm volatile("" ::: "memory");
    case Op::kTestOpen: {
      int fd = ::open("/etc/passwd", O_RDONLY);
      uint8_t r[] = {static_cast<uint8_t>(Status::kParsed), static_cast<uint8_t>(fd >= 0)};
      return send_frame(r);
    }
    case Op::kTestSocket: {
      int fd = ::socket(AF_INET, SOCK_STREAM, 0);
      uint8_t r[] = {static_cast<uint8_t>(Status::kParsed), static_cast<uint8_t>(fd >= 0)};
      return send_frame(r);
    }
    case Op::kTestExecve: {
      char* argv[] = {const_cast<char*>("true"), nullptr};
      char* envp[] = {nullptr};
      ::execve("/bin/true", argv, envp);
      uint8_t r[] = {static_cast<uint8_t>(Status::kParsed), 0};
      return send_frame(r);
    }
    case Op::kTestReply: return send_frame(input);
    case Op::kTestHuge: {
      uint8_t h[] = {0xff, 0xff, 0xff, 0xff};
      return write_all(h, 4);
    }
    default: return false;
  }
}
#endif

}  // namespace

int main() {
  struct stat st {};
  if (::fstat(kWorkerFd, &st) != 0 || !S_ISSOCK(st.st_mode)) {
    std::fprintf(stderr, "nsima-parse: started by nsimad or nsima-oci-hook only (fd %d is its socket)\n",
                 kWorkerFd);
    return 2;
  }
  SandboxOptions o;
  if (const passwd* pw = ::getpwnam("nobody")) {
    o.uid = pw->pw_uid;
    o.gid = pw->pw_gid;
  }
  nsima::appraise::rpm_prepare_confined();  // opens files (libgcrypt): before the sandbox
  if (auto r = confine_self(o); !r) {
    // Not a hello: the daemon reports this sentence and never sends input.
    std::string msg = r.error().to_string();
    std::vector<uint8_t> body{0xff};
    body.insert(body.end(), msg.begin(), msg.end());
    send_frame(body);
    _exit(3);
  }
  {
    const std::string magic(kHelloMagic);
    std::vector<uint8_t> hello{static_cast<uint8_t>(Op::kHello)};
    hello.insert(hello.end(), magic.begin(), magic.end());
    if (!send_frame(hello)) _exit(4);
  }
  std::vector<uint8_t> body;
  for (;;) {
    uint8_t h[4];
    if (!read_all(h, 4)) _exit(0);  // the daemon closed its end
    const uint32_t len = Reader({h, 4}).u32();
    if (len == 0 || len > kMaxFrame) _exit(5);
    body.resize(len);
    if (!read_all(body.data(), len)) _exit(0);
    const auto op = static_cast<Op>(body[0]);
    const std::span<const uint8_t> input(body.data() + 1, len - 1);
#ifdef NSIMA_PARSE_TEST_OPS
    if (body[0] >= static_cast<uint8_t>(Op::kTestAbort)) {
      if (!test_op(op, input)) _exit(6);
      continue;
    }
    // A security.ima value that crashes or hangs its parse, to test the appraisal's view.
    const std::string_view text(reinterpret_cast<const char*>(input.data()), input.size());
    if (op == Op::kImaXattr && text == "\x04nsima-test:abort") abort();
    if (op == Op::kImaXattr && text == "\x04nsima-test:loop") test_op(Op::kTestLoop, {});
    if (op == Op::kManifest && text.substr(4).starts_with("nsima-test:abort")) abort();
    if (op == Op::kControlRequest && text == "{\"cmd\":\"nsima-test:abort\"}") abort();
    // An rpm package (no keys: u32 0 || u32 length || bytes) that crashes or hangs the worker.
    if (op == Op::kRpmHeader && text.size() > 8 && text.substr(8).starts_with("nsima-test:abort"))
      abort();
    if (op == Op::kRpmHeader && text.size() > 8 && text.substr(8).starts_with("nsima-test:loop"))
      test_op(Op::kTestLoop, {});
#endif
    // _exit, never exit: no atexit handlers (nor LeakSanitizer's, which would need ptrace).
    if (!send_frame(serve(op, input))) _exit(7);
  }
}
