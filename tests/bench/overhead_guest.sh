#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Guest side of tests/bench/vm-overhead: one boot, four phases, each timing the same patterns
#   idle     nothing measures
#   nsima    nsimad: MODE host = the host namespace on builtin tcb; MODE container = a container
#            namespace on container-default (own vTPM) holding the benchmark's cgroup
#   drift    nothing measures again (nsimad stopped, its hooks gone): the control
#   kima     kernel IMA with the tcb policy (written last: it cannot be unloaded)
# Method (shared validators.md section 7): ASLR off, each figure the median of 5 separate
# processes, the cached patterns before the new-file patterns in each phase. Prints one line per
# phase ("phase NAME open mmap exec cached cold", ns per operation); vm-overhead makes the
# ratios (overhead_table.awk).
#   usage: overhead_guest.sh host|container TCB_POLICY_FILE [quick]
set -eu
set -o pipefail
MODE=${1:-host}
TCB=${2:?the kernel tcb policy file (policies/tcb.policy)}
case $MODE in host | container) ;; *) echo "usage: $0 host|container TCB_POLICY_FILE" >&2; exit 2 ;; esac
[ -c /dev/tpmrm0 ] || { echo "FAIL: no TPM (vm-run --tpm)" >&2; exit 1; }
KPOLICY=/sys/kernel/security/ima/policy
[ -w $KPOLICY ] || { echo "FAIL: kernel IMA policy not writable (already loaded?)" >&2; exit 1; }

echo 0 >/proc/sys/kernel/randomize_va_space
D=/data/bench
CG=/sys/fs/cgroup/bench
mkdir -p $D $CG
head -c 4096 /dev/zero >$D/file
cp "$(command -v nop)" $D/nop
NPROC=5 NOPEN=20000 NMMAP=20000 NEXEC=300 NFILES=100 KIB=64
if [ "${3:-}" = quick ]; then # a check of the script itself, not a measurement
	NPROC=3 NOPEN=1000 NMMAP=1000 NEXEC=20 NFILES=10
fi
NS=host
RES=/tmp/results
: >$RES

# Every benchmark process runs in $CG (all phases alike); nsimad and this shell stay outside.
bench() { cg_exec $CG "$(command -v bench_access)" "$@"; }
median() { sort -n | sed -n "$(((NPROC + 1) / 2))p"; }
five() { # five MODE ARG N: the median of NPROC processes
	i=0
	while [ $i -lt $NPROC ]; do
		bench "$@"
		i=$((i + 1))
	done | median
}
nsima_running() { [ -n "${NSIMAD:-}" ]; }
settle() { # the page cache written back, every event nsimad has judged and recorded
	sync
	sleep 1
	if nsima_running; then timeout 300 nsimactl pcr --ns $NS >/dev/null; fi
}
count_entries() { # count_entries PHASE: entries of this phase's new files in the measuring list
	if nsima_running; then
		timeout 300 nsimactl log --ns $NS >/tmp/list
	else
		cp /sys/kernel/security/ima/ascii_runtime_measurements /tmp/list
	fi
	awk -v p=" $D/new/$1-" 'index($0, p) { n++ } END { print n + 0 }' /tmp/list
}

phase() { # phase NAME
	name=$1
	# First accesses (measured now, by whoever measures) and TCG's code translation: untimed.
	bench open $D/file 100 >/dev/null
	bench mmap $D/file 100 >/dev/null
	bench exec $D/nop 10 >/dev/null
	settle
	open=$(five open $D/file $NOPEN)
	mmap=$(five mmap $D/file $NMMAP)
	exec=$(five exec $D/nop $NEXEC)
	# New 64 KiB files: NPROC sets made (and written back) first, then one reader per set.
	for kind in cached cold; do
		i=1
		while [ $i -le $NPROC ]; do
			mkdir -p $D/new/$name-$kind-$i
			bench mkfiles $D/new/$name-$kind-$i $NFILES $KIB
			i=$((i + 1))
		done
		settle
		if [ $kind = cold ]; then echo 3 >/proc/sys/vm/drop_caches; fi
		i=1
		while [ $i -le $NPROC ]; do
			bench read $D/new/$name-$kind-$i $NFILES
			i=$((i + 1))
		done | median >/tmp/$kind
	done
	t0=$(cut -d' ' -f1 /proc/uptime)
	settle
	lag=$(awk -v a="$t0" -v b="$(cut -d' ' -f1 /proc/uptime)" 'BEGIN { printf "%.1f", b - a - 1 }')
	n=$(count_entries "$name")
	echo "phase $name $open $mmap $exec $(cat /tmp/cached) $(cat /tmp/cold)" | tee -a $RES
	echo "  $name: $n list entries for its $((2 * NPROC * NFILES)) new files;" \
		"measuring finished ${lag} s after the last read"
	rm -rf $D/new
}

phase idle

# nsima: pins off, so that its hooks end with nsimad (the drift phase must be hook-free).
nsimad --pin-dir '' --log-level warn --barrier-timeout-ms 300000 \
	$([ "$MODE" = host ] && echo --builtin tcb) >/tmp/nsimad.log 2>&1 &
NSIMAD=$!
i=0
while [ ! -S /run/nsima/nsimad.sock ]; do
	kill -0 $NSIMAD 2>/dev/null || { cat /tmp/nsimad.log; echo "FAIL: nsimad exited" >&2; exit 1; }
	i=$((i + 1))
	[ $i -lt 600 ] || { echo "FAIL: nsimad did not start" >&2; exit 1; }
	sleep 0.1
done
if [ "$MODE" = container ]; then
	NS=$(timeout 120 nsimactl ns create --cgroup $CG --builtin container-default --vtpm)
	echo "container namespace $NS (container-default, own vTPM)"
fi
phase nsima
timeout 60 nsimactl status | tr -d '\n' | sed 's/  */ /g' | head -c 600
echo
kill -TERM $NSIMAD
wait $NSIMAD || { cat /tmp/nsimad.log; echo "FAIL: nsimad did not stop cleanly" >&2; exit 1; }
NSIMAD=
[ -z "$(ls -A /sys/fs/bpf 2>/dev/null)" ] || { echo "FAIL: BPF pins left: $(ls /sys/fs/bpf)" >&2; exit 1; }
# (the container mode's swtpm is left to vm-run's end: the guest stops every process)

phase drift

# Kernel IMA's tcb rules, written once: nsima's tcb file is the kernel's list (comments skipped).
grep -v '^#' "$TCB" | grep . >$KPOLICY
phase kima

echo "overhead_guest: done ($MODE mode, $NPROC processes per figure)"
