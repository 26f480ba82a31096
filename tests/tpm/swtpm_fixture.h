// SPDX-License-Identifier: Apache-2.0
// SwtpmProcess: one real swtpm (TPM 2.0 emulator) per test, for every team's tests that need a TPM.
//
//   nsima::testing::SwtpmProcess tpm;
//   std::string err;
//   ASSERT_TRUE(tpm.start(&err)) << err;        // fails (never skips) when swtpm is missing
//   auto esys = nsima::tpm::EsysTpm::open(tpm.tcti());
//   ...                                          // tpm.stop() or the destructor: no leftovers
//
// Each instance gets its own directory (mkdtemp under $TMPDIR or /tmp) holding the TPM state,
// the Unix sockets ("sock" and "sock.ctrl": tpm2-tss's swtpm TCTI derives the control socket's
// path by appending ".ctrl") and swtpm's output (swtpm.log). Tests can therefore run in parallel
// with anybody else's. swtpm runs as a direct child started with fork+exec, so the fixture can
// always reap it; PR_SET_PDEATHSIG kills it if the test binary itself dies (a crash, or a timeout
// kill by ctest), and the destructor SIGTERMs, then SIGKILLs, then reaps it on every other path,
// ASSERT failures included. (The death signal fires when the *thread* that called start() exits:
// start swtpm from the test's main thread.)
//
// Header-only, no nsima dependency: include it from any test target.
#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

namespace nsima::testing {

class SwtpmProcess {
 public:
  enum class Transport { kUnixSocket, kTcp };

  struct Options {
    Transport transport = Transport::kUnixSocket;
    // Where the TPM state lives; empty = "state" inside the instance's temp dir. Giving the
    // state_dir of an earlier instance restarts "the same TPM" (permanent state kept).
    std::filesystem::path state_dir;
    // Added to --flags; not-need-init is always there (tss 3.2's swtpm TCTI sends no CMD_INIT).
    bool startup_clear = true;
    std::chrono::milliseconds timeout{10000};
  };

  SwtpmProcess() = default;
  explicit SwtpmProcess(Options opts) : opts_(std::move(opts)) {}
  ~SwtpmProcess() {
    stop();
    if (!dir_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(dir_, ec);
    }
  }
  SwtpmProcess(const SwtpmProcess&) = delete;
  SwtpmProcess& operator=(const SwtpmProcess&) = delete;

  // Starts swtpm and waits until the TPM answers a command. On failure returns false with the
  // reason (and swtpm's own output) in *error; nothing is left running.
  bool start(std::string* error) {
    if (pid_ > 0) return fail(error, "swtpm already running");
    const std::string binary = find_in_path("swtpm");
    if (binary.empty()) {
      return fail(error,
                  "swtpm not found in PATH; install the swtpm and swtpm-tools packages "
                  "(tests that need a TPM fail rather than skip)");
    }
    if (dir_.empty()) {
      const char* tmp = std::getenv("TMPDIR");
      std::string templ = std::string(tmp && *tmp ? tmp : "/tmp") + "/nsima-swtpm-XXXXXX";
      if (::mkdtemp(templ.data()) == nullptr) return fail(error, errno_text("mkdtemp"));
      dir_ = templ;
    }
    const std::filesystem::path state = state_dir();
    std::error_code ec;
    std::filesystem::create_directories(state, ec);
    if (ec) return fail(error, "create " + state.string() + ": " + ec.message());
    std::filesystem::remove(socket_path(), ec);
    std::filesystem::remove(ctrl_path(), ec);

    for (int attempt = 0; attempt < 5; ++attempt) {
      if (opts_.transport == Transport::kTcp) port_ = pick_port_pair();
      std::string why;
      if (spawn(binary, &why) && wait_ready(&why)) return true;
      const bool port_clash = why.find("Address already in use") != std::string::npos;
      kill_and_reap();
      if (!(opts_.transport == Transport::kTcp && port_clash)) return fail(error, why);
    }
    return fail(error, "no free TCP port pair for swtpm after 5 attempts");
  }

  // Graceful stop: SIGTERM, then SIGKILL after `grace`; always reaps. True if it exited on its own.
  bool stop(std::chrono::milliseconds grace = std::chrono::milliseconds(3000)) {
    if (pid_ <= 0) return true;
    ::kill(pid_, SIGTERM);
    if (wait_exit(grace)) return true;
    kill_and_reap();
    return false;
  }

