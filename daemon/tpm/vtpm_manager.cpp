// SPDX-License-Identifier: Apache-2.0
// VtpmManager: swtpm processes per namespace (see vtpm_manager.h for the lifetime rules).
//
// swtpm is driven through two channels: the TPM command socket (what the swtpm TCTI talks to) and
// the control socket, whose protocol is a 4-byte big-endian command code followed by a response
// starting with a 4-byte big-endian result (swtpm's tpm_ioctl.h, "Control Channel
// Specification"; tpm2-tss's tcti-swtpm.c uses the same codes). Both are spoken here directly,
// with socket timeouts, rather than through swtpm_ioctl, so that no wait is unbounded.
#include "tpm/vtpm_manager.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "common/log.h"
#include "common/unique_fd.h"

extern char** environ;

namespace nsima::tpm {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

namespace {

// swtpm control channel commands (swtpm include/swtpm/tpm_ioctl.h).
constexpr uint32_t kCmdShutdown = 0x03;
constexpr uint32_t kCmdGetTpmEstablished = 0x04;
constexpr uint32_t kCmdStoreVolatile = 0x0a;

// tpm2-tss's swtpm TCTI finds the control socket by appending this to the command socket's path.
constexpr std::string_view kCtrlSuffix = ".ctrl";
// swtpm's name for the saved volatile state in its state directory.
constexpr std::string_view kVolatileStateFile = "tpm2-00.volatilestate";
// swtpm's permanent state: present once a vTPM was manufactured or first run.
constexpr std::string_view kPermanentStateFile = "tpm2-00.permall";
// swtpm_localca's files in the CA directory (swtpm-localca.conf(8)).
constexpr std::string_view kCaRootCert = "swtpm-localca-rootca-cert.pem";
constexpr std::string_view kCaIssuerCert = "issuercert.pem";

// glibc 2.36's <sys/pidfd.h> lacks extern "C" (fixed in 2.37), so call the kernel directly.
// pidfds (Linux 5.3) make waiting and signalling immune to pid reuse.
int pidfd_open(pid_t pid) { return static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)); }
int pidfd_send_signal(int pidfd, int sig) {
  return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0));
}

Error sys_error(std::string what, const fs::path& where, int err = errno) {
  return Error{err, std::move(what) + ": " + std::strerror(err), where.string()};
}

std::string tail_of(const fs::path& p, size_t max = 1500) {
  std::ifstream in(p, std::ios::binary);
  std::string s{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  if (s.size() > max) s = "..." + s.substr(s.size() - max);
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.pop_back();
  return s.empty() ? "(swtpm log empty)" : s;
}

Result<UniqueFd> connect_unix(const fs::path& path, milliseconds timeout) {
  sockaddr_un addr{};
  if (path.native().size() >= sizeof(addr.sun_path)) {
    return make_error(ENAMETOOLONG, "socket path too long", path);
  }
  UniqueFd fd(::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return tl::unexpected(sys_error("socket", path));
  timeval tv{static_cast<time_t>(timeout.count() / 1000),
             static_cast<suseconds_t>((timeout.count() % 1000) * 1000)};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
  ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, path.c_str(), path.native().size());
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return tl::unexpected(sys_error("connect", path));
  }
  return fd;
}

// Sends `request` and reads a response of at least `min_response` bytes.
Result<std::vector<uint8_t>> exchange(const fs::path& path, const std::vector<uint8_t>& request,
                                      size_t min_response, milliseconds timeout) {
  auto fd = connect_unix(path, timeout);
  if (!fd) return tl::unexpected(fd.error());
  if (::send(fd->get(), request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size())) {
    return tl::unexpected(sys_error("send", path));
  }
  std::vector<uint8_t> rsp(4096);
  size_t got = 0;
  while (got < min_response) {
    ssize_t n = ::recv(fd->get(), rsp.data() + got, rsp.size() - got, 0);
    if (n > 0) {
      got += static_cast<size_t>(n);
    } else if (n == 0) {
      return make_error(ECONNRESET, "swtpm closed the connection before answering", path);
    } else if (errno != EINTR) {
      if (errno == EAGAIN || errno == EWOULDBLOCK) {
        return make_error(ETIMEDOUT,
                          "no answer from swtpm within " + std::to_string(timeout.count()) + " ms",
                          path);
      }
      return tl::unexpected(sys_error("recv", path));
    }
  }
  rsp.resize(got);
  return rsp;
}

