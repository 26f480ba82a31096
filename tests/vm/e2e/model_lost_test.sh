#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Events a model never saw (ring buffers full) are counted, never silent, and fail closed when
# enforcing. nsimad runs with a one-page model ring buffer (12 events) and a 64 KiB file ring,
# and is stopped (SIGSTOP) while a modeled namespace's workload runs, so nothing drains them:
#  - learn: 200 signals lose >= 188 model events; once nsimad runs again, `model state` says
#    lost_events = the kernel's model_drops count for the namespace, and an audit line says so;
#  - 1,000 opens lose file events: lost_file_events = the file hooks' ns_drops count (opens of
#    1,000 files: a process's repeats of one open are quiet once the first is reported, its
#    key pending in model_quiet);
#  - enforce: a short workload (fits the ring) still runs its exec while nsimad is stopped;
#    the burst makes its shell untrusted in the kernel at once (nsimad is stopped: nobody else
#    can mark it), so its exec that follows is refused; a new process afterwards is not;
#  - enforce: a shell's 1,000 opens (no model event at all) lose file events: the file hooks
#    mark the shell untrusted themselves (bpf.lost_file_untrusted), its later opens are refused
#    while nsimad is still stopped.
. /usr/share/nsima-test/nsima.sh
set -eu

W=/data/w
mkdir -p $W
echo one >$W/in1
i=0
while [ $i -lt 1000 ]; do
	echo $i >$W/f$i
	i=$((i + 1))
done
C=/sys/fs/cgroup/lossy
mkdir -p $C

field() { # "model state" OUTPUT KEY
	printf '%s\n' "$1" | sed -n "s/^$2 //p"
}
model_hooks_stat() { # KEY: a counter of the "model_hooks" object of nsimactl status
	nsima_status | sed -n "s/.*\"model_hooks\":{[^}]*\"$1\":\([0-9]*\).*/\1/p"
}
model_drops_of() { # NS: the kernel's model_drops count of namespace NS
	nsima_status | sed -n "s/.*\"model_drops\":{[^}]*\"$1\":\([0-9]*\).*/\1/p"
}
bpf_stat() { # KEY: a counter of the file hooks (unique name in nsimactl status)
	nsima_status | sed -n "s/.*\"$1\":\([0-9]*\).*/\1/p"
}
ns_drops_of() { # NS: the file hooks' ns_drops count of namespace NS
	nsima_status | sed -n "s/.*\"ns_drops\":{[^}]*\"$1\":\([0-9]*\).*/\1/p"
}
# wait_state NS KEY: waits (20 s) until `model state` shows KEY > 0 and prints it
wait_state() {
	i=0
	while :; do
		v=$(field "$(nsimactl model state --ns "$1")" "$2")
		[ "${v:-0}" -gt 0 ] && break
		i=$((i + 1))
		[ $i -lt 200 ] || nsima_fail "model state $2 still ${v:-none} 20 s after the burst"
		sleep 0.1
	done
	echo "$v"
}
# stopped CMD...: runs CMD (in the namespace) while nsimad is stopped, with a timeout
stopped() {
	kill -STOP "$NSIMAD_PID"
	rc=0
	out=$(timeout 120 "$@" 2>&1) || rc=$?
	kill -CONT "$NSIMAD_PID"
	[ $rc -ne 124 ] || nsima_fail "the workload did not end while nsimad was stopped: $out"
	printf '%s\n' "$out"
}

nsima_start --model-ringbuf-size 4096 --ringbuf-size 65536
ns=$(nsimactl ns create --cgroup $C --no-policy --model-mode learn)

echo "--- learn: a short workload with nsimad running loses nothing"
out=$(cg_exec $C /bin/sh -c 'kill -0 $$; cat /data/w/in1 >/dev/null && echo CAT-OK')
nsima_check_eq "$out" "CAT-OK" "control workload"
s=$(nsimactl model state --ns "$ns")
nsima_check_eq "$(field "$s" lost_events)" 0 "lost_events before the burst"
nsima_check_eq "$(field "$s" lost_file_events)" 0 "lost_file_events before the burst"

