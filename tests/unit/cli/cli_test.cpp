// SPDX-License-Identifier: Apache-2.0
// nsimactl and nsimad as a user (or a script) meets them: --version, exit codes (usage errors 2,
// failures 1), --json on the reading commands, nsimad's own error instead of a broken pipe,
// success messages on stdout, explain's unknown fields, a second nsimad refused before BPF. The
// real binaries run as child processes (with a timeout) against a real pipeline without BPF or
// TPM, served on a control socket by this process (needs root: a private cgroup2 mount).
#include <fcntl.h>
#include <linux/fs.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <openssl/sha.h>

#include <map>
#include <regex>
#include <set>

#include "common/hex.h"
#include "control/handlers.h"
#include "control/server.h"
#include "service/instance_lock.h"

namespace nsima {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

struct Proc {
  int rc = -1;
  std::string out, err;
};

// Runs `argv` with a 30 s timeout; stdout and stderr captured apart.
Proc run(const std::vector<std::string>& argv) {
  int out_pipe[2], err_pipe[2];
  EXPECT_EQ(::pipe2(out_pipe, O_CLOEXEC), 0);
  EXPECT_EQ(::pipe2(err_pipe, O_CLOEXEC), 0);
  pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out_pipe[1], 1);
    ::dup2(err_pipe[1], 2);
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    ::execv(args[0], args.data());
    _exit(127);
  }
  ::close(out_pipe[1]);
  ::close(err_pipe[1]);
  Proc r;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  pollfd p[2] = {{out_pipe[0], POLLIN, 0}, {err_pipe[0], POLLIN, 0}};
  int open_fds = 2;
  while (open_fds > 0 && std::chrono::steady_clock::now() < deadline) {
    if (::poll(p, 2, 200) <= 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (p[i].fd < 0 || !(p[i].revents & (POLLIN | POLLHUP))) continue;
      char buf[65536];
      ssize_t n = ::read(p[i].fd, buf, sizeof buf);
      if (n <= 0) {
        ::close(p[i].fd);
        p[i].fd = -1;
        --open_fds;
        continue;
      }
      (i == 0 ? r.out : r.err).append(buf, static_cast<size_t>(n));
    }
  }
  for (auto& f : p)
    if (f.fd >= 0) {
      ::kill(pid, SIGKILL);
      ::close(f.fd);
      ADD_FAILURE() << argv[0] << ": timed out";
    }
  int status = 0;
  ::waitpid(pid, &status, 0);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

std::string show(const Proc& r) {
  return "rc " + std::to_string(r.rc) + "\nstdout: " + r.out + "\nstderr: " + r.err;
}

std::vector<json> json_lines(const std::string& text) {
  std::vector<json> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    auto j = json::parse(line, nullptr, false);
    EXPECT_TRUE(j.is_object()) << "not a JSON object line: " << line;
    out.push_back(j);
  }
  return out;
}

// The binaries without a daemon.
TEST(CliOffline, VersionOnBoth) {
  Proc c = run({NSIMACTL, "--version"});
  EXPECT_EQ(c.rc, 0) << show(c);
  EXPECT_EQ(c.out, std::string("nsimactl ") + NSIMA_VERSION + "\n") << show(c);
  Proc d = run({NSIMAD, "--version"});
  EXPECT_EQ(d.rc, 0) << show(d);
  EXPECT_EQ(d.out, std::string("nsimad ") + NSIMA_VERSION + "\n") << show(d);
}

TEST(CliOffline, UsageErrorsExit2AndHelpDocumentsTheCodes) {
  for (std::vector<std::string> argv : std::vector<std::vector<std::string>>{
           {NSIMACTL},                                       // no subcommand (CLI11: 106)
           {NSIMACTL, "frobnicate"},                         // unknown subcommand (109)
           {NSIMACTL, "log"},                                // missing --ns (106)
           {NSIMACTL, "log", "--ns", "1", "--format", "xml"},  // bad value (105)
           {NSIMACTL, "status", "--bogus"},
           {NSIMAD, "--no-such-flag"},
           {NSIMAD, "--hash-threads", "many"}}) {
    Proc r = run(argv);
    EXPECT_EQ(r.rc, 2) << argv.back() << ": " << show(r);
    EXPECT_FALSE(r.err.empty()) << argv.back() << ": a usage error says what is wrong";
  }
  Proc help = run({NSIMACTL, "--help"});
  EXPECT_EQ(help.rc, 0) << show(help);
  EXPECT_NE(help.out.find("Exit codes: 0 success, 1 the operation failed"), std::string::npos)
      << help.out;
  Proc dhelp = run({NSIMAD, "--help"});
  EXPECT_EQ(dhelp.rc, 0) << show(dhelp);
  EXPECT_NE(dhelp.out.find("Exit codes:"), std::string::npos) << dhelp.out;
}

