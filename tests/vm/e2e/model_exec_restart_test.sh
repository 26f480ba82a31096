#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Workload models (issue 13): what an enforcing model decides in the kernel, and that it holds
# across an nsimad crash. (1) An exec whose content is not a known executable of the model (a
# known binary with one byte changed) is refused at exec (EACCES, before it runs) by the file
# hooks' bprm_check (NSIMA_CG_MODEL_EXEC + NSIMA_TRUST_MODEL pairs in the trusted map), and is
# in forensics; the known workload still passes. (2) A process marked untrusted stays refused
# while nsimad is dead (kill -9) and after it restarted (the model hooks and their untrusted
# map are pinned, and resumed); the restarted nsimad still refuses the modified binary at exec
# and still runs the known workload.
. /usr/share/nsima-test/nsima.sh
set -eu

W=/data/w
mkdir -p $W/k $W/m
BUSYBOX=$(readlink -f /bin/sh)
BB=$W/k/busybox
MB=$W/m/busybox # the known binary with one byte appended (another path: $BB stays known)
cp "$BUSYBOX" $BB
cp "$BUSYBOX" $MB
printf 'x' >>$MB
echo one >$W/in1
echo never >$W/new
cat >$W/work.sh <<'EOF'
/data/w/k/busybox cat /data/w/in1 >/dev/null
/data/w/k/busybox echo work-done
EOF
L=/sys/fs/cgroup/mxl$$
E=/sys/fs/cgroup/mxe$$
mkdir -p $L $E
PROBER=
cleanup() {
	[ -z "$PROBER" ] || kill -KILL "$PROBER" 2>/dev/null || :
	nsima_stop
}
trap cleanup EXIT

workload() { # CGROUP WHAT
	out=$(cg_exec "$1" $BB sh $W/work.sh 2>&1) || nsima_fail "$2: the workload failed: $out"
	nsima_check_eq "$out" "work-done" "$2: workload output"
}
field() { printf '%s\n' "$1" | sed -n "s/^$2 //p"; }
modified_refused() { # WHAT: the modified binary is refused at exec, before it runs
	rc=0
	out=$(cg_exec $E $MB echo RAN 2>&1) || rc=$?
	nsima_check_eq "$rc" 126 "$1: exit status of the modified binary's exec ($out)"
	nsima_check_contains "$out" "Permission denied" "$1: the modified binary's exec"
}

nsima_start
lns=$(nsimactl ns create --cgroup $L --no-policy --model-mode learn)
workload $L "learn"
nsimactl model save --ns "$lns" /tmp/w.model || nsima_fail "model save"
grep -q "^exec [0-9a-f]\{64\}$" /tmp/w.model || nsima_fail "no exec line in the saved model: $(cat /tmp/w.model)"
ens=$(nsimactl ns create --cgroup $E --no-policy --model /tmp/w.model --model-mode enforce)

# ---- (1) decided before it happens
workload $E "enforce"
modified_refused "enforce"
n=$(nsima_stat model_exec_denied)
[ "$n" -ge 1 ] || nsima_fail "model_exec_denied counter is '$n'"
workload $E "enforce, after the refusal"
nsimactl model forensics --ns "$ens" >/tmp/forensics
grep -q "bprm_committed_creds.*/data/w/m/busybox" /tmp/forensics ||
	nsima_fail "the refused exec is not in forensics: $(cat /tmp/forensics)"
e1=$(nsimactl model state --ns "$ens")
nsima_check_eq "$(field "$e1" untrusted)" 1 "processes untrusted after the refused exec (cg_exec)"

# ---- (2) an untrusted process across kill -9 + restart. It reads probes from a FIFO on its
# stdin (no open needed) and answers on its stdout (opened before it ran) whether it may open
# the known file in1; reading the never-read file makes it untrusted.
mkfifo /tmp/probe
cg_exec $E $BB sh -c 'read x </data/w/new 2>/dev/null
	while read cmd; do
		[ "$cmd" = quit ] && exit 0
		if { : </data/w/in1; } 2>/dev/null; then echo "$cmd ok"; else echo "$cmd refused"; fi
	done' </tmp/probe >/tmp/prober.out 2>&1 &
PROBER=$!
exec 3>/tmp/probe
probe() { # NAME: prints ok or refused
	echo "$1" >&3
	i=0
	while ! grep -q "^$1 " /tmp/prober.out; do
		i=$((i + 1))
		[ $i -lt 100 ] || nsima_fail "the prober did not answer probe $1: $(cat /tmp/prober.out)"
		sleep 0.1
	done
	sed -n "s/^$1 //p" /tmp/prober.out
}
i=0
while [ "$(probe p$i)" != refused ]; do # the mark lands asynchronously
	i=$((i + 1))
	[ $i -lt 50 ] || nsima_fail "the prober was never marked untrusted"
	sleep 0.1
done
echo "prober refused after $i probes"

kill -KILL "$NSIMAD_PID"
while kill -0 "$NSIMAD_PID" 2>/dev/null; do sleep 0.1; done
NSIMAD_PID=
nsima_check_eq "$(probe dead)" refused "the untrusted prober while nsimad is dead"
modified_refused "nsimad dead"

rm -f "$NSIMA_SOCK"
nsima_start
grep -q "resumed the model hooks" "$NSIMAD_LOG" || nsima_fail "the model hooks were not resumed"
nsima_check_eq "$(probe restarted)" refused "the untrusted prober after the restart"
modified_refused "restarted"
workload $E "restarted"
echo quit >&3
wait "$PROBER" || nsima_fail "the prober did not end with status 0 on quit"
PROBER=
exec 3>&-
echo "ok: unknown executable refused at exec; untrusted mark kept across kill -9 + restart"
