// SPDX-License-Identifier: Apache-2.0
#include "confine/parser.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <future>

#include "confine/sandbox.h"
#include "confine/wire.h"

namespace nsima::confine {

namespace {

using Clock = std::chrono::steady_clock;

std::string signal_text(int sig) {
  std::string s = "killed by signal " + std::to_string(sig);
  if (const char* abbrev = sigabbrev_np(sig)) s += std::string(" (SIG") + abbrev + ")";
  if (sig == SIGSYS) s += ": a system call outside its seccomp allow-list";
  return s;
}

// Milliseconds left, rounded up: poll() never gives up before the deadline.
int remaining_ms(Clock::time_point deadline) {
  auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() <= 0 ? 0 : static_cast<int>(left.count());
}

enum class Io { kOk, kTimeout, kClosed };

// Waits until `fd` is ready for `events` or the deadline passes (EINTR: kOk, the caller retries).
Io wait_for(int fd, short events, Clock::time_point deadline) {
  pollfd p{fd, events, 0};
  int ms = remaining_ms(deadline);
  if (ms == 0) return Io::kTimeout;
  int r = ::poll(&p, 1, ms);
  if (r == 0) return Io::kTimeout;
  if (r < 0 && errno != EINTR) return Io::kClosed;
  return Io::kOk;
}

// Sends all of `data` before the deadline (the socket is non-blocking).
Io send_all(int fd, std::span<const uint8_t> data, Clock::time_point deadline) {
  size_t off = 0;
  while (off < data.size()) {
    ssize_t n = ::send(fd, data.data() + off, data.size() - off, MSG_NOSIGNAL);
    if (n > 0) {
      off += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN) return Io::kClosed;
    if (Io w = wait_for(fd, POLLOUT, deadline); w != Io::kOk) return w;
  }
  return Io::kOk;
}

Io recv_all(int fd, uint8_t* out, size_t len, Clock::time_point deadline) {
  size_t off = 0;
  while (off < len) {
    ssize_t n = ::recv(fd, out + off, len - off, 0);
    if (n > 0) {
      off += static_cast<size_t>(n);
      continue;
    }
    if (n == 0) return Io::kClosed;
    if (errno == EINTR) continue;
    if (errno != EAGAIN) return Io::kClosed;
    if (Io w = wait_for(fd, POLLIN, deadline); w != Io::kOk) return w;
  }
  return Io::kOk;
}

std::vector<uint8_t> frame(uint8_t head, std::span<const uint8_t> payload) {
  Writer w;
  w.u32(static_cast<uint32_t>(payload.size() + 1));
  w.u8(head);
  auto& out = w.out();
  out.insert(out.end(), payload.begin(), payload.end());
  return std::move(out);
}

// Reads one frame: Io::kOk with `body`, or why not; a length over kMaxFrame is `too_big`.
Io read_frame(int fd, std::vector<uint8_t>& body, bool& too_big, Clock::time_point deadline) {
  uint8_t h[4];
  if (Io r = recv_all(fd, h, 4, deadline); r != Io::kOk) return r;
  const uint32_t len = Reader({h, 4}).u32();
  too_big = len == 0 || len > kMaxFrame;
  if (too_big) return Io::kOk;
  body.resize(len);
  return recv_all(fd, body.data(), len, deadline);
}

}  // namespace

std::string_view failure_kind_name(FailureKind k) {
  switch (k) {
    case FailureKind::kUnavailable: return "parser-unavailable";
    case FailureKind::kCrashed: return "parser-crashed";
    case FailureKind::kTimeout: return "parser-timeout";
    case FailureKind::kBadReply: return "parser-bad-reply";
    case FailureKind::kTooLarge: return "parser-input-too-large";
  }
  return "parser-failed";
}

std::string Failure::to_string() const {
  return std::string(failure_kind_name(kind)) + ": " + reason;
}

std::filesystem::path default_worker_path() {
  std::error_code ec;
  auto self = std::filesystem::read_symlink("/proc/self/exe", ec);
  if (ec) return "/usr/libexec/nsima/nsima-parse";
  return self.parent_path().parent_path() / "libexec" / "nsima" / "nsima-parse";
}

Parser::Parser(ParserOptions opts) : opts_(std::move(opts)) {
  if (opts_.workers == 0) opts_.workers = 1;
  for (unsigned i = 0; i < opts_.workers; ++i) {
    slots_.push_back(std::make_unique<Slot>());
    slots_.back()->index = i;
  }
  pids_.assign(opts_.workers, -1);
  spawner_ = std::thread([this] {
    std::unique_lock lock(spawn_m_);
    for (;;) {
      spawn_cv_.wait(lock, [&] { return stopping_ || !spawn_jobs_.empty(); });
      if (spawn_jobs_.empty()) return;  // stopping
      auto job = std::move(spawn_jobs_.front());
      spawn_jobs_.pop_front();
      lock.unlock();
      job();
      lock.lock();
    }
  });
}

Parser::~Parser() {
  {
    std::lock_guard l(stats_m_);
    pids_fn_ = nullptr;  // its owner may be gone before us
  }
  {
    std::lock_guard lock(spawn_m_);
    stopping_ = true;
  }
  spawn_cv_.notify_all();
  spawner_.join();
  for (auto& s : slots_) {
    std::lock_guard lock(s->m);
    if (s->w.pid > 0) reap(*s, FailureKind::kUnavailable, "the parser is stopping");
  }
}

Result<void> Parser::start() {
  for (auto& s : slots_) {
    std::lock_guard lock(s->m);
    if (auto r = ensure(*s); !r) return r;
  }
  return {};
}

Result<Parser::Worker> Parser::spawn() {
  std::packaged_task<Result<Worker>()> task([this] { return spawn_here(); });
  auto fut = task.get_future();
  {
    std::lock_guard lock(spawn_m_);
    if (stopping_) return make_error(ESHUTDOWN, "the parser is stopping", opts_.worker.string());
    spawn_jobs_.push_back([&task] { task(); });
  }
  spawn_cv_.notify_one();
  return fut.get();
}

Result<Parser::Worker> Parser::spawn_here() {
  const std::string path = opts_.worker.string();
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
    return make_error(errno, std::string("socketpair: ") + std::strerror(errno), path);
  UniqueFd mine(sv[0]), theirs(sv[1]);
  if (theirs.get() == kWorkerFd) {  // dup2(3, 3) would keep FD_CLOEXEC
    int d = ::fcntl(theirs.get(), F_DUPFD_CLOEXEC, 10);
    if (d < 0) return make_error(errno, "fcntl(F_DUPFD_CLOEXEC) failed", path);
    theirs.reset(d);
  }
  posix_spawn_file_actions_t fa;
  posix_spawnattr_t attr;
  posix_spawn_file_actions_init(&fa);
  posix_spawnattr_init(&attr);
  posix_spawn_file_actions_adddup2(&fa, theirs.get(), kWorkerFd);
  sigset_t none, all;
  sigemptyset(&none);
  sigfillset(&all);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &all);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);
  char* argv[] = {const_cast<char*>("nsima-parse"), nullptr};
  char* envp[] = {nullptr};  // nothing of the caller's environment (no LD_PRELOAD, no locale)
  pid_t pid = -1;
  const int rc = posix_spawn(&pid, path.c_str(), &fa, &attr, argv, envp);
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0)
    return make_error(rc, std::string("cannot start the confined parser: ") + std::strerror(rc),
                      path);
  theirs.reset();
  Worker w{pid, std::move(mine)};
  ::fcntl(w.fd.get(), F_SETFL, O_NONBLOCK);
  // The hello comes only once the worker is confined: no input is sent before it.
  std::vector<uint8_t> body;
  bool too_big = false;
  const Io io = read_frame(w.fd.get(), body, too_big, Clock::now() + opts_.deadline);
  const std::string magic(kHelloMagic);
  const bool hello = io == Io::kOk && !too_big && body.size() == 1 + magic.size() &&
                     body[0] == static_cast<uint8_t>(Op::kHello) &&
                     std::memcmp(body.data() + 1, magic.data(), magic.size()) == 0;
  if (hello) return w;
  std::string said;
  if (io == Io::kOk && !too_big && !body.empty() && body[0] != static_cast<uint8_t>(Op::kHello))
    said = std::string(reinterpret_cast<const char*>(body.data()) + 1, body.size() - 1);
  ::kill(pid, SIGKILL);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  std::string why = io == Io::kTimeout ? "no hello within the deadline"
                    : !said.empty()    ? "it could not confine itself: " + said.substr(0, 300)
                    : WIFSIGNALED(status) ? signal_text(WTERMSIG(status)) + " before its hello"
                    : "it exited with status " + std::to_string(WEXITSTATUS(status)) +
                          " before its hello";
  return make_error(EPERM, "the confined parser did not start: " + why, path);
}

