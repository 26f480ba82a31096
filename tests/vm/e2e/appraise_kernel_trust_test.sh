#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# First execs decided in the kernel (bpf/trust.bpf.h): in a namespace that enforces
# `appraise func=BPRM_CHECK`, a binary whose sha256 is in the namespace's digest list runs on its
# very first exec (no first deny), and so does a copy of it at a path never seen; an unlisted
# binary, a revoked one and one changed after listing are denied on their first exec. The
# decision loses nothing: every kernel-allowed exec is still an event that nsimad measures (its
# list has the entry, with the digest) and appraises. A child namespace that lists more than its
# enforcing parent gets nothing more from the kernel (a child never relaxes an ancestor). A
# revoke is effective at once; a restarted nsimad rebuilds the map from the stores on disk.
. /usr/share/nsima-test/nsima.sh
set -eu

HELLO=$(command -v hello)
run() { # CGROUP FILE: the exit status of FILE run in CGROUP (126: execve refused)
	rc=0
	cg_exec "$1" "$2" >/tmp/run.out 2>&1 || rc=$?
	echo $rc
}
sha() { sha256sum "$1" | cut -d' ' -f1; }
stat_of() { # SECTION KEY: a number from `nsimactl status`
	nsima_status | sed -n "s/.*\"$1\":{[^}]*\"$2\":\([0-9]*\).*/\1/p"
}

D=/data/k
mkdir -p $D
for f in listed unlisted revoked changed clisted conly; do
	cp "$HELLO" $D/$f
	printf '%s' "$f" >>$D/$f # distinct contents
done
: >/tmp/list.sha256
for f in listed revoked changed; do printf '%s  %s\n' "$(sha $D/$f)" "$D/$f" >>/tmp/list.sha256; done
# the child lists the parent's `listed` content (as clisted, a copy) and one only it lists
cp $D/listed $D/clisted
printf '%s  %s\n%s  %s\n' "$(sha $D/clisted)" $D/clisted "$(sha $D/conly)" $D/conly >/tmp/child.sha256

printf 'measure func=BPRM_CHECK\nappraise func=BPRM_CHECK\n' >/tmp/exec.policy
M=/sys/fs/cgroup/m
C=$M/c
mkdir -p $M $C

nsima_start
m=$(nsimactl ns create --cgroup $M --policy /tmp/exec.policy)
c=$(nsimactl ns create --cgroup $C --policy /tmp/exec.policy)
nsimactl digests load --ns "$m" /tmp/list.sha256 >/dev/null
nsimactl digests load --ns "$c" /tmp/child.sha256 >/dev/null
nsimactl digests revoke --ns "$m" "$(sha $D/revoked)" >/dev/null
printf 'x' >>$D/changed # after listing: its content is no longer the listed one
# the map holds m: listed, changed (its listed digest); c: only what m lists too (clisted)
nsima_check_eq "$(stat_of kernel_trust entries)" 3 "pairs in the kernel's trusted map"
cp $D/listed $D/copy # listed content at a path nothing has seen

trusted0=$(nsima_stat trusted)
nsima_check_eq "$(run $M $D/listed)" 0 "first exec of a listed binary"
nsima_check_eq "$(run $M $D/copy)" 0 "first exec of a copy of a listed binary at a new path"
nsima_check_eq "$(nsima_stat trusted)" $((trusted0 + 2)) "first execs the kernel allowed"
nsima_check_eq "$(run $M $D/unlisted)" 126 "first exec of an unlisted binary"
nsima_check_eq "$(run $M $D/revoked)" 126 "first exec of a listed, then revoked binary"
nsima_check_eq "$(run $M $D/changed)" 126 "first exec of a binary changed after listing"
nsima_check_eq "$(run $C $D/clisted)" 0 "child: first exec of content both lists hold"
nsima_check_eq "$(run $C $D/conly)" 126 "child: first exec of content only the child lists"
nsima_check_eq "$(nsima_stat trusted)" $((trusted0 + 3)) "first execs the kernel allowed"
nsima_check_eq "$(nsima_stat trust_unhashed)" 0 "first execs the kernel could not hash"

# Nothing lost: each kernel-allowed exec reached nsimad, was measured (entry with its digest)
# and appraised (the verdict nsimad wrote lets the next exec run without the kernel's hash).
nsima_check_eq "$(nsima_hook_stat bprm_check dropped)" 0 "dropped bprm_check events"
i=0
while :; do
	nsimactl log --ns "$m" >/tmp/m.list
	grep -Eq " sha256:$(sha $D/copy) $D/copy( |\$)" /tmp/m.list && break
	i=$((i + 1))
	[ $i -lt 100 ] || nsima_fail "no entry for $D/copy in namespace $m's list: $(cat /tmp/m.list)"
	sleep 0.1
done
grep -Eq " sha256:$(sha $D/listed) $D/listed( |\$)" /tmp/m.list ||
	nsima_fail "no entry for $D/listed with its digest in namespace $m's list: $(cat /tmp/m.list)"
nsimactl log --ns "$c" >/tmp/c.list
grep -Eq " sha256:$(sha $D/clisted) $D/clisted( |\$)" /tmp/c.list ||
	nsima_fail "no entry for $D/clisted in namespace $c's list: $(cat /tmp/c.list)"
nsima_check_eq "$(run $M $D/listed)" 0 "second exec of the listed binary"
nsima_check_eq "$(nsima_stat trusted)" $((trusted0 + 3)) "a judged file needs no kernel hash"
line=$(nsimactl audit --ns "$m" | grep "\"path\":\"$D/revoked\"" | tail -n 1)
nsima_check_contains "$line" '"status":"revoked"' "audit of the revoked binary"

# a revoke takes the content out of the kernel's map at once, for a never-seen copy too
cp $D/listed $D/copy2
nsimactl digests revoke --ns "$m" "$(sha $D/listed)" >/dev/null
nsima_check_eq "$(run $M $D/copy2)" 126 "first exec of a copy of a just-revoked binary"
nsima_check_eq "$(run $C $D/clisted)" 126 "the child's copy after the parent revoked it"
nsima_check_eq "$(stat_of kernel_trust entries)" 1 "pairs left in the trusted map"

# a restarted nsimad (the pinned hooks and map resumed) clears the map and rebuilds it from the
# stores on disk: the content `changed` had when listed runs on its first exec, at a new path
nsima_stop
nsima_start
nsima_check_eq "$(stat_of kernel_trust entries)" 1 "pairs in the trusted map after a restart"
cp "$HELLO" $D/orig
printf 'changed' >>$D/orig
nsima_check_eq "$(run $M $D/orig)" 0 "after a restart: first exec of listed content"
cp $D/listed $D/copy3
nsima_check_eq "$(run $M $D/copy3)" 126 "after a restart: first exec of revoked content"
nsima_stop
echo "appraise_kernel_trust_test: OK"
