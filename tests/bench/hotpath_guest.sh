#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Guest side of tests/bench/vm-hotpath. Each figure is the median of 5 separate processes.
set -eu
# $1: sleepable (default) or nonsleepable (mmap_file as it was before first exec mmaps were
# decided in the kernel: the baseline); $2: a baseline nsimad measured in the same rounds
case ${1:-sleepable} in
sleepable) ;;
nonsleepable) export NSIMA_BPF_NONSLEEPABLE_HOOKS=1 ;;
*) echo "hotpath_guest.sh: unknown variant '$1'" >&2; exit 2 ;;
esac
echo "hooks: ${1:-sleepable}"
BASE=${2:-}
echo 0 >/proc/sys/kernel/randomize_va_space
D=/data/bench
mkdir -p $D /sys/fs/cgroup/bench
head -c 4096 /dev/zero >$D/file
cp "$(command -v nop)" $D/nop
NOPEN=20000
NMMAP=20000
NEXEC=300

median() { sort -n | sed -n 3p; }
# Every measured process runs in the bench cgroup; this shell stays outside it, since a
# process of a registered namespace cannot signal nsimad (self-protection), nor leave.
inbench() { sh -c 'echo $$ >/sys/fs/cgroup/bench/cgroup.procs && exec "$@"' inbench "$@"; }
measure() { # open|mmap|exec
	if [ "$1" = open ]; then
		for i in 1 2 3 4 5; do inbench bench_access open $D/file $NOPEN; done | median
	elif [ "$1" = mmap ]; then
		for i in 1 2 3 4 5; do inbench bench_access mmap $D/file $NMMAP; done | median
	else
		for i in 1 2 3 4 5; do inbench bench_access exec $D/nop $NEXEC; done | median
	fi
}

measure open >/dev/null # warm-up: TCG translates the code paths once
measure mmap >/dev/null
measure exec >/dev/null

ROUND=0
start_nsimad() { # [NSIMAD]
	# no pins (the hooks go with nsimad: "without" is without hooks) and a fresh state per round
	ROUND=$((ROUND + 1))
	${1:-nsimad} --log-level warn --pin-dir '' --state-dir /tmp/nsima-state.$ROUND >/tmp/nsimad.log 2>&1 &
	NSIMAD=$!
	while [ ! -S /run/nsima/nsimad.sock ]; do sleep 0.1; done
	nsimactl ns create --cgroup /sys/fs/cgroup/bench --no-policy >/dev/null
	# first accesses: reported once, then allowed and silent
	for i in 1 2; do
		inbench bench_access open $D/file 1 >/dev/null
		inbench bench_access mmap $D/file 1 >/dev/null
		inbench bench_access exec $D/nop 1 >/dev/null
		sleep 1
	done
}
stop_nsimad() {
	quiet=$(nsimactl status --json | tr -d ' \n' | sed -n 's/.*"bpf":{[^}]*"quiet":\([0-9]*\).*/\1/p')
	kill -TERM $NSIMAD
	wait $NSIMAD || true
	rm -f /run/nsima/nsimad.sock
}

with_nsimad() { # LABEL [NSIMAD]
	start_nsimad ${2:+"$2"}
	echo "$1 $(measure open) $(measure exec) $(measure mmap)" >>/tmp/results
	# the programs' own run time (bpf_stats_enabled): they are loaded afresh with each nsimad
	if [ -n "$BASE" ]; then bpf_progstats | sed "s/^/$1 /" >>/tmp/progstats; fi
	stop_nsimad
}
# With a baseline, the kernel also counts each program's run time (two clock reads per run,
# on both sides alike), which says what the hooks' bodies cost apart from the noise of the
# whole open or exec.
if [ -n "$BASE" ]; then echo 1 >/proc/sys/kernel/bpf_stats_enabled; fi

# Three rounds of (without, with): phases alternate so that drift hits both sides alike.
for round in 1 2 3; do
	echo "without $(measure open) $(measure exec) $(measure mmap)" >>/tmp/results
	# with a baseline: this build and the baseline take turns going first
	if [ -n "$BASE" ] && [ $round = 2 ]; then with_nsimad base "$BASE"; fi
	with_nsimad with
	if [ -n "$BASE" ] && [ $round != 2 ]; then with_nsimad base "$BASE"; fi
done
cat /tmp/results
med() { grep "^$1 " /tmp/results | awk -v c="$2" '{ print $c }' | sort -n | sed -n 2p; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b / a }'; }
a_open=$(med without 2) b_open=$(med with 2) a_exec=$(med without 3) b_exec=$(med with 3)
a_mmap=$(med without 4) b_mmap=$(med with 4)
echo "open+close  ns/op (median of 3 rounds x 5 processes): without ${a_open}  with nsima ${b_open}  ratio $(ratio "$a_open" "$b_open")"
echo "fork+execve ns/op (median of 3 rounds x 5 processes): without ${a_exec}  with nsima ${b_exec}  ratio $(ratio "$a_exec" "$b_exec")"
echo "mmap(PROT_EXEC)+munmap ns/op (median of 3 rounds x 5 processes): without ${a_mmap}  with nsima ${b_mmap}  ratio $(ratio "$a_mmap" "$b_mmap")"
if [ -n "$BASE" ]; then
	c_open=$(med base 2) c_exec=$(med base 3) c_mmap=$(med base 4)
	echo "baseline $BASE: open+close ${c_open} ratio $(ratio "$a_open" "$c_open"), fork+execve ${c_exec} ratio $(ratio "$a_exec" "$c_exec"), mmap ${c_mmap} ratio $(ratio "$a_mmap" "$c_mmap")"
	echo "this build : baseline (ns/op): open+close $(ratio "$c_open" "$b_open"), fork+execve $(ratio "$c_exec" "$b_exec"), mmap $(ratio "$c_mmap" "$b_mmap")"
fi
if [ -n "$BASE" ]; then
	echo "per program, ns per run over the 3 rounds (run_time_ns / run_cnt; without trampolines):"
	printf "  %-16s %12s %12s %8s\n" program baseline "this build" ratio
	awk '{ t[$1 " " $2] += $4; n[$1 " " $2] += $3; p[$2] = 1 }
	END {
		for (q in p) {
			b = n["base " q] ? t["base " q] / n["base " q] : 0
			w = n["with " q] ? t["with " q] / n["with " q] : 0
			printf "  %-16s %12.0f %12.0f %8s\n", q, b, w, b ? sprintf("%.3f", w / b) : "-"
		}
	}' /tmp/progstats | sort
fi
echo "accesses silenced by the verdict cache in the last round: $quiet"