uint32_t be32(const uint8_t* p) {
  return static_cast<uint32_t>(p[0]) << 24 | static_cast<uint32_t>(p[1]) << 16 |
         static_cast<uint32_t>(p[2]) << 8 | p[3];
}

Result<void> ctrl_command(const fs::path& ctrl, uint32_t cmd, milliseconds timeout) {
  const std::vector<uint8_t> req = {static_cast<uint8_t>(cmd >> 24),
                                    static_cast<uint8_t>(cmd >> 16), static_cast<uint8_t>(cmd >> 8),
                                    static_cast<uint8_t>(cmd)};
  auto rsp = exchange(ctrl, req, 4, timeout);
  if (!rsp) return tl::unexpected(rsp.error());
  const uint32_t result = be32(rsp->data());
  if (result != 0) {
    char buf[96];
    std::snprintf(buf, sizeof(buf), "swtpm control command 0x%02x failed: result 0x%x", cmd,
                  result);
    return make_error(EIO, buf, ctrl);
  }
  return {};
}

// TPM2_GetRandom(1) on the command socket: true once the TPM itself answers.
Result<void> tpm_answers(const fs::path& sock, milliseconds timeout) {
  // tag TPM_ST_NO_SESSIONS, size 12, TPM_CC_GetRandom (0x17b), bytesRequested 1.
  const std::vector<uint8_t> cmd = {0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x7b, 0, 1};
  auto rsp = exchange(sock, cmd, 10, timeout);
  if (!rsp) return tl::unexpected(rsp.error());
  if ((*rsp)[0] != 0x80) return make_error(EPROTO, "not a TPM 2.0 response", sock);
  return {};
}

pid_t read_pid_file(const fs::path& p) {
  std::ifstream in(p);
  long pid = -1;
  if (!(in >> pid) || pid <= 1 || pid > 1 << 22) return -1;
  return static_cast<pid_t>(pid);
}

// Guards against pid reuse: the process must be swtpm and serve this very state directory.
bool is_swtpm_for(pid_t pid, const fs::path& state_dir) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/cmdline", std::ios::binary);
  std::string cmdline{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  if (cmdline.empty()) return false;  // gone, or a zombie
  std::vector<std::string> args;
  std::stringstream ss(cmdline);
  std::string arg;
  while (std::getline(ss, arg, '\0')) args.push_back(arg);
  if (args.empty() || fs::path(args[0]).filename().string().rfind("swtpm", 0) != 0) return false;
  const std::string want = "dir=" + state_dir.string();
  for (const auto& a : args) {
    if (a.rfind(want, 0) == 0 && (a.size() == want.size() || a[want.size()] == ',')) return true;
  }
  return false;
}

// Waits until the process behind pidfd has exited.
bool wait_exit(int pidfd, milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  for (;;) {
    const auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now());
    pollfd pfd{pidfd, POLLIN, 0};
    int n = ::poll(&pfd, 1, static_cast<int>(std::max<int64_t>(left.count(), 0)));
    if (n > 0) return true;
    if (n == 0) return false;
    if (errno != EINTR) return false;
  }
}

// If nsimad is a child subreaper, a daemonized swtpm becomes its child: reap it, or it stays a
// zombie. For anybody else's child this is a harmless ECHILD.
void reap_if_child(pid_t pid) {
  int status = 0;
  ::waitpid(pid, &status, WNOHANG);
}

