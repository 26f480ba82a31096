// SPDX-License-Identifier: Apache-2.0
// bench_load: nsimad's pipeline under load on the host (issue 12, item 2), at full scale.
//
// 64 namespaces (8 with their own vTPM, swtpm), the host namespace on a real swtpm; 1,000,000
// file-open events spread over them, put into a real BPF ring buffer by the hooks' own submit
// path (bpf/emit.bpf.h nsima_submit, from the selftest object's SEC("syscall") nsima_test_emit:
// the same reserve, the same drop counters per namespace), a ring buffer too small for the burst
// and a consumer slowed down so that it overflows; files rewritten while they are hashed. The
// events carry real files' identities (dev, ino, generation, ctime stamp), so nsimad reads and
// hashes real files through its file accessor.
//
// Afterwards it checks and prints: every dropped event is an nsima:lost-events violation in the
// list of the namespace it belonged to; every list replays to its PCR (host TPM or vTPM, read
// from the TPM); the producer never waited (its BPF calls' latency); nsimad's memory: RSS
// (/proc/self/status VmRSS, smaps_rollup Pss) and malloc'd bytes (mallinfo2) before and after,
// per namespace, per list entry and per measured file version. The harness allocates its own
// buffers before the first figure, so the differences are nsimad's state.
//
// Run as root: build/tests/bench/bench_load [--namespaces 64] [--vtpms 8] [--events 1000000]
//   [--files 64] [--ringbuf 65536] [--delay-ms 2] [--rewrite-us 200] [--hash-threads 2]
//   [--digest-cache 65536]
// Exit status: 0 when every check holds, 1 otherwise (figures are printed either way).
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <linux/fs.h>
#include <malloc.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "capture/bpf_maps.h"
#include "capture/event_source.h"
#include "common/log.h"
#include "ns/pipeline.h"
#include "tpm/vtpm_manager.h"
#include "nsima_selftest.skel.h"
#include "selftest_abi.h"
#include "../bpf/skel_maps.h"
#include "../tpm/swtpm_fixture.h"

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

namespace {

struct Args {
  int namespaces = 64, vtpms = 8, files = 64, delay_ms = 2, rewrite_us = 200, hash_threads = 2;
  uint64_t events = 1000000;
  uint32_t ringbuf = 65536;
  size_t digest_cache = 65536;  // items (PipelineOptions::digest_cache)
};

struct Mem {
  long rss_kb = 0, pss_kb = 0;
  size_t heap = 0;  // bytes malloc'd and in use
};

long status_kb(const char* file, const char* key) {
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);)
    if (line.rfind(key, 0) == 0) return std::stol(line.substr(std::strlen(key)));
  return -1;
}

Mem mem() {
  malloc_trim(0);  // what malloc keeps but does not use is not nsimad's state
  Mem m;
  m.rss_kb = status_kb("/proc/self/status", "VmRSS:");
  m.pss_kb = status_kb("/proc/self/smaps_rollup", "Pss:");
  // In use from the arenas plus the blocks malloc mmapped for itself (>= 128 KiB: tables,
  // chunks), which uordblks alone leaves out.
  struct mallinfo2 mi = mallinfo2();
  m.heap = mi.uordblks + mi.hblkhd;
  return m;
}

long pid_rss_kb(pid_t pid) {
  return status_kb(("/proc/" + std::to_string(pid) + "/status").c_str(), "VmRSS:");
}

struct File {
  std::string path;
  uint64_t kdev = 0, ino = 0;
  uint32_t gen = 0, mode = 0;
  uint64_t magic = 0;
};

int failures = 0;
void check(bool ok, const std::string& what) {
  if (!ok) {
    ++failures;
    std::printf("FAIL: %s\n", what.c_str());
  }
}

std::string content(size_t ns, size_t f, uint64_t version) {
  std::string s(4096, '\0');
  std::mt19937_64 g(ns * 1000003 + f * 7919 + version);
  for (size_t i = 0; i < s.size(); i += 8) {
    uint64_t v = g();
    std::memcpy(&s[i], &v, 8);
  }
  return s;
}

void write_file(const std::string& path, const std::string& data) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT, 0644);
  if (fd < 0) return;
  (void)!::pwrite(fd, data.data(), data.size(), 0);
  ::close(fd);
}

struct SkelDeleter {
  void operator()(nsima_selftest* s) const { nsima_selftest::destroy(s); }
};

}  // namespace

