#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Workload models (issue 13): lineage holds however far the file-event intake lags. A process's
# TASK_ID is set by its exec (a file event, from the file hooks' ring buffer) and copied to its
# children by their forks (kernel events, from the model hooks' own ring buffer). A fork must
# not be applied before the exec events its parent committed before forking, whatever the
# intake's lag: otherwise the child inherits the parent's TASK_ID from before its exec and
# every coefficient of the child changes. The same nested workload (a shell that forks a shell
# that forks cat) is learned twice, by an nsimad whose intake keeps up and by one whose
# ring-buffer consumer sleeps 3 s after each wake-up (--consumer-delay-ms, far beyond any
# fixed settle time): the two states, coefficient counts and forensics are the same.
. /usr/share/nsima-test/nsima.sh
set -eu

W=/data/w
mkdir -p $W/k $W/i
cp "$(readlink -f /bin/sh)" $W/k/busybox
for f in 0 1 2 3; do echo "$f" >$W/i/$f; done
cat >$W/work.sh <<'EOF'
/data/w/k/busybox cat /data/w/i/0 >/dev/null
/data/w/k/busybox cat /data/w/i/1 >/dev/null
/data/w/k/busybox sh -c '/data/w/k/busybox cat /data/w/i/2 >/dev/null; /data/w/k/busybox sh -c "/data/w/k/busybox cat /data/w/i/3 >/dev/null"'
/data/w/k/busybox echo work-done
EOF
CGS=
cleanup() {
	nsima_stop
	for c in $CGS; do rmdir "$c" 2>/dev/null || :; done
}
trap cleanup EXIT
field() { printf '%s\n' "$1" | sed -n "s/^$2 //p"; }

learn() { # TAG [NSIMAD OPTIONS]: learns the workload in a new namespace; sets state_TAG, known_TAG
	tag=$1
	shift
	nsima_start "$@"
	C=/sys/fs/cgroup/lag$$-$tag
	mkdir $C
	CGS="$CGS $C"
	ns=$(nsimactl ns create --cgroup $C --no-policy --model-mode learn)
	out=$(timeout 60 cg_exec $C $W/k/busybox sh $W/work.sh 2>&1) || nsima_fail "$tag: the workload failed: $out"
	nsima_check_eq "$out" "work-done" "$tag: workload output"
	st=$(nsimactl model state --ns "$ns")
	echo "$tag: $(printf '%s' "$st" | tr '\n' ' ')"
	eval "state_$tag=$(field "$st" state)"
	eval "known_$tag=$(field "$st" known)"
	nsima_stop --check
}

learn prompt
learn lagging --consumer-delay-ms 3000
[ "$known_prompt" -ge 8 ] || nsima_fail "the workload learned only $known_prompt coefficients"
nsima_check_eq "$known_lagging" "$known_prompt" "coefficients learned with a lagging intake"
nsima_check_eq "$state_lagging" "$state_prompt" "state learned with a lagging intake"
echo "ok: one state $state_prompt ($known_prompt coefficients) with and without a 3 s intake lag"