// posix_spawn's file actions and attributes, destroyed on every path.
// How nsimad starts swtpm and swtpm_setup: stdin from /dev/null, stdout/stderr appended to
// `log`, no other fd of nsimad (BPF maps, the control socket) leaked into the child. nsimad
// blocks signals for its signal loop; the child gets them unblocked and at their defaults
// (SIGTERM works), in its own session (out of nsimad's process group and terminal).
struct SpawnSetup {
  posix_spawn_file_actions_t actions;
  posix_spawnattr_t attr;
  explicit SpawnSetup(const fs::path& log) {
    posix_spawn_file_actions_init(&actions);
    posix_spawnattr_init(&attr);
    posix_spawn_file_actions_addopen(&actions, STDIN_FILENO, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, log.c_str(),
                                     O_WRONLY | O_CREAT | O_APPEND, 0600);
    posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
    posix_spawn_file_actions_addclosefrom_np(&actions, STDERR_FILENO + 1);
    sigset_t none, all;
    sigemptyset(&none);
    sigfillset(&all);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &all);
    posix_spawnattr_setflags(&attr,
                             POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSID);
  }
  ~SpawnSetup() {
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
  }
  SpawnSetup(const SpawnSetup&) = delete;
  SpawnSetup& operator=(const SpawnSetup&) = delete;
};

Result<void> make_private_dir(const fs::path& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return make_error(ec.value(), "create_directories: " + ec.message(), dir);
  // The state holds the TPM's seeds: nobody but nsimad reads it.
  fs::permissions(dir, fs::perms::owner_all, fs::perm_options::replace, ec);
  if (ec) return make_error(ec.value(), "chmod 0700: " + ec.message(), dir);
  return {};
}

void remove_quietly(const fs::path& p) {
  std::error_code ec;
  fs::remove(p, ec);
}

// SIGKILLs a process we found hung, waiting (bounded) for it to go.
void kill_hard(pid_t pid, milliseconds timeout) {
  UniqueFd pidfd(pidfd_open(pid));
  if (!pidfd) return;
  pidfd_send_signal(pidfd.get(), SIGKILL);
  wait_exit(pidfd.get(), timeout);
  reap_if_child(pid);
}