Result<void> Parser::ensure(Slot& s) {
  if (s.w.pid > 0) {
    // Reaped behind our back (killed from outside while idle): start again quietly, the
    // parse has not begun.
    int status = 0;
    if (::waitpid(s.w.pid, &status, WNOHANG) == 0) return {};
    s.w = Worker{};
    publish(s);
  }
  auto w = spawn();
  if (!w) return tl::unexpected(w.error());
  s.w = std::move(*w);
  {
    std::lock_guard lock(stats_m_);
    stats_.spawned++;
  }
  publish(s);
  return {};
}

Failure Parser::reap(Slot& s, FailureKind kind, std::string why) {
  const pid_t pid = s.w.pid;
  int status = 0;
  pid_t r = ::waitpid(pid, &status, WNOHANG);
  if (r == 0) {
    // Still alive (a timeout, a bad reply, or it is dying): it is not asked again.
    ::kill(pid, SIGKILL);
    while ((r = ::waitpid(pid, &status, 0)) < 0 && errno == EINTR) {
    }
  }
  s.w = Worker{};
  if (kind == FailureKind::kCrashed && r == pid) {
    why = WIFSIGNALED(status) ? signal_text(WTERMSIG(status))
                              : "exited with status " + std::to_string(WEXITSTATUS(status));
    why += " during the parse";
  }
  publish(s);
  return Failure{kind, "nsima-parse (pid " + std::to_string(pid) + ") " + why};
}