  // Simulates a crashed TPM: SIGKILL now, then reap.
  void kill_hard() { kill_and_reap(); }

  // Stops and starts again on the same state directory and sockets.
  bool restart(std::string* error) {
    stop();
    return start(error);
  }

  std::string tcti() const {
    if (opts_.transport == Transport::kTcp) {
      return "swtpm:host=127.0.0.1,port=" + std::to_string(port_);
    }
    return "swtpm:path=" + socket_path().string();
  }
  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0; }
  int port() const { return port_; }
  const std::filesystem::path& dir() const { return dir_; }
  std::filesystem::path state_dir() const {
    return opts_.state_dir.empty() ? dir_ / "state" : opts_.state_dir;
  }
  std::filesystem::path socket_path() const { return dir_ / "sock"; }
  std::filesystem::path ctrl_path() const { return dir_ / "sock.ctrl"; }
  std::filesystem::path log_path() const { return dir_ / "swtpm.log"; }
  std::string log_text() const {
    std::ifstream in(log_path());
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

  // True if a process with this pid exists (zombies count: they are leftovers too).
  static bool process_exists(pid_t pid) {
    return pid > 0 && (::kill(pid, 0) == 0 || errno == EPERM);
  }

 private:
  static bool fail(std::string* error, const std::string& why) {
    if (error) *error = why;
    return false;
  }
  static std::string errno_text(const std::string& what) {
    return what + ": " + std::strerror(errno);
  }

  static std::string find_in_path(const std::string& name) {
    const char* path = std::getenv("PATH");
    std::stringstream ss(path ? path : "/usr/bin:/bin");
    std::string dir;
    while (std::getline(ss, dir, ':')) {
      std::string candidate = (dir.empty() ? "." : dir) + "/" + name;
      if (::access(candidate.c_str(), X_OK) == 0) return candidate;
    }
    return {};
  }

  static bool port_free(int port) {
    int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return false;
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<uint16_t>(port));
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
    ::close(fd);
    return ok;
  }

  // swtpm's TCP TCTI uses port N for commands and N+1 for control.
  static int pick_port_pair() {
    std::random_device rd;
    std::mt19937 gen(rd() ^ static_cast<unsigned>(::getpid()));
    std::uniform_int_distribution<int> dist(20000, 59998);
    for (int i = 0; i < 200; ++i) {
      int p = dist(gen);
      if (port_free(p) && port_free(p + 1)) return p;
    }
    return 0;
  }

  std::vector<std::string> argv(const std::string& binary) const {
    std::vector<std::string> a = {binary, "socket", "--tpm2", "--tpmstate",
                                  "dir=" + state_dir().string()};
    if (opts_.transport == Transport::kTcp) {
      a.insert(a.end(),
               {"--server", "type=tcp,port=" + std::to_string(port_) + ",bindaddr=127.0.0.1",
                "--ctrl", "type=tcp,port=" + std::to_string(port_ + 1) + ",bindaddr=127.0.0.1"});
    } else {
      a.insert(a.end(), {"--server", "type=unixio,path=" + socket_path().string(), "--ctrl",
                         "type=unixio,path=" + ctrl_path().string()});
    }
    a.insert(a.end(),
             {"--flags", opts_.startup_clear ? "not-need-init,startup-clear" : "not-need-init"});
    return a;
  }

