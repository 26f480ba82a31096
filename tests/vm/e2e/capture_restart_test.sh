#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Capture continues across nsimad restarts (hole 7): the hooks, maps and ring buffer are pinned
# in /sys/fs/bpf/nsima. While nsimad is dead (SIGKILL) or stopped (SIGTERM) the hooks keep
# capturing into the pinned ring buffer and keep refusing what was denied; the restarted nsimad
# resumes the pins (no new load, no second attach), measures every file read meanwhile exactly
# once, and its counters continue. `nsimad --unload` detaches the hooks and removes the pins.
# vm-run-args: --add /usr/sbin/bpftool
. /usr/share/nsima-test/nsima.sh
set -eu

K=25
D=/data/restart
PIN=/sys/fs/bpf/nsima
C=/sys/fs/cgroup/r
mkdir -p "$D" "$C"
i=1
while [ $i -le $K ]; do
	echo "killed $i" >"$D/k$i"
	echo "termed $i" >"$D/t$i"
	i=$((i + 1))
done
echo pre >"$D/pre"
echo secret >"$D/denied"
echo "measure func=FILE_CHECK mask=^MAY_READ" >/tmp/reads.policy

# in_list FILE: how many entries of the host list measure FILE
in_list() {
	nsimactl log --ns host | grep -c " $1\$" || true
}
# wait_listed FILE...: until each FILE is in the host list (30 s)
wait_listed() {
	for f in "$@"; do
		n=0
		while [ "$(in_list "$f")" = 0 ]; do
			n=$((n + 1))
			[ $n -lt 300 ] || nsima_fail "$f not in the host list within 30 s"
			sleep 0.1
		done
	done
}
# reader PREFIX: a process in $C opens $D/PREFIX1..K itself (shell redirections, no child),
# then stays alive, so the restarted nsimad finds the root the paths are relative to (what
# happens to the files of processes that are gone is the file accessor's business, not
# capture's).
READERS=
reader() {
	rm -f "/tmp/$1.done"
	cg_exec $C /bin/sh -c "i=1; while [ \$i -le $K ]; do : <$D/$1\$i; i=\$((i + 1)); done; : >/tmp/$1.done; exec sleep 1000" &
	READERS="$READERS $!"
	n=0
	while [ ! -e "/tmp/$1.done" ]; do
		n=$((n + 1))
		[ $n -lt 300 ] || nsima_fail "the $1 reader did not finish within 30 s"
		sleep 0.1
	done
}
restart() {
	rm -f "$NSIMA_SOCK"
	nsima_start --policy /tmp/reads.policy
	grep -q "BPF hooks: resumed" "$NSIMAD_LOG" || nsima_fail "nsimad did not resume the pinned hooks"
}

nsima_start --policy /tmp/reads.policy
grep -q "BPF hooks: fresh" "$NSIMAD_LOG" || nsima_fail "first start: expected a fresh load"
for p in tag events verdicts stats ctl link_nsima_file_open link_nsima_mmap_file link_nsima_bprm_check \
	protect_cfg protected_dirs protected_objs protected_pids link_nsima_protect_kill link_nsima_protect_bpf_map; do
	[ -e "$PIN/$p" ] || nsima_fail "$PIN/$p is not pinned"
done
out=$(nsimad --unload 2>&1) && nsima_fail "--unload succeeded while nsimad runs: $out"
nsima_check_contains "$out" "stop it first" "--unload while nsimad runs"

nsimactl ns create --cgroup $C --no-policy >/dev/null  # a verdict never creates a namespace
nsimactl deny --cgroup $C --root / "$D/denied"
out=$(cg_exec $C /bin/cat "$D/denied" 2>&1 || true)
nsima_check_contains "$out" "Permission denied" "cat of the denied file"
cg_exec $C /bin/cat "$D/pre" >/dev/null
wait_listed "$D/pre"
emitted0=$(nsima_stat emitted)
denied0=$(nsima_stat denied)

# 1. SIGKILL: nothing of nsimad runs, the hooks do
kill -KILL "$NSIMAD_PID"
while kill -0 "$NSIMAD_PID" 2>/dev/null; do sleep 0.1; done
NSIMAD_PID=
reader k
out=$(cg_exec $C /bin/cat "$D/denied" 2>&1 || true)
nsima_check_contains "$out" "Permission denied" "cat of the denied file while nsimad is dead"

restart
i=1
while [ $i -le $K ]; do
	wait_listed "$D/k$i"
	i=$((i + 1))
done
sleep 1  # a duplicate would come right behind
i=1
while [ $i -le $K ]; do
	nsima_check_eq "$(in_list "$D/k$i")" 1 "entries for $D/k$i (read while nsimad was dead)"
	i=$((i + 1))
done
nsima_check_eq "$(in_list "$D/pre")" 1 "entries for $D/pre (read before the kill)"
emitted1=$(nsima_stat emitted)
denied1=$(nsima_stat denied)
[ "$emitted1" -ge $((emitted0 + K)) ] ||
	nsima_fail "emitted counter did not continue: $emitted0 before the kill, $emitted1 after"
[ "$denied1" -ge $((denied0 + 1)) ] ||
	nsima_fail "denied counter did not continue: $denied0 before the kill, $denied1 after"
# the resumed hooks know the new nsimad: its own opens are not events (deny needs that)
nsimactl deny --cgroup $C --root / "$D/pre"
out=$(cg_exec $C /bin/cat "$D/pre" 2>&1 || true)
nsima_check_contains "$out" "Permission denied" "deny after the restart"
nsimactl allow --cgroup $C --root / "$D/pre"

# 2. SIGTERM keeps the pins too (a systemd restart opens no gap)
nsima_stop
[ -e "$PIN/tag" ] || nsima_fail "SIGTERM removed the pins"
reader t
restart
i=1
while [ $i -le $K ]; do
	wait_listed "$D/t$i"
	i=$((i + 1))
done
sleep 1
i=1
while [ $i -le $K ]; do
	nsima_check_eq "$(in_list "$D/t$i")" 1 "entries for $D/t$i (read while nsimad was stopped)"
	i=$((i + 1))
done
nsima_check_eq "$(in_list "$D/k1")" 1 "entries for $D/k1 after the second restart"

# 3. uninstall: hooks detached, pins gone, the deny with them
kill $READERS
nsima_stop
lsm_links() { bpftool link show | grep -c "attach_type lsm_mac" || true; }
nsima_progs() { bpftool prog show | grep -c "name nsima_" || true; }
# file_open, mmap_file, bprm_check, inode_post_setxattr and the 15 self-protection programs
# (bpf/protect.bpf.c: task_kill, ptrace_access_check, bpf, bpf_map, bpf_prog, file_open, inode_*)
nsima_check_eq "$(lsm_links)" 19 "LSM links attached while pinned and nsimad stopped"
nsima_check_eq "$(nsima_progs)" 19 "nsima programs loaded while pinned (one load across restarts)"
nsimad --unload
[ ! -e "$PIN" ] || nsima_fail "$PIN still exists after --unload: $(ls "$PIN")"
nsima_check_eq "$(lsm_links)" 0 "LSM links after --unload ($(bpftool link show))"
nsima_check_eq "$(nsima_progs)" 0 "nsima programs after --unload"
out=$(cg_exec $C /bin/cat "$D/denied")
nsima_check_eq "$out" secret "cat of the formerly denied file after --unload"
nsimad --unload  # nothing left: still fine
echo "capture_restart_test: OK"
