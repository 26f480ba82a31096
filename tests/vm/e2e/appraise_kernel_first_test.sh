#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# First executable mmaps decided in the kernel (bpf/trust.bpf.h, lsm.s/mmap_file), as first
# execs are (appraise_kernel_trust_test.sh): in a namespace that enforces `appraise
# func=MMAP_CHECK`, a copy of a listed file at a path never seen can be mapped PROT_EXEC on its
# first mmap; unlisted content is refused (EACCES), and so is listed content while a writer has
# the file open (the hash could change under it). The event carries the digest the hook
# computed (NSIMA_EV_KERNEL_DIGEST) and nsimad measures and appraises with it instead of hashing
# the file again: no byte hashed by nsimad, `kernel_digests.used` counts it, and the list
# entry's digest is the file's sha256. First reads are not decided in the kernel on 6.1:
# file_open runs before the file can be read (bpf/file_open.bpf.c: bpf_ima_file_hash fails
# there), so a listed copy's first read is refused first, then allowed once nsimad has
# appraised it.
. /usr/share/nsima-test/nsima.sh
set -eu
set -o pipefail

sha() { sha256sum "$1" | cut -d' ' -f1; }
stat_of() { # SECTION KEY: a number from `nsimactl status`
	nsima_status | sed -n "s/.*\"$1\":{[^}]*\"$2\":\([0-9]*\).*/\1/p"
}
run() { # CGROUP CMD...: "rc output" of CMD run in CGROUP
	rc=0
	out=$(cg_exec "$@" 2>&1) || rc=$?
	echo "$rc $out"
}
in_list() { # NS FILE: waits until NS's list has an entry for FILE with its sha256
	i=0
	while :; do
		nsimactl log --ns "$1" >/tmp/list.out
		grep -Eq " sha256:$(sha "$2") $2( |\$)" /tmp/list.out && return 0
		i=$((i + 1))
		[ $i -lt 100 ] || nsima_fail "no entry for $2 with its sha256 in $1's list: $(cat /tmp/list.out)"
		sleep 0.1
	done
}
cp "$(command -v mmap_exec)" /tmp/mmap_exec
BB=
for p in /bin/busybox /usr/bin/busybox /usr/local/bin/busybox; do [ -x $p ] && BB=$p && break; done
[ -n "$BB" ] || nsima_fail "no busybox binary"

D=/data/kf
mkdir -p $D
printf 'listed content\n' >$D/listed
printf 'unlisted content\n' >$D/unlisted
printf '%s  %s\n' "$(sha $D/listed)" $D/listed >/tmp/list.sha256
printf 'measure func=MMAP_CHECK\nappraise func=MMAP_CHECK\n' >/tmp/mmap.policy
printf 'measure func=FILE_CHECK mask=MAY_READ\nappraise func=FILE_CHECK mask=MAY_READ\n' >/tmp/read.policy
X=/sys/fs/cgroup/kf-mmap
R=/sys/fs/cgroup/kf-read
mkdir -p $X $R

nsima_start
x=$(nsimactl ns create --cgroup $X --policy /tmp/mmap.policy)
r=$(nsimactl ns create --cgroup $R --policy /tmp/read.policy)
nsimactl digests load --ns "$x" /tmp/list.sha256 >/dev/null
nsimactl digests load --ns "$r" /tmp/list.sha256 >/dev/null
# a namespace with only an MMAP_CHECK (or FILE_CHECK) appraise rule has its list in the map
nsima_check_eq "$(stat_of kernel_trust entries)" 2 "pairs in the kernel's trusted map"
nsimactl watch --cgroup $X >/tmp/x.ev 2>/tmp/x.err &
WX=$!
nsima_wait_for /tmp/x.err "watching namespace"

# the first run of mmap_exec: its own mapping by execve (never denied) is measured by nsimad,
# and its first mmap of listed content is allowed by the kernel
nsima_check_eq "$(run $X /tmp/mmap_exec $D/listed)" "0 ok" "first exec mmap of listed content"
in_list "$x" /tmp/mmap_exec
in_list "$x" $D/listed
cp $D/listed $D/xcopy # listed content at a path nothing has seen
bytes0=$(stat_of access bytes_read)
used0=$(stat_of kernel_digests used)
nsima_check_eq "$(run $X /tmp/mmap_exec $D/xcopy)" "0 ok" "first exec mmap of a copy of listed content"
nsima_check_eq "$(nsima_stat trusted_mmap)" 2 "first exec mmaps the kernel allowed"
nsima_check_eq "$(run $X /tmp/mmap_exec $D/unlisted)" "1 mmap: Permission denied" \
	"first exec mmap of unlisted content"
nsima_check_eq "$(nsima_stat trusted_mmap)" 2 "first exec mmaps the kernel allowed"
nsima_check_eq "$(nsima_stat trust_unhashed)" 0 "first accesses the kernel could not hash"
nsima_check_eq "$(nsima_stat trust_unstable)" 0 "first accesses with a writer or a change"

# nsimad measured both with the kernel's digest: entries with the right digest, nothing hashed
in_list "$x" $D/xcopy
nsima_wait_for /tmp/x.ev "\"path\":\"$D/unlisted\""
grep "\"path\":\"$D/xcopy\"" /tmp/x.ev | grep '"hook":"mmap_file"' >/tmp/xcopy.ev ||
	nsima_fail "no mmap event for $D/xcopy: $(cat /tmp/x.ev)"
nsima_check_contains "$(cat /tmp/xcopy.ev)" "\"kernel_sha256\":\"$(sha $D/xcopy)\"" "the first mmap's event"
i=0
while [ "$(stat_of kernel_digests used)" -lt $((used0 + 2)) ]; do
	i=$((i + 1))
	[ $i -lt 100 ] || nsima_fail "kernel digests used: $(stat_of kernel_digests used), want >= $((used0 + 2))"
	sleep 0.1
done
nsima_check_eq "$(stat_of access bytes_read)" "$bytes0" "bytes nsimad hashed for these two mmaps"
nsima_check_eq "$(stat_of kernel_digests mismatches)" 0 "kernel digests unlike nsimad's"

# a writer open meanwhile: the kernel does not trust the content (it could change under the
# hash), the first mmap is refused and counted, and the event carries no digest
cp $D/listed $D/wcopy
exec 3>>$D/wcopy
nsima_check_eq "$(run $X /tmp/mmap_exec $D/wcopy)" "1 mmap: Permission denied" \
	"first exec mmap while a writer exists"
exec 3>&-
nsima_check_eq "$(nsima_stat trust_unstable)" 1 "first accesses refused for a writer"
nsima_wait_for /tmp/x.ev "\"path\":\"$D/wcopy\""
nsima_check_eq "$(nsima_count /tmp/x.ev "\"path\":\"$D/wcopy\"" kernel_sha256)" 0 \
	"digests in the events of a file with a writer"

# first reads: refused first on 6.1 (file_open cannot hash), then allowed once appraised
cp $D/listed $D/rcopy
nsima_check_contains "$(run $R $BB cat $D/rcopy)" "Permission denied" "first read of a listed copy"
nsima_check_eq "$(nsima_stat trusted_open)" 0 "first opens the kernel allowed"
i=0
while :; do
	out=$(run $R $BB cat $D/rcopy)
	[ "$out" != "0 listed content" ] || break
	i=$((i + 1))
	[ $i -lt 100 ] || nsima_fail "read of $D/rcopy after its appraisal: $out"
	sleep 0.1
done
in_list "$r" $D/rcopy

kill $WX
wait $WX 2>/dev/null || :
nsima_stop
echo "appraise_kernel_first_test: OK"