  bool spawn(const std::string& binary, std::string* why) {
    std::vector<std::string> args = argv(binary);
    std::vector<char*> cargs;
    for (auto& s : args) cargs.push_back(s.data());
    cargs.push_back(nullptr);
    const std::string log = log_path().string();
    const pid_t parent = ::getpid();
    pid_t pid = ::fork();
    if (pid < 0) return fail(why, errno_text("fork"));
    if (pid == 0) {
      // Child: only async-signal-safe calls until exec.
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::getppid() != parent) ::_exit(127);  // the parent died before prctl
      int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
      if (fd >= 0) {
        ::dup2(fd, STDOUT_FILENO);
        ::dup2(fd, STDERR_FILENO);
      }
      int null = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
      if (null >= 0) ::dup2(null, STDIN_FILENO);
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      ::execv(cargs[0], cargs.data());
      ::_exit(127);
    }
    pid_ = pid;
    return true;
  }

  // Sends TPM2_GetRandom(1) on the command channel and expects a TPM response header (success, or
  // TPM_RC_INITIALIZE from a TPM started without startup-clear).
  bool tpm_answers() const {
    int fd = -1;
    if (opts_.transport == Transport::kTcp) {
      fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_in a{};
      a.sin_family = AF_INET;
      a.sin_port = htons(static_cast<uint16_t>(port_));
      a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
      if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
        if (fd >= 0) ::close(fd);
        return false;
      }
    } else {
      fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_un a{};
      a.sun_family = AF_UNIX;
      std::strncpy(a.sun_path, socket_path().c_str(), sizeof(a.sun_path) - 1);
      if (fd < 0 || ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) != 0) {
        if (fd >= 0) ::close(fd);
        return false;
      }
    }
    timeval tv{1, 0};
    ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    // tag TPM_ST_NO_SESSIONS, size 12, TPM_CC_GetRandom, bytesRequested 1.
    const unsigned char cmd[] = {0x80, 0x01, 0, 0, 0, 12, 0, 0, 0x01, 0x7b, 0, 1};
    bool ok = ::send(fd, cmd, sizeof(cmd), MSG_NOSIGNAL) == static_cast<ssize_t>(sizeof(cmd));
    unsigned char rsp[10] = {};
    size_t got = 0;
    while (ok && got < sizeof(rsp)) {
      ssize_t n = ::recv(fd, rsp + got, sizeof(rsp) - got, 0);
      if (n <= 0)
        ok = false;
      else
        got += static_cast<size_t>(n);
    }
    ::close(fd);
    return ok && rsp[0] == 0x80 && (rsp[1] == 0x01 || rsp[1] == 0x02);
  }

  bool wait_ready(std::string* why) {
    const auto deadline = std::chrono::steady_clock::now() + opts_.timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        pid_ = -1;
        return fail(why, "swtpm exited during start-up (status " + std::to_string(status) +
                             "): " + log_text());
      }
      if (tpm_answers()) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return fail(why, "swtpm did not answer within " + std::to_string(opts_.timeout.count()) +
                         " ms: " + log_text());
  }

  bool wait_exit(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      int status = 0;
      pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == pid_ || (r < 0 && errno == ECHILD)) {
        pid_ = -1;
        return true;
      }
      if (std::chrono::steady_clock::now() >= deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(2));
    }
  }

  void kill_and_reap() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    int status = 0;
    while (::waitpid(pid_, &status, 0) < 0 && errno == EINTR) {
    }
    pid_ = -1;
  }

  Options opts_;
  std::filesystem::path dir_;
  pid_t pid_ = -1;
  int port_ = 0;
};

// Runs a command (argv[0] looked up in PATH) with extra environment variables, capturing stdout
// and stderr together. For tpm2-tools and openssl as independent checkers.
struct ToolResult {
  int rc = -1;  // exit status, or 128+signal, or -1 if it could not run
  std::string output;
};

inline ToolResult run_tool(const std::vector<std::string>& args,
                           const std::vector<std::string>& env = {}) {
  ToolResult res;
  int pipefd[2];
  if (args.empty() || ::pipe2(pipefd, O_CLOEXEC) != 0) return res;
  std::vector<std::string> a = args;
  std::vector<char*> cargs;
  for (auto& s : a) cargs.push_back(s.data());
  cargs.push_back(nullptr);
  // The environment is built before fork: the child may only make async-signal-safe calls.
  std::vector<std::string> e;
  for (char** p = environ; *p != nullptr; ++p) {
    const std::string kv(*p);
    const std::string key = kv.substr(0, kv.find('=') + 1);
    bool overridden = false;
    for (const auto& x : env) overridden = overridden || x.rfind(key, 0) == 0;
    if (!overridden) e.push_back(kv);  // getenv() would see the first of two entries
  }
  e.insert(e.end(), env.begin(), env.end());
  std::vector<char*> cenv;
  for (auto& s : e) cenv.push_back(s.data());
  cenv.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) {
    ::close(pipefd[0]);
    ::close(pipefd[1]);
    return res;
  }
  if (pid == 0) {
    ::dup2(pipefd[1], STDOUT_FILENO);
    ::dup2(pipefd[1], STDERR_FILENO);
    ::execvpe(cargs[0], cargs.data(), cenv.data());
    ::_exit(127);
  }
  ::close(pipefd[1]);
  char buf[4096];
  ssize_t n;
  while ((n = ::read(pipefd[0], buf, sizeof(buf))) > 0 || (n < 0 && errno == EINTR)) {
    if (n > 0) res.output.append(buf, static_cast<size_t>(n));
  }
  ::close(pipefd[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  res.rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return res;
}

}  // namespace nsima::testing
