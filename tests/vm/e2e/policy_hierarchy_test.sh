#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Hierarchical namespaces: a parent namespace measuring every exec and a child namespace
# measuring only files opened for read by uid 0. Each list holds exactly what its own policy
# asks for: the child's execs are measured in the parent's list (judged by the ancestor's
# policy too), not in the child's; the child's root reads are in the child's list only; reads
# by uid 1000 are in neither.
. /usr/share/nsima-test/nsima.sh
set -eu
set -o pipefail

D=/data/hier
mkdir -p $D /sys/fs/cgroup/parent/child
cp "$(command -v hello)" $D/hello
cp "$(command -v hello)" $D/hello_parent
cp /bin/busybox $D/busybox
echo root-read >$D/root.txt
echo user-read >$D/user.txt
echo parent-read >$D/parent.txt
chmod 644 $D/*.txt
P=/sys/fs/cgroup/parent
C=/sys/fs/cgroup/parent/child
cat >/tmp/parent.policy <<'POL'
# parent: every exec
measure func=BPRM_CHECK
POL
cat >/tmp/child.policy <<'POL'
# child: files opened for read by root
measure func=FILE_CHECK mask=^MAY_READ uid=0
POL
nsimactl policy check /tmp/parent.policy
nsimactl policy check /tmp/child.policy

nsima_start
pns=$(nsimactl ns create --cgroup $P --policy /tmp/parent.policy)
cns=$(nsimactl ns create --cgroup $C --policy /tmp/child.policy)
nsimactl ns list
nsimactl ns list --json | grep "\"id\":\"$cns\"" | grep -q "\"parent\":\"$pns\"" ||
	nsima_fail "namespace $cns is not a child of $pns"

# workload in the child
out=$(cg_exec $C $D/hello)
nsima_check_eq "$out" hello "exec in child"
out=$(cg_exec $C $D/busybox cat $D/root.txt)
nsima_check_eq "$out" root-read "root read in child"
out=$(cg_exec $C "$(command -v run_as)" 1000 1000 $D/busybox cat $D/user.txt)
nsima_check_eq "$out" user-read "uid 1000 read in child"
# workload in the parent itself
out=$(cg_exec $P $D/hello_parent)
nsima_check_eq "$out" hello "exec in parent"
out=$(cg_exec $P $D/busybox cat $D/parent.txt)
nsima_check_eq "$out" parent-read "root read in parent"

sleep 1
nsimactl log --ns "$pns" >/tmp/parent.list
nsimactl log --ns "$cns" >/tmp/child.list
echo "--- parent list"; cat /tmp/parent.list
echo "--- child list"; cat /tmp/child.list

names() { awk '{ print $5 }' "$1" | sort | tr '\n' ' '; }
# exact contents (after boot_aggregate): execs of both cgroups in the parent's list
nsima_check_eq "$(names /tmp/parent.list)" \
	"$D/busybox $D/hello $D/hello_parent $(command -v run_as) boot_aggregate " \
	"entries of the parent's list"
# root reads of the child only in the child's list
nsima_check_eq "$(names /tmp/child.list)" "$D/root.txt boot_aggregate " \
	"entries of the child's list"

# the digests are the files' sha256
d=$(sha256sum $D/root.txt | cut -d' ' -f1)
grep -q " ima-ng sha256:$d $D/root.txt\$" /tmp/child.list || nsima_fail "digest of root.txt"
d=$(sha256sum $D/hello | cut -d' ' -f1)
grep -q " ima-ng sha256:$d $D/hello\$" /tmp/parent.list || nsima_fail "digest of hello"

# explain agrees with what happened (offline, on the child's policy)
ex=$(nsimactl policy explain /tmp/child.policy --event '{"func":"FILE_CHECK","mask":"MAY_READ","uid":1000}')
nsima_check_contains "$ex" "measure: no rule" "explain of a uid 1000 read"
ex=$(nsimactl policy explain /tmp/child.policy --event '{"func":"FILE_CHECK","mask":"MAY_READ","uid":0}')
nsima_check_contains "$ex" "/tmp/child.policy:2" "explain of a root read"

# a policy the kernel rejects is rejected whole, and the namespace keeps its previous policy
printf 'measure func=BPRM_CHECK\nmeasure func=FILE_CHECK mask=MAY_READ uid=0 euid=0\n' >/tmp/bad.policy
if out=$(nsimactl policy load --ns "$cns" /tmp/bad.policy 2>&1); then
	nsima_fail "a policy with uid= and euid= in one rule was accepted"
fi
nsima_check_contains "$out" "bad.policy:2:" "error position of the rejected policy"
nsima_check_eq "$(nsimactl policy show --ns "$cns")" "measure func=FILE_CHECK mask=^MAY_READ uid=0 " \
	"policy kept after a rejected load"
# Deleting the child: gone from the tree, its list archived exactly as it was, and nothing more
# measured into it; its cgroup's processes now belong to the parent namespace (their execs are
# measured there, their reads nowhere).
nsimactl log --ns "$cns" --format binary >/tmp/child.bin
nsimactl ns delete "$cns"
if nsimactl ns list | grep -q "^$cns	"; then nsima_fail "namespace $cns still listed after delete"; fi
if out=$(nsimactl log --ns "$cns" 2>&1); then nsima_fail "the list of deleted namespace $cns is still served"; fi
nsima_check_contains "$out" "no such namespace" "log of the deleted namespace"
[ -d /var/lib/nsima/archive ] || nsima_fail "list of namespace $cns not archived: no /var/lib/nsima/archive"
archived=$(find /var/lib/nsima/archive -path "*/$cns.*/binary_runtime_measurements")
[ -n "$archived" ] && [ "$(echo "$archived" | wc -l)" = 1 ] ||
	nsima_fail "list of namespace $cns not archived (once) under /var/lib/nsima/archive: '$archived'"
cmp /tmp/child.bin "$archived" || nsima_fail "archived list $archived differs from the child's list"
cp "$(command -v hello)" $D/hello_after
echo after-read >$D/after.txt
out=$(cg_exec $C $D/hello_after)
nsima_check_eq "$out" hello "exec in the former child after delete"
out=$(cg_exec $C $D/busybox cat $D/after.txt)
nsima_check_eq "$out" after-read "read in the former child after delete"
i=0
while nsimactl log --ns "$pns" >/tmp/parent.after && ! grep -q " $D/hello_after\$" /tmp/parent.after; do
	i=$((i + 1))
	[ $i -lt 100 ] || nsima_fail "exec in the former child's cgroup not measured in the parent's list"
	sleep 0.1
done
sleep 1 # the read after.txt was processed with the exec before it; give stragglers a moment
nsimactl log --ns "$pns" >/tmp/parent.after
nsima_check_eq "$(names /tmp/parent.after)" \
	"$D/busybox $D/hello $D/hello_after $D/hello_parent $(command -v run_as) boot_aggregate " \
	"entries of the parent's list after the child was deleted"
cmp /tmp/child.bin "$archived" || nsima_fail "the deleted namespace's archived list grew"
for f in /var/lib/nsima/ns/*/binary_runtime_measurements "$archived"; do
	if grep -q "after.txt" "$f"; then nsima_fail "$D/after.txt measured in $f after the delete"; fi
done
nsima_stop
echo "policy_hierarchy_test: OK"
