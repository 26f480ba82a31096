#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# A path is measured in the root of the very process that opened it. Two chroots in one mount
# namespace, each with its own /app at the same path (on tmpfs, which has no file handles: only
# the right root finds the file), short-lived containers (unshare -m) that come and go with
# different files at one path, and chroots on ext4 whose process exits at once (opened by file
# handle): every entry's digest is the digest of the file that process saw (checked against
# sha256sum of each file), never another root's file.
. /usr/share/nsima-test/nsima.sh
set -eu
set -o pipefail

CG=/sys/fs/cgroup/roots
mkdir -p $CG
mkroot() { # DIR CONTENT
	mkdir -p "$1/bin"
	cp /bin/busybox "$1/bin/busybox"
	for a in cat sh sleep; do ln -sf busybox "$1/bin/$a"; done
	echo "$2" >"$1/app"
}
mkroot /data/r1 "first root"
mkroot /data/r2 "second root, other content"
mkdir -p /run/roots
mount -t tmpfs tmpfs /run/roots
mkroot /run/roots/t1 "tmpfs root one"
mkroot /run/roots/t2 "tmpfs root two, other content"
cat >/tmp/p.policy <<'POL'
measure func=FILE_CHECK mask=^MAY_READ
POL

nsima_start
ns=$(nsimactl ns create --cgroup $CG --policy /tmp/p.policy)

# 1. chroots in one mount namespace on tmpfs, alive at the same time (each root has a lender
#    while the other's event is read)
pids=
for r in t1 t2; do
	cg_exec $CG /usr/sbin/chroot /run/roots/$r /bin/sh -c "sleep 0.3; cat /app; sleep 1" >/dev/null &
	pids="$pids $!"
done
wait $pids
# 2. chroots on ext4 whose cat exits at once (often before its event is read)
cg_exec $CG /usr/sbin/chroot /data/r1 /bin/cat /app >/dev/null
cg_exec $CG /usr/sbin/chroot /data/r2 /bin/cat /app >/dev/null
# 3. containers: a private mount namespace each, the same path showing another file each time
i=0
while [ $i -lt 6 ]; do
	mkdir -p /data/c$i
	echo "container $i" >/data/c$i/f
	# each container lives a moment after its read, then its mount namespace is gone for good
	cg_exec $CG /bin/sh -c "unshare -m /bin/sh -c 'mount --bind /data/c$i /mnt && cat /mnt/f >/dev/null && sleep 0.5'"
	i=$((i + 1))
done

nsimactl log --ns "$ns" >/tmp/list
expect() { # PATH FILE: an entry for PATH with the digest of FILE
	d=$(sha256sum "$2" | cut -d' ' -f1)
	grep -q " sha256:$d $1\$" /tmp/list || nsima_fail "no entry for $1 with the digest of $2 ($d): $(grep " $1\$" /tmp/list || echo none)"
}
expect /app /run/roots/t1/app
expect /app /run/roots/t2/app
expect /app /data/r1/app
expect /app /data/r2/app
i=0
while [ $i -lt 6 ]; do
	expect /mnt/f /data/c$i/f
	i=$((i + 1))
done
n=$(awk '/nsima:unreadable/ { c++ } END { print c + 0 }' /tmp/list)
nsima_check_eq "$n" 0 "unreadable-file violations"
nsima_stop
umount /run/roots
echo "measure_roots_test: OK"