Parsed<std::vector<uint8_t>> Parser::call(Op op, std::span<const uint8_t> input) {
  if (input.size() + 1 > kMaxFrame)
    return tl::unexpected(Failure{FailureKind::kTooLarge,
                                  std::to_string(input.size()) + " bytes is over the " +
                                      std::to_string(kMaxFrame) + "-byte frame"});
  // A free worker if there is one, else wait for one (round robin).
  Slot* slot = nullptr;
  std::unique_lock<std::mutex> lock;
  for (auto& s : slots_) {
    std::unique_lock<std::mutex> l(s->m, std::try_to_lock);
    if (l.owns_lock()) {
      slot = s.get();
      lock = std::move(l);
      break;
    }
  }
  if (!slot) {
    slot = slots_[next_++ % slots_.size()].get();
    lock = std::unique_lock<std::mutex>(slot->m);
  }
  if (auto e = ensure(*slot); !e)
    return tl::unexpected(Failure{FailureKind::kUnavailable, e.error().to_string()});
  {
    std::lock_guard l(stats_m_);
    stats_.parses++;
  }
  const auto deadline = Clock::now() + opts_.deadline;
  const int fd = slot->w.fd.get();
  const std::string ms = std::to_string(opts_.deadline.count()) + " ms";
  auto count = [&](uint64_t Stats::*field) {
    std::lock_guard l(stats_m_);
    ++(stats_.*field);
  };
  auto timeout = [&] {
    count(&Stats::timeouts);
    return tl::unexpected(reap(*slot, FailureKind::kTimeout, "gave no answer within " + ms +
                                                                 " and was killed"));
  };
  auto crashed = [&] {
    count(&Stats::crashed);
    return tl::unexpected(reap(*slot, FailureKind::kCrashed, "closed its socket during the parse"));
  };
  const Io sent = send_all(fd, frame(static_cast<uint8_t>(op), input), deadline);
  if (sent == Io::kTimeout) return timeout();
  if (sent == Io::kClosed) return crashed();
  std::vector<uint8_t> body;
  bool too_big = false;
  const Io got = read_frame(fd, body, too_big, deadline);
  if (got == Io::kTimeout) return timeout();
  if (got == Io::kClosed) return crashed();
  if (too_big) {
    count(&Stats::bad_replies);
    return tl::unexpected(reap(*slot, FailureKind::kBadReply,
                               "announced a reply frame over " + std::to_string(kMaxFrame) +
                                   " bytes (or empty) and was killed"));
  }
  return body;
}

