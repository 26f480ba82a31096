// SPDX-License-Identifier: Apache-2.0
// Helpers for the accessor tests: real processes that chroot (and unshare their mount namespace)
// and wait, events built the way the BPF side fills them (from /proc and stat of the process's
// view), a temporary directory, digests computed independently of the code under test (OpenSSL
// one-shot over the expected bytes), and bounded waits. The tests run as root.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/fs.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "access/file_accessor.h"
#include "access/proc.h"
#include "common/event.h"
#include "measure/hasher.h"

namespace nsima::access::testing {

class TempDir {
 public:
  explicit TempDir(const std::string& base = "/tmp") {
    std::string tmpl = base + "/nsima-access-XXXXXX";
    char* p = ::mkdtemp(tmpl.data());
    if (p == nullptr) ADD_FAILURE() << "mkdtemp failed in " << base;
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(std::string_view name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

inline void write_file(const std::filesystem::path& p, std::string_view content) {
  std::filesystem::create_directories(p.parent_path());
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
}

inline measure::Digest sha256_of(std::string_view s) {
  auto d = measure::hash_bytes(measure::HashAlgo::kSha256,
                               {reinterpret_cast<const uint8_t*>(s.data()), s.size()});
  EXPECT_TRUE(d);
  return d ? *d : measure::Digest(measure::HashAlgo::kSha256);
}

// Polls `pred` every 10 ms until true or `limit` passes.
template <class Pred>
bool wait_until(Pred pred, std::chrono::milliseconds limit = std::chrono::milliseconds(5000)) {
  auto end = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() >= end) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return true;
}

// The file fields of an event for `host_path` (a path nsimad can stat: "/proc/PID/root/..." or a
// path in our own root), as the BPF side reports them.
// With `open_it` false the file is only stat'ed (a FUSE file whose open never answers).
inline void fill_file(Event& ev, const std::string& host_path, bool open_it = true) {
  struct stat st {};
  EXPECT_EQ(::stat(host_path.c_str(), &st), 0) << host_path;
  ev.kdev = dev_to_kdev(st.st_dev);
  ev.ino = st.st_ino;
  ev.i_mode = st.st_mode;
  ev.stamp = Stamp{st.st_ctim.tv_sec, static_cast<uint32_t>(st.st_ctim.tv_nsec), 0,
                   static_cast<uint64_t>(st.st_size)};
  ev.generation = 0;
  if (!open_it) return;
  int fd = ::open(host_path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
  long v = 0;
  if (fd >= 0 && ::ioctl(fd, FS_IOC_GETVERSION, &v) == 0) ev.generation = static_cast<uint32_t>(v);
  if (fd >= 0) ::close(fd);
}

// The process fields: tgid, mount namespace, root (dev, ino) and start time, read from /proc as
// the kernel would report them for that process.
inline void fill_process(Event& ev, pid_t pid) {
  const std::string proc = "/proc/" + std::to_string(pid);
  ev.pid = ev.tgid = static_cast<uint32_t>(pid);
  struct stat ns {}, root {};
  EXPECT_EQ(::stat((proc + "/ns/mnt").c_str(), &ns), 0);
  EXPECT_EQ(::stat((proc + "/root").c_str(), &root), 0);  // follows the magic link: the root
  ev.mnt_ns = static_cast<uint32_t>(ns.st_ino);
  ev.root_kdev = dev_to_kdev(root.st_dev);
  ev.root_ino = root.st_ino;
  auto ticks = read_start_ticks(proc);
  EXPECT_TRUE(ticks);
  // Nanoseconds inside the tick, as the real start_boottime has: the check must floor them.
  ev.start_boottime_ns = (ticks ? *ticks : 0) * (1000000000ull / ::sysconf(_SC_CLK_TCK)) + 4321;
}

// Intake order, as the ring-buffer consumer numbers events.
inline uint64_t next_seq() {
  static std::atomic<uint64_t> seq{0};
  return ++seq;
}

// An event for `path` as process `pid` sees it (its root).
inline Event event_for(pid_t pid, const std::string& path) {
  Event ev;
  ev.seq = next_seq();
  fill_process(ev, pid);
  fill_file(ev, "/proc/" + std::to_string(pid) + "/root" + path);
  ev.path = path;
  return ev;
}

// A child process that runs `setup` (async-signal-safe calls only: the test is multi-threaded),
// reports readiness and then waits until released (or killed). setup returns 0 on success.
class Child {
 public:
  // `after` (optional) runs in the child once it reported ready, before it waits.
  explicit Child(const std::function<int()>& setup, const std::function<void()>& after = {}) {
    int ready[2];
    if (::pipe2(ready, O_CLOEXEC) != 0) {
      ADD_FAILURE() << "pipe";
      return;
    }
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive a test that crashed
      ::close(ready[0]);
      int rc = setup();
      char c = rc == 0 ? 'k' : static_cast<char>('0' + rc);
      if (::write(ready[1], &c, 1) != 1) ::_exit(3);
      if (rc != 0) ::_exit(2);
      if (after) after();
      for (;;) ::pause();
    }
    ::close(ready[1]);
    char c = 0;
    ssize_t n = ::read(ready[0], &c, 1);
    ::close(ready[0]);
    ok_ = n == 1 && c == 'k';
    if (!ok_) ADD_FAILURE() << "child setup failed: " << c;
  }
  ~Child() { stop(); }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  pid_t pid() const { return pid_; }
  bool ok() const { return ok_; }
  // Ends the child and reaps it.
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);
    int st = 0;
    ::waitpid(pid_, &st, 0);
    pid_ = -1;
  }

 private:
  pid_t pid_ = -1;
  bool ok_ = false;
};

// A tmpfs mounted on a fresh directory (a filesystem of its own: its own st_dev), lazily
// unmounted when done.
class TmpfsMount {
 public:
  explicit TmpfsMount(const std::filesystem::path& dir) : dir_(dir) {
    std::filesystem::create_directories(dir_);
    ok_ = ::mount("tmpfs", dir_.c_str(), "tmpfs", 0, "size=4m") == 0;
    if (!ok_) ADD_FAILURE() << "mount tmpfs on " << dir_ << ": " << std::strerror(errno);
  }
  ~TmpfsMount() {
    if (ok_) ::umount2(dir_.c_str(), MNT_DETACH);
  }
  std::filesystem::path operator/(std::string_view name) const { return dir_ / name; }

 private:
  std::filesystem::path dir_;
  bool ok_ = false;
};

// A child chrooted into `dir` (same mount namespace as the test).
inline std::function<int()> chroot_into(const std::string& dir) {
  return [d = dir.c_str()] { return ::chroot(d) == 0 && ::chdir("/") == 0 ? 0 : 1; };
}

// A "container": a new mount namespace with a private tmpfs at `dir` holding /bin/f = content,
// chrooted into it. `dir` and `content` must outlive the call.
inline std::function<int()> container(const std::string& dir, const std::string& content) {
  return [d = dir.c_str(), c = content.c_str(), n = content.size()] {
    if (::unshare(CLONE_NEWNS) != 0) return 1;
    if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return 2;
    if (::mount("tmpfs", d, "tmpfs", 0, "size=1m") != 0) return 3;
    if (::chroot(d) != 0 || ::chdir("/") != 0) return 4;
    if (::mkdir("/bin", 0755) != 0) return 5;
    int fd = ::open("/bin/f", O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return 6;
    bool ok = ::write(fd, c, n) == static_cast<ssize_t>(n);
    ::close(fd);
    return ok ? 0 : 7;
  };
}

}  // namespace nsima::access::testing
