#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Guest side of tests/bench/vm-preappraise: FILES files of KIB KiB (default 5,000 x 40 KiB =
# 195 MiB, content unique per file) on the guest's disk, all in a digest list of a namespace
# enforcing `appraise func=FILE_CHECK` (a fresh one per run); `nsimactl appraise --ns N --rootfs DIR` reads, hashes
# (sha256 and the list's algorithm: both sha256 here, one read) and decides every one. Its
# rate, cold (page cache dropped) and warm, against `openssl speed -evp sha256 -bytes 16384`
# run in the same boot (one core, and every core with -multi where the guest has more);
# every file must pass.
#   usage: preappraise_guest.sh [FILES [KIB [HASH_THREADS]]]
set -eu
set -o pipefail
N=${1:-5000}
KIB=${2:-40}
D=/data/rootfs
CG=/sys/fs/cgroup/pa
mkdir -p $D $CG
bench_access mkfiles $D "$N" "$KIB"
sync
# the machine's rate: OpenSSL's, in 1000s of bytes per second ("sha256 123456.78k")
kps=$(timeout 120 openssl speed -evp sha256 -bytes 16384 -seconds 3 2>/dev/null |
	awk 'tolower($1) == "sha256" { v = $NF; sub(/k$/, "", v); print v }')
[ -n "$kps" ] || { echo "FAIL: no openssl speed figure" >&2; exit 1; }
echo "openssl speed -evp sha256 -bytes 16384: ${kps} kB/s (one core)"
# and every core's: nsimad hashes with workers on every CPU
CPUS=$(nproc)
kps_all=$kps
if [ "$CPUS" -gt 1 ]; then
	kps_all=$(timeout 120 openssl speed -evp sha256 -bytes 16384 -seconds 3 -multi "$CPUS" 2>/dev/null |
		awk 'tolower($1) == "sha256" { v = $NF; sub(/k$/, "", v); print v }')
	[ -n "$kps_all" ] || { echo "FAIL: no openssl speed -multi figure" >&2; exit 1; }
	echo "openssl speed -evp sha256 -bytes 16384 -multi $CPUS: ${kps_all} kB/s"
fi

. /usr/share/nsima-test/nsima.sh
nsima_start --pin-dir '' --log-level warn ${3:+--hash-threads $3}
printf 'appraise func=FILE_CHECK mask=MAY_READ\n' >/tmp/read.policy
(cd $D && sha256sum f*) | sed "s|  |  $D/|" >/tmp/rootfs.sha256
# one namespace per run: a second pre-appraisal in the same namespace finds every file judged
mkns() {
	mkdir -p "$1"
	NS=$(timeout 60 nsimactl ns create --cgroup "$1" --policy /tmp/read.policy)
	timeout 120 nsimactl digests load --ns "$NS" /tmp/rootfs.sha256 >/dev/null
}

run() { # run NAME: one pre-appraisal, timed; prints its rate and ratio
	t0=$(cut -d" " -f1 /proc/uptime)
	timeout 900 nsimactl appraise --ns "$NS" --rootfs $D >/tmp/pa.out 2>/tmp/pa.err ||
		{ cat /tmp/pa.err; echo "FAIL: pre-appraisal failed" >&2; exit 1; }
	t1=$(cut -d" " -f1 /proc/uptime)
	cat /tmp/pa.out
	passed=$(sed -n 's/^[0-9]* files: \([0-9]*\) passed.*/\1/p' /tmp/pa.out)
	[ "$passed" = "$N" ] || { echo "FAIL: ${passed:-no figure} of $N files passed" >&2; exit 1; }
	awk -v n="$1" -v f="$N" -v b="$((N * KIB * 1024))" -v t0="$t0" -v t1="$t1" -v k="$kps" \
		-v ka="$kps_all" -v c="$CPUS" 'BEGIN {
		s = t1 - t0
		r = b / s / 1000
		printf "%s: %d files, %d bytes in %.2f s: %.0f kB/s = %.2fx openssl sha256 on one core", n, f, b, s, r, r / k
		if (c > 1) printf ", %.2fx on %d", r / ka, c
		printf "\n"
	}'
}
mkns $CG
echo 3 >/proc/sys/vm/drop_caches
run cold
mkns $CG-warm
run warm
nsima_stop