// Runs argv with stdout/stderr appended to `log`, waits at most `timeout`; kills it after that.
Result<void> run_bounded(std::vector<std::string> args, const fs::path& log,
                         milliseconds timeout) {
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  SpawnSetup s(log);
  pid_t pid = -1;
  if (int rc = ::posix_spawnp(&pid, argv[0], &s.actions, &s.attr, argv.data(), environ); rc != 0)
    return tl::unexpected(sys_error("cannot run " + args[0], log, rc));
  const auto deadline = Clock::now() + timeout;
  int status = 0;
  for (;;) {
    pid_t r = ::waitpid(pid, &status, WNOHANG);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) return tl::unexpected(sys_error("waitpid", log));
    if (Clock::now() >= deadline) {
      // Its own session: the swtpm it started goes with it.
      ::kill(-pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      return make_error(ETIMEDOUT,
                        args[0] + " did not finish within " + std::to_string(timeout.count()) +
                            " ms: " + tail_of(log),
                        log);
    }
    std::this_thread::sleep_for(milliseconds(10));
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
    return make_error(EIO, args[0] + " failed (status " + std::to_string(status) + "): " +
                               tail_of(log),
                      log);
  return {};
}

// A program name (looked up in PATH) or path that can be executed.
bool find_in_path(const std::string& prog) {
  if (prog.find('/') != std::string::npos) return ::access(prog.c_str(), X_OK) == 0;
  const char* path = std::getenv("PATH");
  std::stringstream ss(path ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(ss, dir, ':'))
    if (!dir.empty() && ::access((dir + "/" + prog).c_str(), X_OK) == 0) return true;
  return false;
}

Result<void> write_file_if_changed(const fs::path& p, const std::string& text) {
  std::ifstream in(p, std::ios::binary);
  std::string old{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
  if (in && old == text) return {};
  fs::path tmp = p;
  tmp += ".tmp";
  {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    out << text;
    if (!out.flush()) return tl::unexpected(sys_error("write", tmp));
  }
  std::error_code ec;
  fs::rename(tmp, p, ec);
  if (ec) return make_error(ec.value(), "rename: " + ec.message(), p);
  return {};
}

Result<std::string> read_text(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  if (!in) return tl::unexpected(sys_error("cannot read", p));
  return std::string{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

Result<void> validate_vtpm_name(std::string_view ns) {
  if (ns.empty() || ns.size() > 64) {
    return make_error(EINVAL, "vTPM namespace name must have 1-64 characters", std::string(ns));
  }
  if (ns[0] == '.') {
    return make_error(EINVAL, "vTPM namespace name must not start with '.'", std::string(ns));
  }
  for (char c : ns) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-' || c == '.';
    if (!ok) {
      return make_error(EINVAL, "vTPM namespace name may only use [A-Za-z0-9_.-]", std::string(ns));
    }
  }
  return {};
}

VtpmManager::VtpmManager(VtpmOptions opts) : opts_(std::move(opts)) {}

fs::path VtpmManager::ca_dir() const {
  return opts_.ca_dir.empty() ? opts_.state_root.parent_path() / "vtpm-ca" : opts_.ca_dir;
}

Result<void> VtpmManager::ensure_ca() const {
  const fs::path dir = ca_dir();
  if (auto r = make_private_dir(dir); !r) return r;
  // swtpm-localca.conf(8): where the CA lives. The root CA and the signing key are created by
  // swtpm_localca itself when signkey.pem is missing.
  const std::string conf = "statedir = " + dir.string() + "\n" + "signingkey = " +
                           (dir / "signkey.pem").string() + "\n" + "issuercert = " +
                           (dir / kCaIssuerCert).string() + "\n" + "certserial = " +
                           (dir / "certserial").string() + "\n";
  // swtpm-localca.options(8): the platform certificate's fields.
  const std::string options =
      "--platform-manufacturer nsima\n--platform-version 1\n--platform-model vtpm\n";
  // swtpm_setup.conf(8): which tool signs, with which configuration (never /etc's).
  const std::string setup = "create_certs_tool = " + opts_.swtpm_localca + "\n" +
                            "create_certs_tool_config = " +
                            (dir / "swtpm-localca.conf").string() + "\n" +
                            "create_certs_tool_options = " +
                            (dir / "swtpm-localca.options").string() + "\n";
  if (auto r = write_file_if_changed(dir / "swtpm-localca.conf", conf); !r) return r;
  if (auto r = write_file_if_changed(dir / "swtpm-localca.options", options); !r) return r;
  if (auto r = write_file_if_changed(dir / "swtpm_setup.conf", setup); !r) return r;
  return {};
}

Result<std::string> VtpmManager::ca_certificate() const {
  auto t = read_text(ca_dir() / kCaRootCert);
  if (!t && t.error().code == ENOENT)
    return make_error(ENOENT, "no vTPM CA yet: it is made with the first vTPM", ca_dir());
  return t;
}

Result<std::string> VtpmManager::ca_chain() const { return read_text(ca_dir() / kCaIssuerCert); }

Result<void> VtpmManager::manufacture_locked(const std::string& ns, const Paths& p) {
  if (auto r = ensure_ca(); !r) return r;
  const fs::path dir = ca_dir();
  std::vector<std::string> args = {opts_.swtpm_setup,
                                   "--tpm2",
                                   "--tpmstate",
                                   p.state_dir.string(),
                                   "--create-ek-cert",
                                   "--create-platform-cert",
                                   "--config",
                                   (dir / "swtpm_setup.conf").string(),
                                   "--pcr-banks",
                                   "-",  // keep every bank allocated, as an unmanufactured swtpm
                                   "--not-overwrite"};
  if (opts_.swtpm != "swtpm") {
    args.push_back("--tpm");
    args.push_back(opts_.swtpm);
  }
  const fs::path log = p.run_dir / "swtpm_setup.log";
  remove_quietly(log);
  const auto t0 = Clock::now();
  if (auto r = run_bounded(args, log, opts_.setup_timeout); !r) {
    // Half-manufactured state must not be started as if it were whole.
    std::error_code ec;
    for (auto& e : fs::directory_iterator(p.state_dir, ec)) fs::remove_all(e.path(), ec);
    return r;
  }
  std::error_code ec;
  if (!fs::exists(p.state_dir / kPermanentStateFile, ec))
    return make_error(EIO, "swtpm_setup left no TPM state: " + tail_of(log), p.state_dir);
  logger("tpm")->info("vTPM {}: manufactured with an EK certificate from the CA in {} ({} ms)", ns,
                      dir.string(),
                      std::chrono::duration_cast<milliseconds>(Clock::now() - t0).count());
  return {};
}

VtpmManager::~VtpmManager() {
  std::lock_guard lock(mu_);
  if (!instances_.empty()) {
    logger("tpm")->debug("leaving {} vTPM(s) running for the next nsimad", instances_.size());
  }
}

VtpmManager::Paths VtpmManager::paths(const std::string& ns) const {
  Paths p;
  p.state_dir = opts_.state_root / ns;
  p.run_dir = opts_.run_root / ns;
  p.sock = p.run_dir / "swtpm.sock";
  p.ctrl = p.run_dir / ("swtpm.sock" + std::string(kCtrlSuffix));
  p.pid_file = p.run_dir / "swtpm.pid";
  p.log = p.run_dir / "swtpm.log";
  return p;
}

pid_t VtpmManager::find_running_locked(const Paths& p) const {
  const pid_t pid = read_pid_file(p.pid_file);
  return pid > 0 && is_swtpm_for(pid, p.state_dir) ? pid : -1;
}

Result<VtpmInstance> VtpmManager::attach_locked(const std::string& ns, const Paths& p, pid_t pid) {
  if (auto r = ctrl_command(p.ctrl, kCmdGetTpmEstablished, opts_.ctrl_timeout); !r) {
    return tl::unexpected(r.error());
  }
  VtpmInstance inst;
  inst.ns = ns;
  inst.tcti = "swtpm:path=" + p.sock.string();
  inst.pid = pid;
  inst.state_dir = p.state_dir;
  inst.run_dir = p.run_dir;
  inst.origin = VtpmOrigin::kAttached;
  instances_[ns] = inst;
  logger("tpm")->info("vTPM {}: attached to running swtpm (pid {})", ns, pid);
  return inst;
}

Result<VtpmInstance> VtpmManager::spawn_locked(const std::string& ns, const Paths& p) {
  if (p.ctrl.native().size() >= sizeof(sockaddr_un{}.sun_path)) {
    return make_error(ENAMETOOLONG, "control socket path longer than a Unix socket allows", p.ctrl);
  }
  if (auto r = make_private_dir(p.state_dir); !r) return tl::unexpected(r.error());
  if (auto r = make_private_dir(p.run_dir); !r) return tl::unexpected(r.error());
  remove_quietly(p.sock);
  remove_quietly(p.ctrl);
  remove_quietly(p.pid_file);

  std::error_code ec;
  const bool created = !fs::exists(p.state_dir / kPermanentStateFile, ec);
  if (created && opts_.ek_cert) {
    if (!find_in_path(opts_.swtpm_setup)) {
      // Measuring goes on; the vTPM has no EK, which `nsimactl verify` reports (ek-cert), so no
      // verifier trusts it by mistake.
      logger("tpm")->error(
          "vTPM {}: {} not found (Debian package swtpm-tools): this vTPM gets NO EK certificate "
          "and nsimactl verify will reject its quotes",
          ns, opts_.swtpm_setup);
    } else if (auto r = manufacture_locked(ns, p); !r) {
      return tl::unexpected(r.error());
    }
  }
  const bool resume = fs::exists(p.state_dir / kVolatileStateFile, ec);
  // With saved volatile state the TPM is already started: no startup-clear (that is only for a
  // TPM coming out of reset). not-need-init: tss 3.2's swtpm TCTI never sends CMD_INIT.
  std::vector<std::string> args = {
      opts_.swtpm,
      "socket",
      "--tpm2",
      "--tpmstate",
      "dir=" + p.state_dir.string() + ",mode=0600",
      "--server",
      "type=unixio,path=" + p.sock.string() + ",mode=0600",
      "--ctrl",
      "type=unixio,path=" + p.ctrl.string() + ",mode=0600",
      "--flags",
      resume ? "not-need-init" : "not-need-init,startup-clear",
      "--pid",
      "file=" + p.pid_file.string(),
      "--log",
      "file=" + p.log.string(),
      "--daemon",
  };
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);

  SpawnSetup s(p.log);  // stdout/stderr: errors before --log takes over

  pid_t launcher = -1;
  int rc = ::posix_spawnp(&launcher, argv[0], &s.actions, &s.attr, argv.data(), environ);
  if (rc != 0) {
    return tl::unexpected(sys_error("cannot run " + opts_.swtpm, p.run_dir, rc));
  }

  // With --daemon the process we started forks the real swtpm and exits once its sockets are
  // bound; its exit status says whether that worked.
  const auto deadline = Clock::now() + opts_.start_timeout;
  int status = 0;
  for (;;) {
    pid_t r = ::waitpid(launcher, &status, WNOHANG);
    if (r == launcher) break;
    if (r < 0 && errno != EINTR) return tl::unexpected(sys_error("waitpid", p.run_dir));
    if (Clock::now() >= deadline) {
      ::kill(launcher, SIGKILL);
      ::waitpid(launcher, &status, 0);
      return make_error(ETIMEDOUT, "swtpm did not daemonize in time: " + tail_of(p.log), p.run_dir);
    }
    std::this_thread::sleep_for(milliseconds(2));
  }
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return make_error(
        EIO, "swtpm failed to start (status " + std::to_string(status) + "): " + tail_of(p.log),
        p.run_dir);
  }

  // Now the daemon: its pid file, then a TPM that answers.
  pid_t pid = -1;
  Error last{ETIMEDOUT, "no pid file", p.pid_file.string()};
  while (Clock::now() < deadline) {
    if (pid <= 0) pid = find_running_locked(p);
    if (pid > 0) {
      auto ok = tpm_answers(p.sock, opts_.ctrl_timeout);
      if (ok) break;
      last = ok.error();
    }
    std::this_thread::sleep_for(milliseconds(2));
  }
  if (pid <= 0 || !tpm_answers(p.sock, opts_.ctrl_timeout)) {
    if (pid > 0) kill_hard(pid, opts_.stop_timeout);
    return make_error(ETIMEDOUT,
                      "swtpm not answering within " + std::to_string(opts_.start_timeout.count()) +
                          " ms (" + last.to_string() + "): " + tail_of(p.log),
                      p.run_dir);
  }
  if (resume) {
    // One-shot hand-off (see vtpm_manager.h): the snapshot is in the TPM now.
    remove_quietly(p.state_dir / kVolatileStateFile);
  }

  VtpmInstance inst;
  inst.ns = ns;
  inst.tcti = "swtpm:path=" + p.sock.string();
  inst.pid = pid;
  inst.state_dir = p.state_dir;
  inst.run_dir = p.run_dir;
  inst.origin = resume ? VtpmOrigin::kResumed : VtpmOrigin::kStarted;
  inst.created = created;
  instances_[ns] = inst;
  logger("tpm")->info("vTPM {}: {} swtpm (pid {}, {})", ns, resume ? "resumed" : "started", pid,
                      inst.tcti);
  return inst;
}

Result<VtpmInstance> VtpmManager::start(const std::string& ns) {
  if (auto r = validate_vtpm_name(ns); !r) return tl::unexpected(r.error());
  std::lock_guard lock(mu_);
  const Paths p = paths(ns);
  const pid_t pid = find_running_locked(p);
  if (pid > 0) {
    auto it = instances_.find(ns);
    const bool known = it != instances_.end() && it->second.pid == pid;
    Result<VtpmInstance> found =
        known ? Result<VtpmInstance>(it->second) : attach_locked(ns, p, pid);
    if (found && known) {
      auto ping = ctrl_command(p.ctrl, kCmdGetTpmEstablished, opts_.ctrl_timeout);
      if (!ping) found = tl::unexpected(ping.error());
    }
    if (found) return found;
    logger("tpm")->warn("vTPM {}: swtpm pid {} does not answer ({}); killing it", ns, pid,
                        found.error().to_string());
    kill_hard(pid, opts_.stop_timeout);
  }
  instances_.erase(ns);
  return spawn_locked(ns, p);
}

Result<VtpmStopResult> VtpmManager::stop_locked(const std::string& ns, bool save_state) {
  const Paths p = paths(ns);
  VtpmStopResult res;
  const pid_t pid = find_running_locked(p);
  instances_.erase(ns);
  UniqueFd pidfd(pid > 0 ? pidfd_open(pid) : -1);
  if (pidfd) {
    res.was_running = true;
    if (save_state) {
      auto saved = ctrl_command(p.ctrl, kCmdStoreVolatile, opts_.ctrl_timeout);
      res.state_saved = saved.has_value();
      if (!saved)
        logger("tpm")->warn("vTPM {}: state not saved: {}", ns, saved.error().to_string());
    }
    auto down = ctrl_command(p.ctrl, kCmdShutdown, opts_.ctrl_timeout);
    bool exited = down && wait_exit(pidfd.get(), opts_.stop_timeout);
    for (int sig : {SIGTERM, SIGKILL}) {
      if (exited) break;
      res.forced = true;
      pidfd_send_signal(pidfd.get(), sig);
      exited = wait_exit(pidfd.get(), opts_.stop_timeout);
    }
    if (!exited) {
      return make_error(ETIMEDOUT, "swtpm pid " + std::to_string(pid) + " survived SIGKILL",
                        p.run_dir);
    }
    reap_if_child(pid);
    if (res.forced) {
      logger("tpm")->warn("vTPM {}: swtpm (pid {}) ignored the control channel and was killed", ns,
                          pid);
    }
  }
  if (!res.state_saved) {
    // Never leave an older snapshot behind for the next start() to resume.
    remove_quietly(p.state_dir / kVolatileStateFile);
  }
  remove_quietly(p.sock);
  remove_quietly(p.ctrl);
  remove_quietly(p.pid_file);
  if (res.was_running) {
    logger("tpm")->info("vTPM {}: stopped (pid {}, state {})", ns, pid,
                        res.state_saved ? "saved" : "not saved");
  }
  return res;
}

Result<VtpmStopResult> VtpmManager::stop(const std::string& ns) {
  if (auto r = validate_vtpm_name(ns); !r) return tl::unexpected(r.error());
  std::lock_guard lock(mu_);
  return stop_locked(ns, true);
}

Result<VtpmStopResult> VtpmManager::destroy(const std::string& ns) {
  if (auto r = validate_vtpm_name(ns); !r) return tl::unexpected(r.error());
  std::lock_guard lock(mu_);
  auto res = stop_locked(ns, false);
  if (!res) return res;
  const Paths p = paths(ns);
  std::error_code ec;
  fs::remove_all(p.state_dir, ec);
  if (ec) return make_error(ec.value(), "remove_all: " + ec.message(), p.state_dir);
  fs::remove_all(p.run_dir, ec);
  if (ec) return make_error(ec.value(), "remove_all: " + ec.message(), p.run_dir);
  return res;
}

Result<bool> VtpmManager::healthy(const std::string& ns) {
  if (auto r = validate_vtpm_name(ns); !r) return tl::unexpected(r.error());
  std::lock_guard lock(mu_);
  const Paths p = paths(ns);
  if (find_running_locked(p) <= 0) return false;
  return ctrl_command(p.ctrl, kCmdGetTpmEstablished, opts_.ctrl_timeout).has_value();
}

Result<std::vector<VtpmInstance>> VtpmManager::attach_all() {
  std::lock_guard lock(mu_);
  std::vector<VtpmInstance> out;
  std::error_code ec;
  if (!fs::exists(opts_.run_root, ec)) return out;
  for (const auto& entry : fs::directory_iterator(opts_.run_root, ec)) {
    const std::string ns = entry.path().filename().string();
    if (!entry.is_directory() || !validate_vtpm_name(ns)) continue;
    const Paths p = paths(ns);
    const pid_t pid = find_running_locked(p);
    if (pid <= 0) {
      if (fs::exists(p.pid_file, ec)) {
        logger("tpm")->info("vTPM {}: removing stale pid file", ns);
        remove_quietly(p.pid_file);
        remove_quietly(p.sock);
        remove_quietly(p.ctrl);
      }
      continue;
    }
    auto inst = attach_locked(ns, p, pid);
    if (inst) {
      out.push_back(*inst);
    } else {
      logger("tpm")->warn("vTPM {}: running (pid {}) but not answering: {}", ns, pid,
                          inst.error().to_string());
    }
  }
  if (ec) return make_error(ec.value(), "directory_iterator: " + ec.message(), opts_.run_root);
  return out;
}

std::vector<std::string> VtpmManager::running() const {
  std::lock_guard lock(mu_);
  std::vector<std::string> out;
  for (const auto& [ns, inst] : instances_) out.push_back(ns);
  return out;
}

}  // namespace nsima::tpm