echo "--- learn: 200 signals while nsimad is stopped"
out=$(stopped cg_exec $C /bin/sh -c 'i=0; while [ $i -lt 200 ]; do kill -0 $$; i=$((i + 1)); done; echo BURST-DONE')
nsima_check_contains "$out" "BURST-DONE" "the burst ran (the hooks never wait for nsimad)"
lost=$(wait_state "$ns" lost_events)
echo "lost model events: $lost"
[ "$lost" -ge 188 ] || nsima_fail "only $lost model events lost of 200 signals into a 12-event ring"
nsima_check_eq "$(model_drops_of "$ns")" "$lost" "kernel model_drops = model state lost_events"
nsima_check_eq "$(model_hooks_stat lost_untrusted)" 0 "learn: a loss marks nobody"
audit=$(nsimactl audit --ns "$ns")
nsima_check_contains "$audit" "\"event\":\"model-lost-events\"" "an audit line for the loss"
nsima_check_contains "$audit" "\"model_events\":$lost" "the audit line counts them"

echo "--- learn: 1,000 opens while nsimad is stopped lose file events"
before=$(ns_drops_of "$ns")
out=$(stopped cg_exec $C /bin/sh -c 'i=0; while [ $i -lt 1000 ]; do : </data/w/f$i; i=$((i + 1)); done; echo OPENS-DONE')
nsima_check_contains "$out" "OPENS-DONE" "the opens ran"
flost=$(wait_state "$ns" lost_file_events)
echo "lost file events: $flost"
nsima_check_eq "$(($(ns_drops_of "$ns") - ${before:-0}))" "$flost" "ns_drops = model state lost_file_events"

echo "--- enforce: a lost event makes its process untrusted in the kernel"
nsimactl model enforce --ns "$ns" >/dev/null
l0=$(field "$(nsimactl model state --ns "$ns")" lost_events)
out=$(stopped cg_exec $C /bin/sh -c 'kill -0 $$; if cat /data/w/in1 >/dev/null 2>&1; then echo CAT-OK; else echo CAT-REFUSED; fi')
nsima_check_eq "$out" "CAT-OK" "a workload that fits the ring, nsimad stopped"
nsimactl model state --ns "$ns" >/dev/null # the barrier: its events are consumed
out=$(stopped cg_exec $C /bin/sh -c 'i=0; while [ $i -lt 200 ]; do kill -0 $$ 2>/dev/null; i=$((i + 1)); done; if cat /data/w/in1 >/dev/null 2>&1; then echo CAT-OK; else echo CAT-REFUSED; fi')
# (once untrusted, the shell is refused its redirections' opens too: it says so on stderr)
nsima_check_contains "$out" "CAT-REFUSED" "the exec after the lost events, nsimad stopped"
case "$out" in *CAT-OK*) nsima_fail "the untrusted shell's exec ran: $out" ;; esac
untrusted=$(model_hooks_stat lost_untrusted)
[ "${untrusted:-0}" -ge 1 ] || nsima_fail "lost_untrusted is ${untrusted:-none}"
i=0
while [ "$(field "$(nsimactl model state --ns "$ns")" lost_events)" -le "$l0" ]; do
	i=$((i + 1))
	[ $i -lt 200 ] || nsima_fail "enforce: the loss never reached model state"
	sleep 0.1
done
audit=$(nsimactl audit --ns "$ns")
nsima_check_contains "$audit" "\"mode\":\"enforce\"" "the enforce loss is audited"

echo "--- enforce: lost file events make their process untrusted in the kernel"
nsima_check_eq "$(bpf_stat lost_file_untrusted)" 0 "no file event lost while enforcing yet"
# (true, not the special builtin ':', whose failed redirection would end the shell; no
# 2>/dev/null: an untrusted shell is refused that open too)
out=$(stopped cg_exec $C /bin/sh -c 'i=0; while [ $i -lt 1000 ]; do true </data/w/f$i; i=$((i + 1)); done; if true </data/w/in1; then echo OPEN-OK; else echo OPEN-REFUSED; fi')
printf '%s\n' "$out" | tail -n 2
nsima_check_contains "$out" "OPEN-REFUSED" "the open after the lost file events, nsimad stopped"
case "$out" in *OPEN-OK*) nsima_fail "the untrusted shell's open succeeded" ;; esac
fu=$(bpf_stat lost_file_untrusted)
echo "lost file events that marked their process: $fu"
[ "${fu:-0}" -ge 1 ] || nsima_fail "lost_file_untrusted is ${fu:-none}"
nsima_check_eq "$(bpf_stat lost_file_mark_failed)" 0 "every mark fitted"
out=$(cg_exec $C /bin/sh -c 'cat /data/w/in1 >/dev/null 2>&1 && echo CAT-OK')
nsima_check_eq "$out" "CAT-OK" "a new process is not the one that lost its events"
nsima_stop --check
echo "--- ok"
