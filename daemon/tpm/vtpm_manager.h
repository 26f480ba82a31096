// SPDX-License-Identifier: Apache-2.0
// VtpmManager: one swtpm per nsima namespace — start it, find it again, stop it, destroy it.
//
// Lifetime decision (README.md, "vTPM lifetime"): a namespace's vTPM must keep its PCRs for as
// long as its measurement list lives, and the list outlives nsimad restarts. So:
//   - swtpm runs daemonized (-d, own session, pid file) and is NOT stopped when nsimad exits or
//     this object is destroyed: a restarted nsimad re-attaches through the pid file and control
//     socket (start() returns origin kAttached, attach_all() finds every running one);
//   - stop() saves the volatile state (PCRs) with CMD_STORE_VOLATILE before CMD_SHUTDOWN, and the
//     next start() resumes it (origin kResumed): PCRs survive a stop/start, e.g. a host reboot
//     with a persistent state root;
//   - the saved volatile state is a one-shot hand-off: it is deleted once a resumed swtpm answers,
//     so a later crash restarts the vTPM empty instead of silently rewinding it to an old snapshot
//     (the measurement list's replay then shows the gap);
//   - destroy() is for a namespace that is gone for good: stop without saving, delete all state.
// The permanent state (seeds, hence the attestation key) lives in <state_root>/<ns>, the sockets,
// pid file and swtpm's log in <run_root>/<ns>. Every wait has a timeout; stop() ends with SIGKILL
// if swtpm ignores the control channel and SIGTERM, and reports that.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "tpm/pcr_policy.h"

namespace nsima::tpm {

struct VtpmOptions {
  std::filesystem::path state_root = "/var/lib/nsima/vtpm";
  std::filesystem::path run_root = "/run/nsima/vtpm";
  std::string swtpm = "swtpm";  // binary; looked up in PATH unless it contains a '/'
  std::chrono::milliseconds start_timeout{5000};
  std::chrono::milliseconds stop_timeout{3000};  // for each stage: shutdown, SIGTERM, SIGKILL
  std::chrono::milliseconds ctrl_timeout{1000};  // one control-channel round trip
  // EK certificates (README.md, "EK certificates"): a new vTPM is manufactured by swtpm_setup
  // --create-ek-cert --create-platform-cert, signed by swtpm_localca with a local CA kept in
  // ca_dir (its own swtpm_setup.conf, swtpm-localca.conf and .options there: the host's /etc
  // files are neither read nor written). Empty ca_dir: <state_root>/../vtpm-ca.
  bool ek_cert = true;
  std::filesystem::path ca_dir;
  std::string swtpm_setup = "swtpm_setup";
  std::string swtpm_localca = "/usr/bin/swtpm_localca";
  std::chrono::milliseconds setup_timeout{60000};  // RSA key generation: seconds under load
};

enum class VtpmOrigin {
  kStarted,   // a fresh swtpm, PCRs at their reset values
  kResumed,   // a fresh swtpm that loaded the volatile state a clean stop() saved
  kAttached,  // an swtpm that was already running (nsimad restarted)
};

struct VtpmInstance {
  std::string ns;
  std::string tcti;  // "swtpm:path=<run_root>/<ns>/swtpm.sock", for EsysTpm::open
  pid_t pid = -1;
  std::filesystem::path state_dir;
  std::filesystem::path run_dir;
  VtpmOrigin origin = VtpmOrigin::kStarted;
  int pcr = kDefaultVtpmPcr;  // the PCR the namespace's list extends in its vTPM
  bool created = false;       // this start() manufactured the vTPM (new seeds, new EK)
};


struct VtpmStopResult {
  bool was_running = false;
  bool state_saved = false;  // CMD_STORE_VOLATILE succeeded: the next start() resumes the PCRs
  bool forced = false;       // swtpm had to be killed (SIGTERM/SIGKILL)
};

// Namespace names become directory names: 1-64 of [A-Za-z0-9_.-], not starting with '.'.
Result<void> validate_vtpm_name(std::string_view ns);

class VtpmManager {
 public:
  explicit VtpmManager(VtpmOptions opts = {});
  // Leaves every swtpm running on purpose (see above).
  ~VtpmManager();
  VtpmManager(const VtpmManager&) = delete;
  VtpmManager& operator=(const VtpmManager&) = delete;

  // Returns the namespace's running vTPM, starting (or resuming) one if there is none.
  Result<VtpmInstance> start(const std::string& ns);

  // Saves the volatile state, shuts swtpm down, removes its sockets and pid file. Stopping a
  // namespace that is not running is not an error (was_running = false).
  Result<VtpmStopResult> stop(const std::string& ns);

  // Stops without saving and deletes the namespace's state and run directories.
  Result<VtpmStopResult> destroy(const std::string& ns);

  // True if the namespace's swtpm answers on its control channel within ctrl_timeout.
  Result<bool> healthy(const std::string& ns);

  // Re-attaches every swtpm found running under run_root (for nsimad start-up); stale pid files
  // are cleaned up. Does not start anything.
  Result<std::vector<VtpmInstance>> attach_all();

  // Namespaces this manager currently knows as running.
  std::vector<std::string> running() const;

  // The local CA's root certificate (PEM) that every EK certificate chains to, and the chain
  // between them (the issuer certificate, PEM). ENOENT until the first vTPM was manufactured
  // (or ensure_ca() ran).
  Result<std::string> ca_certificate() const;
  Result<std::string> ca_chain() const;
  // Writes the CA's configuration files into ca_dir (the CA itself is made by swtpm_localca at
  // the first EK certificate).
  Result<void> ensure_ca() const;
  std::filesystem::path ca_dir() const;

 private:
  struct Paths {
    std::filesystem::path state_dir, run_dir, sock, ctrl, pid_file, log;
  };
  Paths paths(const std::string& ns) const;
  // The verified pid of the namespace's running swtpm (from the pid file), or -1.
  pid_t find_running_locked(const Paths& p) const;
  Result<VtpmInstance> attach_locked(const std::string& ns, const Paths& p, pid_t pid);
  Result<VtpmInstance> spawn_locked(const std::string& ns, const Paths& p);
  Result<VtpmStopResult> stop_locked(const std::string& ns, bool save_state);
  // swtpm_setup for a state directory with no TPM state yet.
  Result<void> manufacture_locked(const std::string& ns, const Paths& p);

  const VtpmOptions opts_;
  mutable std::mutex mu_;
  std::map<std::string, VtpmInstance> instances_;  // guarded by mu_
};

}  // namespace nsima::tpm