TEST(CliOffline, ExplainRefusesUnknownEventFields) {
  Proc r = run({NSIMACTL, "policy", "explain", "builtin:tcb", "--event",
               R"({"func":"FILE_CHECK","Uid":1000})"});
  EXPECT_EQ(r.rc, 2) << show(r);
  EXPECT_NE(r.err.find("unknown field 'Uid' in the event (did you mean 'uid'?)"),
            std::string::npos)
      << show(r);
  EXPECT_EQ(r.out.find("decision"), std::string::npos) << "nothing explained: " << show(r);
}

TEST(CliOffline, DigestsFromRootfsJson) {
  char tmpl[] = "/tmp/nsima-cli-rootfs-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  fs::create_directories(dir + "/bin");
  std::ofstream(dir + "/bin/a") << "abc";
  Proc r = run({NSIMACTL, "digests", "from-rootfs", dir, "--json"});
  EXPECT_EQ(r.rc, 0) << show(r);
  auto lines = json_lines(r.out);
  ASSERT_EQ(lines.size(), 1u) << show(r);
  // sha256("abc")
  EXPECT_EQ(lines[0].value("digest", ""),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(lines[0].value("path", ""), "/bin/a");
  fs::remove_all(dir);
}

// A second nsimad stops at its instance lock, before any BPF work: the message is the lock's
// (with the holder's pid), not the BPF-LSM probe's that this host would give.
TEST(CliOffline, SecondNsimadSaysAlreadyRunningBeforeBpf) {
  char tmpl[] = "/tmp/nsima-cli-lock-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  std::string dir = tmpl;
  auto lock = service::InstanceLock::acquire(dir + "/run");
  ASSERT_TRUE(lock) << lock.error().to_string();
  Proc r = run({NSIMAD, "--run-dir", dir + "/run", "--state-dir", dir + "/state", "--socket",
               dir + "/run/s.sock", "--pin-dir", "", "--host-tcti", "none"});
  EXPECT_EQ(r.rc, 1) << show(r);
  EXPECT_NE(r.err.find("nsimad is already running (pid " + std::to_string(::getpid()) + ";"),
            std::string::npos)
      << show(r);
  EXPECT_FALSE(fs::exists(dir + "/state")) << "the second nsimad touched the state directory";
  fs::remove_all(dir);
}

TEST(InstanceLock, OneHolderAStaleFileIsTakenOver) {
  char tmpl[] = "/tmp/nsima-lock-XXXXXX";
  ASSERT_NE(::mkdtemp(tmpl), nullptr);
  std::string dir = std::string(tmpl) + "/run";
  {
    auto a = service::InstanceLock::acquire(dir);
    ASSERT_TRUE(a) << a.error().to_string();
    std::ifstream in(dir + "/nsimad.pid");
    long pid = 0;
    in >> pid;
    EXPECT_EQ(pid, ::getpid());
    auto b = service::InstanceLock::acquire(dir);  // another open file: flock conflicts
    ASSERT_FALSE(b);
    EXPECT_EQ(b.error().code, EBUSY);
    EXPECT_EQ(b.error().message, "nsimad is already running (pid " + std::to_string(::getpid()) +
                                     "; it holds " + dir + "/nsimad.pid)");
  }
  std::ofstream(dir + "/nsimad.pid") << "999999\n";  // left by a killed nsimad: not locked
  auto c = service::InstanceLock::acquire(dir);
  EXPECT_TRUE(c) << c.error().to_string();
  fs::remove_all(tmpl);
}

// With a daemon: a pipeline and the control server in this process, nsimactl as a child.
class CliTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/nsima-cli-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    cg_ = dir_ + "/cg";
    fs::create_directories(cg_);
    ASSERT_EQ(::mount("none", cg_.c_str(), "cgroup2", 0, nullptr), 0)
        << "mount cgroup2: " << strerror(errno) << " (tests run as root)";
    mounted_ = true;
    fs::create_directories(dir_ + "/files");
    ns::PipelineOptions o;
    o.cgroup_root = cg_;
    o.state_dir = dir_ + "/state";
    o.run_dir = dir_ + "/run";
    o.host_tcti = "";
    p_ = std::make_unique<ns::Pipeline>(o, nullptr);
    auto r = p_->init();
    ASSERT_TRUE(r) << r.error().to_string();
    p_->start();
    ASSERT_TRUE(p_->load_policy("host", "measure func=FILE_CHECK mask=^MAY_READ\n", "t.policy"));
    ctx_.pipeline = p_.get();
    socket_ = dir_ + "/run/nsimad.sock";
    server_ = std::make_unique<control::Server>(
        socket_, [this](const json& req, control::Connection& conn) {
          control::handle_request(ctx_, req, conn);
        });
    ctx_.stopping = [this] { return server_->stopping(); };
    auto s = server_->start();
    ASSERT_TRUE(s) << s.error().to_string();
  }
  void TearDown() override {
    if (server_) server_->stop();
    server_.reset();
    if (p_) p_->stop();
    p_.reset();
    if (mounted_) ::umount(cg_.c_str());
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  Proc ctl(std::vector<std::string> args) {
    args.insert(args.begin(), {NSIMACTL, "--socket", socket_});
    return run(args);
  }

  // A file read by root in the host namespace, measured before this returns.
  std::string measure_file(const std::string& name, const std::string& content) {
    std::string path = dir_ + "/files/" + name;
    std::ofstream(path) << content;
    Event ev;
    ev.hook = Hook::kFileOpen;
    ev.ns_id = ns::kHostNsId;
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

  std::string dir_, cg_, socket_;
  bool mounted_ = false;
  std::unique_ptr<ns::Pipeline> p_;
  control::DaemonContext ctx_;
  std::unique_ptr<control::Server> server_;
};

TEST_F(CliTest, StatusTextByDefaultJsonWithFlag) {
  Proc t = ctl({"status"});
  EXPECT_EQ(t.rc, 0) << show(t);
  EXPECT_NE(t.out.find("nsimad: 1 namespaces\n"), std::string::npos) << show(t);
  EXPECT_NE(t.out.find("capture: no BPF programs"), std::string::npos) << show(t);
  EXPECT_NE(t.out.find("ID\tPARENT\tOWNER"), std::string::npos) << show(t);
  Proc j = ctl({"status", "--json"});
  EXPECT_EQ(j.rc, 0) << show(j);
  auto lines = json_lines(j.out);
  ASSERT_EQ(lines.size(), 1u) << show(j);
  EXPECT_FALSE(lines[0].contains("ok"));
  ASSERT_TRUE(lines[0]["namespaces"].is_array());
  EXPECT_EQ(lines[0]["namespaces"][0].value("id", ""), "host");
  EXPECT_TRUE(lines[0]["pipeline"].contains("measured"));
}

// nsimad without a TPM says so in status (text and JSON), naming the namespaces it leaves
// unanchored (start-up's warning and the PCR refusals: tests/bpf/startup_errors_test.sh).
TEST_F(CliTest, StatusSaysLoudlyThatNoTpmAnchorsTheLists) {
  Proc t = ctl({"status"});
  EXPECT_EQ(t.rc, 0) << show(t);
  EXPECT_NE(t.out.find("nsimad: 1 namespaces\nWARNING: no TPM: lists not anchored to any PCR "
                       "(namespaces host); start nsimad with a host TPM (--host-tcti) or give "
                       "them a vTPM\n"),
            std::string::npos)
      << show(t);
  Proc j = ctl({"status", "--json"});
  auto lines = json_lines(j.out);
  ASSERT_EQ(lines.size(), 1u) << show(j);
  ASSERT_TRUE(lines[0]["warnings"].is_array()) << show(j);
  ASSERT_EQ(lines[0]["warnings"].size(), 1u) << show(j);
  EXPECT_EQ(lines[0]["warnings"][0].get<std::string>().rfind("no TPM: lists not anchored", 0), 0u);
}

TEST_F(CliTest, LogJsonIsOneObjectPerEntryWithTheAsciiColumns) {
  std::string path = measure_file("a.txt", "abc");
  Proc ascii = ctl({"log", "--ns", "host"});
  ASSERT_EQ(ascii.rc, 0) << show(ascii);
  Proc j = ctl({"log", "--ns", "host", "--json"});
  ASSERT_EQ(j.rc, 0) << show(j);
  auto lines = json_lines(j.out);
  ASSERT_EQ(lines.size(), 2u) << show(j);  // boot_aggregate + the file
  EXPECT_EQ(lines[0].value("path", ""), "boot_aggregate");
  EXPECT_EQ(lines[1].value("index", -1), 1);
  EXPECT_EQ(lines[1].value("path", ""), path);
  EXPECT_EQ(lines[1].value("template", ""), "ima-ng");
  EXPECT_EQ(lines[1].value("digest", ""),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_FALSE(lines[1].contains("violation"));
  // The same columns as the ascii list's second line: "10 <template hash> ima-ng <digest> <path>".
  std::istringstream in(ascii.out);
  std::string first, second;
  std::getline(in, first);
  std::getline(in, second);
  EXPECT_EQ(second, std::to_string(lines[1].value("pcr", 0)) + " " +
                        lines[1].value("template_hash", "") + " ima-ng " +
                        lines[1].value("digest", "") + " " + path)
      << ascii.out;
}

TEST_F(CliTest, JsonOnTheOtherReadingCommands) {
  Proc ns = ctl({"ns", "list", "--json"});
  EXPECT_EQ(ns.rc, 0) << show(ns);
  auto nss = json_lines(ns.out);
  ASSERT_EQ(nss.size(), 1u);
  EXPECT_EQ(nss[0].value("id", ""), "host");
  Proc keys = ctl({"keys", "list", "--ns", "host", "--json"});
  EXPECT_EQ(keys.rc, 0) << show(keys);
  EXPECT_EQ(keys.out, "") << "no keys, no header with --json";
  Proc pol = ctl({"policy", "show", "--ns", "host", "--json"});
  EXPECT_EQ(pol.rc, 0) << show(pol);
  auto p = json_lines(pol.out);
  ASSERT_EQ(p.size(), 1u);
  EXPECT_NE(p[0].value("policy", "").find("measure func=FILE_CHECK"), std::string::npos);
  Proc audit = ctl({"audit", "--ns", "host", "--json"});
  EXPECT_EQ(audit.rc, 0) << show(audit);
  json_lines(audit.out);  // every line (if any) a JSON object
  // pcr and quote take --json; without a TPM they fail with nsimad's reason, exit 1.
  for (auto args : std::vector<std::vector<std::string>>{
           {"pcr", "--ns", "host", "--json"},
           {"quote", "--ns", "host", "--nonce", "00ff", "--out", dir_ + "/q", "--json"}}) {
    Proc r = ctl(args);
    EXPECT_EQ(r.rc, 1) << args[0] << ": " << show(r);
    EXPECT_EQ(r.out, "") << args[0];
    EXPECT_NE(r.err.find("nsimactl: "), std::string::npos) << args[0] << ": " << show(r);
  }
}

TEST_F(CliTest, SuccessOnStdoutFailureOnStderrWithExit1) {
  Proc ok = ctl({"policy", "load", "--ns", "host", "--builtin", "tcb"});
  EXPECT_EQ(ok.rc, 0) << show(ok);
  EXPECT_NE(ok.out.find("rules loaded into namespace host"), std::string::npos) << show(ok);
  EXPECT_EQ(ok.err, "") << show(ok);
  Proc bad = ctl({"policy", "show", "--ns", "77"});
  EXPECT_EQ(bad.rc, 1) << show(bad);
  EXPECT_EQ(bad.out, "");
  EXPECT_NE(bad.err.find("77"), std::string::npos) << show(bad);
  // nsimad not running: exit 1, said so.
  Proc down = run({NSIMACTL, "--socket", dir_ + "/nowhere.sock", "status"});
  EXPECT_EQ(down.rc, 1) << show(down);
  EXPECT_NE(down.err.find("nsimad is not running"), std::string::npos) << show(down);
}

// watch and deny/allow read or change a namespace's state; on a cgroup that has none they fail
// and leave none behind (they used to create one).
TEST_F(CliTest, WatchAndDenyOnAnUnregisteredCgroupCreateNoNamespace) {
  fs::create_directories(cg_ + "/w");
  const std::string want = "no namespace is bound to this cgroup (nsimactl ns create --cgroup " +
                           cg_ + "/w makes one)";
  Proc w = ctl({"watch", "--cgroup", cg_ + "/w"});
  EXPECT_EQ(w.rc, 1) << show(w);
  EXPECT_NE(w.err.find(want), std::string::npos) << show(w);
  for (const char* verdict : {"deny", "allow"}) {
    Proc d = ctl({verdict, "--cgroup", cg_ + "/w", "--root", "/", "/etc/hostname"});
    EXPECT_EQ(d.rc, 1) << show(d);
    EXPECT_NE(d.err.find(want), std::string::npos) << show(d);
  }
  Proc ns = ctl({"ns", "list", "--json"});
  EXPECT_EQ(json_lines(ns.out).size(), 1u) << "only host: " << ns.out;
  EXPECT_FALSE(fs::exists(dir_ + "/state/ns/1")) << "no namespace state was written";
  ::rmdir((cg_ + "/w").c_str());
}

// ns create --template/--hash reach nsimad, ns list shows them; a value outside the kernel's set
// is a usage error.
TEST_F(CliTest, NsCreateTemplateAndHashShownByNsList) {
  fs::create_directories(cg_ + "/t");
  Proc c = ctl({"ns", "create", "--cgroup", cg_ + "/t", "--template", "ima-sig", "--hash",
                "sha384"});
  ASSERT_EQ(c.rc, 0) << show(c);
  std::string id = c.out.substr(0, c.out.find('\n'));
  Proc l = ctl({"ns", "list"});
  EXPECT_EQ(l.rc, 0) << show(l);
  EXPECT_NE(l.out.find("ID\tPARENT\tOWNER\tPCR\tENTRIES\tTEMPLATE\tHASH\tPOLICY\tCGROUP\tCONTAINER\n"),
            std::string::npos)
      << l.out;
  EXPECT_NE(l.out.find("\tima-sig\tsha384\t"), std::string::npos) << l.out;
  Proc bad = ctl({"ns", "create", "--cgroup", cg_ + "/t", "--hash", "md5"});
  EXPECT_EQ(bad.rc, 2) << show(bad);
  EXPECT_NE(bad.err.find("--hash"), std::string::npos) << show(bad);
  EXPECT_TRUE(ctl({"ns", "delete", id}).rc == 0);
  ::rmdir((cg_ + "/t").c_str());
}

// ns create without --policy/--builtin takes nsimad's default container policy and says which
// (stdout stays the id); --no-policy makes a namespace without one; a default policy file that
// cannot be read fails the create and leaves no namespace.
TEST_F(CliTest, NsCreateWithoutPolicyTakesTheDefaultContainerPolicy) {
  const std::string a = cg_ + "/dflt-a-" + std::to_string(::getpid());
  const std::string b = cg_ + "/dflt-b-" + std::to_string(::getpid());
  fs::create_directories(a);
  fs::create_directories(b);
  ctx_.default_builtin = "container-default";
  Proc c = ctl({"ns", "create", "--cgroup", a});
  ASSERT_EQ(c.rc, 0) << show(c);
  std::string id = c.out.substr(0, c.out.find('\n'));
  EXPECT_EQ(c.out, id + "\n") << show(c);
  EXPECT_EQ(c.err, "namespace " + id + " takes nsimad's default container policy builtin:container-default\n")
      << show(c);
  std::string policy_a, policy_b;
  Proc n = ctl({"ns", "create", "--cgroup", b, "--no-policy"});
  ASSERT_EQ(n.rc, 0) << show(n);
  EXPECT_EQ(n.err, "") << show(n);
  std::string id_b = n.out.substr(0, n.out.find('\n'));
  for (auto& j : json_lines(ctl({"ns", "list", "--json"}).out)) {
    if (j.value("id", "") == id) policy_a = j.value("policy", "?") + "/" + std::to_string(j.value("policy_rules", 0));
    if (j.value("id", "") == id_b) policy_b = j.value("policy", "?") + "/" + std::to_string(j.value("policy_rules", 0));
  }
  EXPECT_EQ(policy_a.rfind("builtin:container-default/", 0), 0u) << policy_a;
  EXPECT_NE(policy_a, "builtin:container-default/0");
  EXPECT_EQ(policy_b, "/0") << policy_b;
  Proc both = ctl({"ns", "create", "--cgroup", b, "--no-policy", "--builtin", "tcb"});
  EXPECT_EQ(both.rc, 2) << show(both);
  EXPECT_TRUE(ctl({"ns", "delete", id}).rc == 0);
  EXPECT_TRUE(ctl({"ns", "delete", id_b}).rc == 0);
  ctx_.default_policy_file = dir_ + "/missing.policy";
  Proc m = ctl({"ns", "create", "--cgroup", a});
  EXPECT_EQ(m.rc, 1) << show(m);
  EXPECT_EQ(m.err, "nsimactl: the default container policy ([container] policy) cannot be used: " +
                       dir_ + "/missing.policy: cannot open policy file: No such file or directory\n")
      << show(m);
  EXPECT_EQ(json_lines(ctl({"ns", "list", "--json"}).out).size(), 1u) << "only host is left";
  ::rmdir(a.c_str());
  ::rmdir(b.c_str());
}

// `nsimactl metrics`: the Prometheus text format (0.0.4): every sample's family has HELP and
// TYPE before it, names and labels are well formed, counters end in _total, values are numbers,
// and they are nsimad's (a measured file, the host namespace's entries).
TEST_F(CliTest, MetricsAreThePrometheusTextFormat) {
  measure_file("m.txt", "metrics");
  Proc m = ctl({"metrics"});
  ASSERT_EQ(m.rc, 0) << show(m);
  const std::regex help(R"(^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) \S.*$)");
  const std::regex type(R"(^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge)$)");
  const std::regex sample(
      R"(^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*"(,[a-zA-Z_][a-zA-Z0-9_]*="[^"\\]*")*\})? (-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?)$)");
  std::map<std::string, std::string> types;
  std::set<std::string> helped;
  std::map<std::string, std::string> values;
  std::istringstream in(m.out);
  size_t samples = 0;
  for (std::string line; std::getline(in, line);) {
    std::smatch g;
    if (std::regex_match(line, g, help)) {
      EXPECT_TRUE(helped.insert(g[1]).second) << "HELP twice: " << line;
    } else if (std::regex_match(line, g, type)) {
      EXPECT_TRUE(helped.count(g[1])) << "TYPE before HELP: " << line;
      EXPECT_TRUE(types.emplace(g[1], g[2]).second) << "TYPE twice: " << line;
      if (g[2] == "counter") {
        EXPECT_TRUE(std::string(g[1]).ends_with("_total")) << line;
      }
    } else if (std::regex_match(line, g, sample)) {
      EXPECT_TRUE(types.count(g[1])) << "sample without TYPE: " << line;
      values[std::string(g[1]) + std::string(g[2])] = g[4];
      ++samples;
    } else {
      ADD_FAILURE() << "not Prometheus text: " << line;
    }
  }
  EXPECT_GT(samples, 20u) << m.out;
  EXPECT_EQ(values["nsima_namespaces"], "1") << m.out;
  EXPECT_EQ(values["nsima_ns_entries{ns=\"host\"}"], "2") << m.out;  // boot_aggregate + the file
  EXPECT_EQ(values["nsima_pipeline_measured_total"], "1") << m.out;
  EXPECT_EQ(values["nsima_ns_disabled{ns=\"host\"}"], "0") << m.out;
  EXPECT_EQ(types["nsima_access_queue_depth"], types.count("nsima_access_queue_depth") ? "gauge" : "");
}

// A request nsimad refuses before reading it whole (longer than kMaxRequestBytes): nsimactl
// prints nsimad's answer, not "sending to nsimad failed: Broken pipe".
TEST_F(CliTest, ARefusedHugeRequestPrintsTheDaemonsError) {
  std::string manifest = dir_ + "/big.sha256";
  {
    std::ofstream out(manifest);
    std::string line = std::string(64, 'a') + "  /" + std::string(100, 'x') + "\n";
    for (size_t n = 0; n < (20u << 20); n += line.size()) out << line;
  }
  Proc r = ctl({"digests", "load", "--ns", "host", "--unsigned", manifest});
  EXPECT_EQ(r.rc, 1) << show(r);
  EXPECT_NE(r.err.find("request line longer than 16777216 bytes"), std::string::npos) << show(r);
  EXPECT_EQ(r.err.find("Broken pipe"), std::string::npos) << show(r);
}

}  // namespace
}  // namespace nsima