template <class T, class Decode>
Parsed<T> Parser::decoded(Parsed<std::vector<uint8_t>> body, Decode decode, const char* what) {
  if (!body) return tl::unexpected(body.error());
  auto r = decode(*body);
  if (r) return std::move(*r);
  std::lock_guard l(stats_m_);
  stats_.bad_replies++;
  return tl::unexpected(Failure{FailureKind::kBadReply, std::string(what) + " reply: " + r.error()});
}

namespace {
std::span<const uint8_t> text_bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}
}  // namespace

Parsed<appraise::XattrResult> Parser::ima_xattr(std::span<const uint8_t> value) {
  return decoded<appraise::XattrResult>(
      call(Op::kImaXattr, value),
      [value](std::span<const uint8_t> body) { return decode_ima_xattr(body, value); },
      "security.ima");
}

Parsed<Result<appraise::Manifest>> Parser::manifest(std::string_view text,
                                                    std::string_view filename) {
  return decoded<Result<appraise::Manifest>>(call(Op::kManifest, manifest_request(text, filename)),
                                             decode_manifest, "manifest");
}

Parsed<Result<hook::OciState>> Parser::oci_state(std::string_view text) {
  return decoded<Result<hook::OciState>>(call(Op::kOciState, text_bytes(text)), decode_oci_state,
                                         "OCI state");
}

Parsed<Result<nlohmann::json>> Parser::control_request(std::string_view line) {
  return decoded<Result<nlohmann::json>>(call(Op::kControlRequest, text_bytes(line)),
                                         decode_control_request, "control request");
}

Parsed<appraise::RpmHeaderResult> Parser::rpm_header(std::span<const std::vector<uint8_t>> keys,
                                                     std::span<const uint8_t> package) {
  return decoded<appraise::RpmHeaderResult>(call(Op::kRpmHeader, rpm_header_request(keys, package)),
                                            decode_rpm_header, "rpm header");
}

appraise::RpmReader rpm_reader(Parser& p) {
  return [&p](std::span<const std::vector<uint8_t>> keys,
              std::span<const uint8_t> package) -> appraise::RpmHeaderResult {
    auto r = p.rpm_header(keys, package);
    if (!r) return tl::unexpected("not read: " + r.error().to_string());
    return std::move(*r);
  };
}

appraise::XattrResult ima_xattr_or_failure(Parser& p, std::span<const uint8_t> value) {
  auto r = p.ima_xattr(value);
  if (r) return std::move(*r);
  using appraise::XattrErrorKind;
  const XattrErrorKind kind = r.error().kind == FailureKind::kCrashed ? XattrErrorKind::kParserCrashed
                              : r.error().kind == FailureKind::kTimeout ? XattrErrorKind::kParserTimeout
                                                                        : XattrErrorKind::kParserFailed;
  return tl::unexpected(appraise::XattrError{kind, "not parsed (" + r.error().to_string() + ")"});
}

std::vector<pid_t> Parser::worker_pids() const {
  std::lock_guard l(stats_m_);
  std::vector<pid_t> out;
  for (pid_t p : pids_)
    if (p > 0) out.push_back(p);
  return out;
}

void Parser::on_pids_changed(std::function<void(const std::vector<pid_t>&)> fn) {
  std::lock_guard l(stats_m_);
  pids_fn_ = std::move(fn);
}

void Parser::publish(const Slot& s) {
  std::function<void(const std::vector<pid_t>&)> fn;
  {
    std::lock_guard l(stats_m_);
    pids_[s.index] = s.w.pid;
    fn = pids_fn_;
  }
  if (fn) fn(worker_pids());
}

Parser::Stats Parser::stats() const {
  std::lock_guard l(stats_m_);
  return stats_;
}

}  // namespace nsima::confine
