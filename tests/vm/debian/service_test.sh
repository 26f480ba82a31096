#!/bin/bash
# The .deb in a real Debian guest with systemd as PID 1: installs without starting anything,
# the unit passes systemd-analyze verify, `systemctl start` reaches READY with a STATUS line and
# a watchdog, and a container namespace's vTPM survives `systemctl restart` and a kill -9 of
# nsimad (systemd restarts it), with its list still replaying to its PCR; a frozen nsimad is
# restarted by the watchdog; dpkg -r / -P clean up.
# Broken once each: KillMode=control-group (fails at 'vTPM (swtpm) survives a restart'), a
# heartbeat without WATCHDOG=1 (fails at 'a beating nsimad is not restarted').
set -euo pipefail
. /usr/share/nsima-test/lib.sh
# on failure: what systemd and nsimad said
trap 'rc=$?; if [ $rc != 0 ]; then systemctl status nsimad.service --no-pager -l >&2 || :; journalctl -u nsimad.service --no-pager -n 80 >&2 || :; fi' EXIT

t() { timeout "$@"; }
pcr_matches() { # NS: the vTPM PCR equals the list's replay
	local out
	out=$(t 60 nsimactl pcr --ns "$1")
	assert_contains "$out" "(matches the list)" "nsimactl pcr --ns $1"
}
swtpm_of() { # NS: pid of the namespace's swtpm (from its pid file, checked against /proc)
	local pid
	pid=$(cat "/run/nsima/vtpm/$1/swtpm.pid" 2>/dev/null) || return 0
	if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q "^swtpm socket .*/vtpm/$1,mode"; then
		echo "$pid"
	fi
}
wait_active() {
	wait_for 60 systemctl is-active --quiet nsimad.service
}

log "installed: $(dpkg-query -W -f='${Package} ${Version}' nsima)"
assert_eq disabled "$(systemctl is-enabled nsimad.service || true)" "the .deb does not enable nsimad"
assert_eq inactive "$(systemctl is-active nsimad.service || true)" "the .deb does not start nsimad"
assert_eq /etc/nsima/nsimad.conf "$(dpkg-query -W -f='${Conffiles}' nsima | awk '{print $1}')" "conffiles"
t 60 systemd-analyze verify /lib/systemd/system/nsimad.service
log "systemd-analyze security: $(t 60 systemd-analyze security nsimad.service --no-pager | tail -n 1)"

t 180 systemctl start nsimad.service
assert_eq active "$(systemctl is-active nsimad.service)" "after systemctl start (Type=notify: READY=1)"
wait_for 20 sh -c 'systemctl show -p StatusText --value nsimad.service | grep -q "measuring [0-9]* namespaces"'
# this guest has no TPM: the STATUS line says so first
assert_contains "$(systemctl show -p StatusText --value nsimad.service)" "NO TPM (lists not anchored to any PCR): measuring" "STATUS without a TPM"
log "STATUS: $(systemctl show -p StatusText --value nsimad.service)"
assert_eq 1min "$(systemctl show -p WatchdogUSec --value nsimad.service)" "watchdog"

mkdir -p /sys/fs/cgroup/ctr1
ns=$(t 120 nsimactl ns create --cgroup /sys/fs/cgroup/ctr1 --builtin container-measure --vtpm)
log "namespace $ns"
# a process of the namespace execs a file: its list has it
sh -c 'echo $$ >/sys/fs/cgroup/ctr1/cgroup.procs && exec /usr/bin/busybox true'
wait_for 30 sh -c "timeout 30 nsimactl log --ns $ns | grep -q ' /usr/bin/busybox\$'"
pcr_matches "$ns"
swtpm_pid=$(swtpm_of "$ns")
[[ -n $swtpm_pid ]] || fail "no swtpm for namespace $ns"
entries=$(t 30 nsimactl log --ns "$ns" | wc -l)

log "systemctl restart"
t 180 systemctl restart nsimad.service
wait_active
assert_eq "$swtpm_pid" "$(swtpm_of "$ns")" "vTPM (swtpm) survives a restart"
pcr_matches "$ns"

log "kill -9 nsimad"
main=$(systemctl show -p MainPID --value nsimad.service)
kill -9 "$main"
wait_for 60 sh -c '[ "$(systemctl show -p NRestarts --value nsimad.service)" = 1 ]'
wait_active
[[ $(systemctl show -p MainPID --value nsimad.service) != "$main" ]] || fail "nsimad was not restarted"
assert_eq "$swtpm_pid" "$(swtpm_of "$ns")" "vTPM survives kill -9 of nsimad"
pcr_matches "$ns"
after=$(t 30 nsimactl log --ns "$ns" | wc -l)
[[ $after -ge $entries ]] || fail "list shrank over the restart: $entries -> $after entries"
t 60 nsimactl ns list

log "watchdog: a frozen nsimad (SIGSTOP) stops sending WATCHDOG=1 and is restarted"
mkdir -p /run/systemd/system/nsimad.service.d
printf '[Service]\nWatchdogSec=4s\nTimeoutAbortSec=2s\n' >/run/systemd/system/nsimad.service.d/watchdog.conf
systemctl daemon-reload
t 180 systemctl restart nsimad.service
wait_active
main=$(systemctl show -p MainPID --value nsimad.service)
restarts=$(systemctl show -p NRestarts --value nsimad.service)
sleep 6 # beats keep a running nsimad alive past the 4 s watchdog
assert_eq "$main" "$(systemctl show -p MainPID --value nsimad.service)" "a beating nsimad is not restarted"
kill -STOP "$main"
wait_for 60 sh -c "[ \"\$(systemctl show -p NRestarts --value nsimad.service)\" -gt $restarts ]"
wait_active
assert_contains "$(journalctl -u nsimad.service --no-pager -q)" "Watchdog timeout" "systemd's reason"
assert_eq "$swtpm_pid" "$(swtpm_of "$ns")" "vTPM survives the watchdog restart"
pcr_matches "$ns"
rm -f /run/systemd/system/nsimad.service.d/watchdog.conf
systemctl daemon-reload

log "dpkg -r: stops nsimad and its vTPMs, detaches the pinned hooks, keeps the lists"
[[ -d /sys/fs/bpf/nsima ]] || fail "no pins in /sys/fs/bpf/nsima while nsimad runs"
t 180 dpkg -r nsima
[[ ! -e /sys/fs/bpf/nsima ]] || fail "pins left in /sys/fs/bpf/nsima after dpkg -r"
[[ ! -e /proc/$swtpm_pid ]] || fail "vTPM (swtpm $swtpm_pid) still running after dpkg -r"
[[ -s /var/lib/nsima/ns/$ns/binary_runtime_measurements ]] || fail "dpkg -r removed the lists"
t 180 dpkg -P nsima
[[ ! -e /var/lib/nsima && ! -e /etc/nsima ]] || fail "dpkg -P left /var/lib/nsima or /etc/nsima"
log "ok"
