#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Guest side of tests/bench/vm-first-access: the first read or exec mmap of never-seen 64 KiB
# files whose sha256 is listed, decided in the kernel by nsima (bpf_ima_file_hash + the trusted
# map in lsm.s/file_open or lsm.s/mmap_file), against the same accesses with nothing attached,
# in one boot:
#   idle   nothing appraises
#   nsima  nsimad, the benchmark's cgroup a namespace enforcing `appraise func=FILE_CHECK
#          mask=MAY_READ` (read) or `appraise func=MMAP_CHECK` (mmap) with a digest list of the
#          files: each first access is hashed and decided in the kernel, then appraised again by
#          nsimad from the event (with the kernel's digest)
#   drift  nothing again (nsimad stopped): the machine's drift during the boot
# Each figure is the median of NPROC sets of NFILES fresh files (ns per first access).
#   usage: first_access_guest.sh read|mmap [quick]
set -eu
. /usr/share/nsima-test/nsima.sh
set -o pipefail
MODE=${1:-}
case $MODE in
read) POLICY='appraise func=FILE_CHECK mask=MAY_READ' OP=read STAT=trusted_open ;;
mmap) POLICY='appraise func=MMAP_CHECK' OP=mmapeach STAT=trusted_mmap ;;
*) echo "usage: first_access_guest.sh read|mmap [quick]" >&2; exit 2 ;;
esac
echo 0 >/proc/sys/kernel/randomize_va_space
D=/data/fa
CG=/sys/fs/cgroup/fa
mkdir -p $D $CG
NPROC=5 NFILES=20
if [ "${2:-}" = quick ]; then NPROC=3 NFILES=4; fi
BENCH=$(command -v bench_access)
bench() { cg_exec $CG "$BENCH" "$@"; }
median() { sort -n | sed -n "$(((NPROC + 1) / 2))p"; }
phase() { # phase NAME: makes its sets (and runs `$PREP DIR` on each), then times them
	name=$1
	s=1
	while [ $s -le $NPROC ]; do
		mkdir -p $D/$name-$s
		"$BENCH" mkfiles $D/$name-$s $NFILES 64
		[ -z "${PREP:-}" ] || $PREP $D/$name-$s
		s=$((s + 1))
	done
	sync
	sleep 1
	s=1
	while [ $s -le $NPROC ]; do
		bench $OP $D/$name-$s $NFILES
		s=$((s + 1))
	done | median >/tmp/$name
	echo "phase $name $(cat /tmp/$name)"
}
stat() { timeout 60 nsimactl status --json | tr -d ' \n' | sed -n "s/.*\"bpf\":{[^}]*\"$1\":\([0-9]*\).*/\1/p"; }

phase idle

NSIMA_START_SECONDS=60 nsima_start --pin-dir '' --log-level warn
printf '%s\n' "$POLICY" >/tmp/fa.policy
NS=$(timeout 60 nsimactl ns create --cgroup $CG --policy /tmp/fa.policy)
list() { sha256sum "$1"/f* >/tmp/set.sha256 && timeout 60 nsimactl digests load --ns $NS /tmp/set.sha256 >/dev/null; }
t0=$(stat $STAT)
PREP=list phase nsima
t1=$(stat $STAT)
# every benchmark file was decided in the kernel; a first deny would have failed `bench_access`
echo "  nsima: $((t1 - t0)) first accesses decided in the kernel ($((NPROC * NFILES)) benchmark files)"
[ $((t1 - t0)) -ge $((NPROC * NFILES)) ] || { echo "FAIL: not every first access was decided in the kernel" >&2; exit 1; }
nsima_stop --check
PREP=

phase drift
awk -v i="$(cat /tmp/idle)" -v n="$(cat /tmp/nsima)" -v d="$(cat /tmp/drift)" -v m="$MODE" 'BEGIN {
	printf "first %s of a never-seen listed 64 KiB file (ns): idle %d, nsima %d, drift %d\n", m, i, n, d
	printf "ratios: nsima/idle %.2f, drift/idle %.2f; in-kernel cost per first access ~ %d ns\n",
		n / i, d / i, n - (i + d) / 2
}'
echo "first_access_guest: done ($NPROC sets of $NFILES files per figure)"
