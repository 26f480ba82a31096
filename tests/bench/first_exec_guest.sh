#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Guest side of tests/bench/vm-first-exec (issue 9 goal: <= 1.2x kernel IMA): the first exec of
# never-seen 1 MiB binaries, each run once, in one boot:
#   idle   nothing appraises
#   nsima  nsimad, the benchmark's cgroup a namespace enforcing `appraise func=BPRM_CHECK` with a
#          digest list of the binaries: each first exec is decided in the kernel (bpf_ima_file_hash
#          + the trusted map), then appraised again by nsimad from the event
#   drift  nothing again (nsimad stopped): the control for the machine's drift during the boot
#   kima   kernel IMA enforcing `appraise func=BPRM_CHECK fowner=N` on the same kind of binaries,
#          each carrying its sha256 in security.ima (written last: the policy cannot be unloaded)
# Each figure is the median of NPROC sets of NFILES fresh files (ns per first exec). Prints
# "phase NAME NS" lines and the ratios, each against its adjacent idle phase (nsima/idle,
# kIMA/drift; nsima:kIMA is their quotient), as vm-overhead does.
#   usage: first_exec_guest.sh [quick]
set -eu
. /usr/share/nsima-test/nsima.sh
set -o pipefail
KPOLICY=/sys/kernel/security/ima/policy
[ -w $KPOLICY ] || { echo "FAIL: kernel IMA policy not writable (already loaded?)" >&2; exit 1; }
echo 0 >/proc/sys/kernel/randomize_va_space
D=/data/fx
CG=/sys/fs/cgroup/fx
OWNER=4242 # kernel IMA's rule appraises only the benchmark's files (fowner=)
mkdir -p $D $CG
NPROC=5 NFILES=20
if [ "${1:-}" = quick ]; then NPROC=3 NFILES=4; fi
NOP=$(command -v nop)
bench() { cg_exec $CG "$(command -v bench_access)" "$@"; }
median() { sort -n | sed -n "$(((NPROC + 1) / 2))p"; }

mkset() { # mkset DIR: NFILES copies of nop padded to 1 MiB, each with its own content
	mkdir -p "$1"
	i=0
	while [ $i -lt $NFILES ]; do
		{ cat "$NOP"; head -c $((1048576 - $(wc -c <"$NOP"))) /dev/zero; } >"$1/f$i"
		printf '%s %s' "$1" $i | dd of="$1/f$i" bs=1 seek=1048000 conv=notrunc 2>/dev/null
		chmod 755 "$1/f$i"
		chown $OWNER "$1/f$i"
		i=$((i + 1))
	done
}
phase() { # phase NAME: makes its sets (and runs `$PREP DIR` on each), then times them
	name=$1
	s=1
	while [ $s -le $NPROC ]; do
		mkset $D/$name-$s
		[ -z "${PREP:-}" ] || $PREP $D/$name-$s
		s=$((s + 1))
	done
	sync
	sleep 1
	bench exec "$NOP" 5 >/dev/null # warm TCG's translation of fork/exec
	s=1
	while [ $s -le $NPROC ]; do
		bench execeach $D/$name-$s $NFILES
		s=$((s + 1))
	done | median >/tmp/$name
	echo "phase $name $(cat /tmp/$name)"
}

phase idle

# nsima: the digest list of each set is loaded before it runs
NSIMA_START_SECONDS=60 nsima_start --pin-dir '' --log-level warn
printf 'appraise func=BPRM_CHECK\n' >/tmp/exec.policy
NS=$(timeout 60 nsimactl ns create --cgroup $CG --policy /tmp/exec.policy)
# the benchmark's own programs run in the namespace too
sha256sum "$(command -v bench_access)" "$NOP" >/tmp/tools.sha256
timeout 60 nsimactl digests load --ns $NS /tmp/tools.sha256 >/dev/null
list() { sha256sum "$1"/f* >/tmp/set.sha256 && timeout 60 nsimactl digests load --ns $NS /tmp/set.sha256 >/dev/null; }
t0=$(timeout 60 nsimactl status --json | tr -d ' \n' | sed -n 's/.*"bpf":{[^}]*"trusted":\([0-9]*\).*/\1/p')
PREP=list phase nsima
t1=$(timeout 60 nsimactl status --json | tr -d ' \n' | sed -n 's/.*"bpf":{[^}]*"trusted":\([0-9]*\).*/\1/p')
# every benchmark file (and bench_access itself, until nsimad's verdict for it is written) was
# decided in the kernel; a first deny would have failed `bench execeach`
echo "  nsima: $((t1 - t0)) first execs decided in the kernel ($((NPROC * NFILES)) benchmark files)"
[ $((t1 - t0)) -ge $((NPROC * NFILES)) ] || { echo "FAIL: not every first exec was decided in the kernel" >&2; exit 1; }
nsima_stop --check
PREP=

phase drift # nothing again: how far the machine moved; kernel IMA is compared with this

# kernel IMA: security.ima = 04 (IMA_XATTR_DIGEST_NG) 04 (sha256) digest
xattr() { for f in "$1"/f*; do setfattr -n security.ima -v "0x0404$(sha256sum "$f" | cut -d' ' -f1)" "$f"; done; }
printf 'appraise func=BPRM_CHECK fowner=%s\n' $OWNER >$KPOLICY
PREP=xattr phase kima
# kernel IMA did appraise: the same kind of file without its security.ima is refused
mkset $D/kima-check
rc=0
bench execeach $D/kima-check 1 2>/dev/null || rc=$?
[ $rc -ne 0 ] || { echo "FAIL: kernel IMA ran a binary without security.ima" >&2; exit 1; }
awk -v i="$(cat /tmp/idle)" -v n="$(cat /tmp/nsima)" -v d="$(cat /tmp/drift)" -v k="$(cat /tmp/kima)" 'BEGIN {
	printf "first exec of a never-seen 1 MiB binary (ns): idle %d, nsima %d, drift %d, kernel IMA %d\n", i, n, d, k
	printf "ratios: nsima/idle %.2f, kIMA/drift %.2f, drift/idle %.2f, nsima:kIMA %.2f (goal <= 1.2)\n",
		n / i, k / d, d / i, (n / i) / (k / d)
}'
echo "first_exec_guest: done ($NPROC sets of $NFILES files per figure)"