int main(int argc, char** argv) {
  Args a;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string k = argv[i], v = argv[i + 1];
    if (k == "--namespaces") a.namespaces = std::stoi(v);
    else if (k == "--vtpms") a.vtpms = std::stoi(v);
    else if (k == "--events") a.events = std::stoull(v);
    else if (k == "--files") a.files = std::stoi(v);
    else if (k == "--ringbuf") a.ringbuf = static_cast<uint32_t>(std::stoul(v));
    else if (k == "--delay-ms") a.delay_ms = std::stoi(v);
    else if (k == "--rewrite-us") a.rewrite_us = std::stoi(v);
    else if (k == "--hash-threads") a.hash_threads = std::stoi(v);
    else if (k == "--digest-cache") a.digest_cache = std::stoul(v);
    else {
      std::fprintf(stderr, "bench_load: unknown option %s\n", k.c_str());
      return 2;
    }
  }
  if (geteuid() != 0) {
    std::fprintf(stderr, "bench_load: run as root (a private cgroup2 mount, BPF maps)\n");
    return 2;
  }
  nsima::set_log_level("warn");

  char tmpl[] = "/tmp/nsima-load-XXXXXX";
  if (!::mkdtemp(tmpl)) return 2;
  const std::string dir = tmpl, cg = dir + "/cg";
  fs::create_directories(cg);
  if (::mount("none", cg.c_str(), "cgroup2", 0, nullptr) != 0) {
    std::perror("bench_load: mount cgroup2");
    return 2;
  }
  struct Cleanup {
    std::string dir, cg;
    std::vector<std::string> cgroups;
    ~Cleanup() {
      for (auto& c : cgroups) ::rmdir(c.c_str());
      ::umount(cg.c_str());
      std::error_code ec;
      fs::remove_all(dir, ec);
    }
  } cleanup{dir, cg, {}};

  // The files, before any figure: 4 KiB each, content unique per namespace, file and version.
  std::vector<std::vector<File>> files(a.namespaces);
  struct stat root_st {};
  ::stat("/", &root_st);
  for (int n = 0; n < a.namespaces; ++n) {
    std::string d = dir + "/files/" + std::to_string(n);
    fs::create_directories(d);
    for (int f = 0; f < a.files; ++f) {
      File x;
      x.path = d + "/f" + std::to_string(f);
      write_file(x.path, content(n, f, 0));
      struct stat st {};
      ::stat(x.path.c_str(), &st);
      x.kdev = nsima::dev_to_kdev(st.st_dev);
      x.ino = st.st_ino;
      x.mode = st.st_mode;
      int fd = ::open(x.path.c_str(), O_RDONLY);
      int gen = 0;
      ::ioctl(fd, FS_IOC_GETVERSION, &gen);
      ::close(fd);
      x.gen = static_cast<uint32_t>(gen);
      struct statfs sfs {};
      ::statfs(x.path.c_str(), &sfs);
      x.magic = static_cast<uint64_t>(sfs.f_type);
      files[n].push_back(std::move(x));
    }
  }
  std::vector<nsima_event> batch(NSIMA_SELFTEST_EMIT_MAX);
  std::vector<double> call_us;
  call_us.reserve(a.events / NSIMA_SELFTEST_EMIT_MAX + 64);

  nsima::testing::SwtpmProcess host_tpm;
  std::string err;
  if (!host_tpm.start(&err)) {
    std::fprintf(stderr, "bench_load: host swtpm: %s\n", err.c_str());
    return 2;
  }

  std::unique_ptr<nsima_selftest, SkelDeleter> skel(nsima_selftest::open());
  if (!skel || bpf_map__set_max_entries(skel->maps.events, a.ringbuf) != 0 ||
      nsima_selftest::load(skel.get()) != 0) {
    std::fprintf(stderr, "bench_load: loading nsima_selftest.bpf.o failed (errno %d)\n", errno);
    return 2;
  }
  nsima::capture::BpfMaps maps(nsima::testing::selftest_map_fds(skel.get()));

  nsima::ns::PipelineOptions o;
  o.cgroup_root = cg;
  o.state_dir = dir + "/state";
  o.run_dir = dir + "/run";
  o.host_tcti = host_tpm.tcti();
  o.hash_threads = static_cast<size_t>(a.hash_threads);
  o.digest_cache = a.digest_cache;
  o.barrier_timeout = std::chrono::seconds(120);
  nsima::ns::Pipeline p(o, &maps);
  if (auto r = p.init(); !r) {
    std::fprintf(stderr, "bench_load: %s\n", r.error().to_string().c_str());
    return 2;
  }
  p.start();
  // vTPMs outlive nsimad on purpose (daemon/tpm/README.md); this run leaves none behind.
  struct VtpmReaper {
    nsima::tpm::VtpmOptions vo;
    ~VtpmReaper() {
      nsima::tpm::VtpmManager m(vo);
      if (auto all = m.attach_all())
        for (auto& i : *all) (void)m.destroy(i.ns);
    }
  } reaper;
  reaper.vo.state_root = fs::path(o.state_dir) / "vtpm";
  reaper.vo.run_root = fs::path(o.run_dir) / "vtpm";
  nsima::capture::EventSource src(bpf_map__fd(skel->maps.events),
                                  [&](nsima::Event&& ev) { p.submit(std::move(ev)); });
  src.set_poll_delay(std::chrono::milliseconds(a.delay_ms));
  if (auto r = src.start(); !r) return 2;
  p.set_intake_sync([&src](std::chrono::milliseconds t) { return src.sync(t); });

  const Mem m0 = mem();
  // The namespaces.
  struct Ns {
    uint32_t id = 0;
    uint64_t cgroup_id = 0;
    bool vtpm = false;
  };
  std::vector<Ns> nss(a.namespaces);
  const std::string policy = "measure func=FILE_CHECK mask=^MAY_READ\n";
  auto t_ns = Clock::now();
  for (int n = 0; n < a.namespaces; ++n) {
    std::string path = cg + "/t-" + std::to_string(getpid()) + "-ns" + std::to_string(n);
    fs::create_directories(path);
    cleanup.cgroups.push_back(path);
    nsima::ns::Pipeline::CreateOptions co;
    co.vtpm = n < a.vtpms;
    co.policy_text = policy;
    co.policy_origin = "load.policy";
    auto id = p.create_namespace(path, co);
    if (!id) {
      std::fprintf(stderr, "bench_load: namespace %d: %s\n", n, id.error().to_string().c_str());
      return 2;
    }
    struct stat st {};
    ::stat(path.c_str(), &st);
    nss[n] = Ns{*id, st.st_ino, co.vtpm};
  }
  const double ns_s = std::chrono::duration<double>(Clock::now() - t_ns).count();
  const Mem m1 = mem();
  long swtpm_kb = 0;
  {
    // vTPM processes: their pids are in <run>/vtpm/<id>/ (swtpm's own memory, not nsimad's)
    for (auto& e : fs::recursive_directory_iterator(o.run_dir, fs::directory_options::skip_permission_denied)) {
      if (e.path().extension() != ".pid") continue;
      std::ifstream in(e.path());
      pid_t pid = 0;
      if (in >> pid && pid > 0) swtpm_kb += std::max(0L, pid_rss_kb(pid));
    }
  }

  // Rewriter: files change while nsimad hashes them (same inode, new content and ctime).
  std::atomic<bool> stop{false};
  std::atomic<uint64_t> rewrites{0};
  std::thread rewriter([&] {
    std::mt19937 g(42);
    uint64_t v = 1;
    while (!stop.load()) {
      size_t n = g() % a.namespaces, f = g() % a.files;
      write_file(files[n][f].path, content(n, f, v++));
      rewrites++;
      std::this_thread::sleep_for(std::chrono::microseconds(a.rewrite_us));
    }
  });

  // The burst: the producer calls the hooks' submit path; it never waits for the consumer.
  const int emit_fd = bpf_program__fd(skel->progs.nsima_test_emit);
  const uint32_t self = static_cast<uint32_t>(getpid());
  struct stat mnt {};
  ::stat("/proc/self/ns/mnt", &mnt);
  uint64_t submitted = 0;
  auto t0 = Clock::now();
  for (uint64_t i = 0; i < a.events;) {
    uint32_t k = 0;
    for (; k < NSIMA_SELFTEST_EMIT_MAX && i < a.events; ++k, ++i) {
      const size_t n = i % a.namespaces;
      const size_t f = (i / a.namespaces) % a.files;
      const File& x = files[n][f];
      nsima_event& e = batch[k];
      std::memset(&e, 0, NSIMA_EVENT_HEADER_SIZE);
      struct stat st {};
      ::stat(x.path.c_str(), &st);  // the stamp the hook would read now
      e.hook = NSIMA_HOOK_FILE_OPEN;
      e.ktime_ns = static_cast<uint64_t>(Clock::now().time_since_epoch().count());
      e.pid = e.tgid = self;
      e.cgroup_id = nss[n].cgroup_id;
      e.ns_id = nss[n].id;
      e.mnt_ns = static_cast<uint32_t>(mnt.st_ino);
      e.dev = x.kdev;
      e.ino = x.ino;
      e.generation = x.gen;
      e.i_mode = x.mode;
      e.stamp.ctime_sec = st.st_ctim.tv_sec;
      e.stamp.ctime_nsec = static_cast<uint32_t>(st.st_ctim.tv_nsec);
      e.stamp.size = static_cast<uint64_t>(st.st_size);
      e.fs_magic = x.magic;
      e.f_flags = O_RDONLY;
      e.f_mode = 1;  // FMODE_READ
      e.mask = NSIMA_MAY_READ;
      e.i_readcount = -1;
      e.root_dev = nsima::dev_to_kdev(root_st.st_dev);
      e.root_ino = root_st.st_ino;
      std::memcpy(e.comm, "bench_load", 11);
      std::memcpy(e.path, x.path.c_str(), x.path.size() + 1);
      e.path_len = static_cast<int32_t>(x.path.size() + 1);
    }
    nsima_selftest_emit ctx{reinterpret_cast<uint64_t>(batch.data()), k, 0};
    // A syscall program's context is copied back into ctx_in.
    LIBBPF_OPTS(bpf_test_run_opts, ro, .ctx_in = &ctx, .ctx_size_in = sizeof ctx);
    auto c0 = Clock::now();
    int rc = bpf_prog_test_run_opts(emit_fd, &ro);
    call_us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - c0).count());
    if (rc != 0 || ro.retval != 0) {
      std::fprintf(stderr, "bench_load: nsima_test_emit failed (rc %d, retval %d)\n", rc,
                   static_cast<int>(ro.retval));
      return 2;
    }
    submitted += ctx.submitted;
  }
  const double produce_s = std::chrono::duration<double>(Clock::now() - t0).count();
  stop = true;
  rewriter.join();

  // Everything consumed, judged, read, recorded, extended; the drops' violations written (the
  // pipeline's tick reads the counters).
  auto synced = src.sync(std::chrono::seconds(600));
  check(synced.has_value(), "the consumer reached the end of the ring buffer");
  p.drain();
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  p.drain();
  const double settle_s = std::chrono::duration<double>(Clock::now() - t0).count();
  const Mem m2 = mem();

  auto stats = maps.stats();
  auto drops = maps.ns_drops();
  check(stats && drops, "BPF counters readable");
  const uint64_t emitted = stats ? stats->emitted[NSIMA_HOOK_FILE_OPEN] : 0;
  const uint64_t dropped = stats ? stats->dropped[NSIMA_HOOK_FILE_OPEN] : 0;
  check(submitted == a.events, "every event offered to the ring buffer");
  check(emitted + dropped == a.events, "emitted + dropped = events (" + std::to_string(emitted) +
                                           " + " + std::to_string(dropped) + ")");
  check(src.decoded() == emitted, "every emitted record decoded (" +
                                      std::to_string(src.decoded()) + ")");
  check(dropped > 0, "the ring buffer was too small for the burst (nothing dropped)");

  // Per namespace: its drops are its lost-events violations; its list replays to its PCR.
  uint64_t entries_all = 0, violations_lost_all = 0, mismatches = 0, lost_mismatch = 0;
  uint64_t file_entries = 0;
  for (auto& n : nss) {
    const std::string id = std::to_string(n.id);
    auto list = p.render_list(id, true);
    check(list.has_value(), "list of namespace " + id);
    if (!list) continue;
    uint64_t lost = 0, entries = 0, files_measured = 0;
    std::istringstream in(*list);
    for (std::string line; std::getline(in, line);) {
      ++entries;
      auto at = line.find(" nsima:lost-events:");
      if (at != std::string::npos) lost += std::stoull(line.substr(at + 19));
      else if (line.find(dir + "/files/") != std::string::npos) ++files_measured;
    }
    entries_all += entries;
    file_entries += files_measured;
    violations_lost_all += lost;
    uint64_t want = drops && drops->count(n.id) ? drops->at(n.id) : 0;
    if (lost != want) {
      ++lost_mismatch;
      std::printf("namespace %s: %llu lost-events in its list, %llu dropped\n", id.c_str(),
                  (unsigned long long)lost, (unsigned long long)want);
    }
    auto rep = p.pcr_report(id);
    check(rep.has_value(), "PCR report of namespace " + id);
    if (rep && (rep->values.empty() || rep->values != rep->expected)) {
      ++mismatches;
      std::printf("namespace %s: PCR %d of %s does not match its list's replay\n", id.c_str(),
                  rep->pcr, rep->tpm.c_str());
    }
  }
  auto host_list = p.render_list("host", true);
  uint64_t host_entries = 0;
  if (host_list) host_entries = std::count(host_list->begin(), host_list->end(), '\n');
  auto host_rep = p.pcr_report("host");
  check(host_rep && !host_rep->values.empty() && host_rep->values == host_rep->expected,
        "the host list (owner of the namespaces without a vTPM) replays to host PCR");
  check(lost_mismatch == 0, "every namespace's lost-events violations equal its drops");
  check(violations_lost_all == dropped, "lost-events over all lists (" +
                                            std::to_string(violations_lost_all) +
                                            ") = dropped (" + std::to_string(dropped) + ")");
  check(mismatches == 0, "every namespace's list replays to its PCR");

  auto c = p.counters();
  auto as = p.access_stats();
  std::sort(call_us.begin(), call_us.end());
  auto pct = [&](double q) { return call_us.empty() ? 0.0 : call_us[size_t(q * (call_us.size() - 1))]; };
  const double ns_count = a.namespaces;
  const double file_versions = static_cast<double>(file_entries);
  const long drss = m2.rss_kb - m1.rss_kb;
  const long dpss = m2.pss_kb - m1.pss_kb;
  const double dheap = static_cast<double>(m2.heap) - static_cast<double>(m1.heap);
  const double all_entries = static_cast<double>(entries_all + host_entries);
  std::printf("bench_load: %d namespaces (%d with a vTPM), %llu events over %d files each, "
              "ring buffer %u B, consumer delay %d ms, %d hash threads\n",
              a.namespaces, a.vtpms, (unsigned long long)a.events, a.files, a.ringbuf,
              a.delay_ms, a.hash_threads);
  std::printf("events: emitted %llu, dropped %llu (%.1f%%), decoded %llu, processed %llu; "
              "rewrites during the run %llu\n",
              (unsigned long long)emitted, (unsigned long long)dropped,
              100.0 * dropped / std::max<uint64_t>(1, a.events),
              (unsigned long long)src.decoded(), (unsigned long long)c.processed,
              (unsigned long long)rewrites.load());
  std::printf("lists: %llu entries in the namespaces' lists (%llu file entries), %llu in the "
              "host list (owner copies), lost-events %llu; hash jobs %llu, unreadable %llu, "
              "access timeouts %llu\n",
              (unsigned long long)entries_all, (unsigned long long)file_entries,
              (unsigned long long)host_entries, (unsigned long long)violations_lost_all,
              (unsigned long long)c.hash_jobs, (unsigned long long)c.unreadable,
              (unsigned long long)as.timeouts);
  std::printf("time: %d namespaces created in %.1f s; burst produced in %.2f s (%.0f events/s); "
              "all recorded after %.1f s\n",
              a.namespaces, ns_s, produce_s, a.events / produce_s, settle_s);
  std::printf("producer (the workload's side): BPF submit call of %d events: median %.1f us, "
              "p99 %.1f us, max %.1f us: it never waits for nsimad\n",
              NSIMA_SELFTEST_EMIT_MAX, pct(0.5), pct(0.99), pct(1.0));
  std::printf("memory (nsimad's process): RSS %ld -> %ld -> %ld kB, PSS %ld -> %ld -> %ld kB, "
              "heap in use %zu -> %zu -> %zu B; vTPM swtpm processes %ld kB in all\n",
              m0.rss_kb, m1.rss_kb, m2.rss_kb, m0.pss_kb, m1.pss_kb, m2.pss_kb, m0.heap, m1.heap,
              m2.heap, swtpm_kb);
  std::printf("per namespace: RSS %.1f kB, heap %.1f kB\n", (m1.rss_kb - m0.rss_kb) / ns_count,
              (static_cast<double>(m1.heap) - m0.heap) / 1024.0 / ns_count);
  std::printf("per list entry (%.0f, all lists): RSS %.0f B, PSS %.0f B, heap %.0f B (goal <= 200)\n",
              all_entries, drss * 1024.0 / all_entries, dpss * 1024.0 / all_entries,
              dheap / all_entries);
  std::printf("per measured file version (%.0f): RSS %.0f B, PSS %.0f B, heap %.0f B (goal <= 200)\n",
              file_versions, drss * 1024.0 / file_versions, dpss * 1024.0 / file_versions,
              dheap / file_versions);
  std::printf("%s\n", failures ? "bench_load: CHECKS FAILED" : "bench_load: every check holds");
  src.stop();
  p.stop();
  return failures ? 1 : 0;
}
