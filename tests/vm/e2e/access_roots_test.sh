#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The root cache and file accessor (daemon/access) on real events from the 6.1 kernel's hooks:
# tests/unit/access/access_probe reads `nsimactl watch` lines, captures each event's root at
# once and measures its file. Two chroots in one mount namespace, each with its own /bin/f at the
# same path, and two "containers" one after the other (new mount namespace, tmpfs root, chroot;
# the second may get the first's mnt-ns inode and tmpfs dev again): each short-lived `cat` is
# measured through its own root (lent by its long-lived shell) and checked by digest, never only
# by path. Also proves what the cache relies on: the event's start_boottime is /proc/PID/stat
# field 22 in clock ticks, root_dev/root_ino are stat of /proc/PID/root, mnt_ns is
# /proc/PID/ns/mnt.
# vm-run-args: --add @BUILD@/tests/unit/access/access_probe
. /usr/share/nsima-test/nsima.sh
set -eu

D=/data/access
BB=
for p in /bin/busybox /usr/bin/busybox /usr/local/bin/busybox; do [ -x $p ] && BB=$p && break; done
[ -n "$BB" ] || nsima_fail "no busybox binary"
for r in a b c; do
	mkdir -p $D/$r/bin
	cp "$BB" $D/$r/bin/busybox
done
echo "chroot A's file" >$D/a/bin/f
echo "chroot B's own file, at the same path" >$D/b/bin/f
mkdir -p $D/ctr /sys/fs/cgroup/a
A=/sys/fs/cgroup/a
sum() { sha256sum "$1" | cut -d' ' -f1; }
probe_wait() { # FIXED-STRING: a line of access_probe's output within 20 s
	i=0
	while ! grep -qF -- "$1" /tmp/probe.out; do
		i=$((i + 1))
		if [ $i -gt 200 ]; then
			cat /tmp/probe.out /tmp/probe.err >&2
			nsima_fail "access_probe printed no line with '$1' within 20 s"
		fi
		sleep 0.1
	done
}

# --add copies it to its build-tree path, which this script does not know (a clone in /tmp:
# the guest keeps it on its /tmp tmpfs, hence the three places).
PROBE=$(find / /tmp /run -xdev -name access_probe -type f 2>/dev/null | head -1)
[ -x "$PROBE" ] || nsima_fail "access_probe not in the guest (vm-run-args --add)"

nsima_start
nsimactl ns create --cgroup $A --no-policy >/dev/null # watch never creates a namespace
mkfifo /tmp/ev.fifo
"$PROBE" </tmp/ev.fifo >/tmp/probe.out 2>/tmp/probe.err &
P=$!
nsimactl watch --cgroup $A >/tmp/ev.fifo 2>/tmp/w.err &
W=$!
nsima_wait_for /tmp/w.err "watching namespace"

# 1. two chroots, one mount namespace: the shell lives on (it lends the root), cat does not
cg_exec $A "$BB" chroot $D/a /bin/busybox sh -c '/bin/busybox cat /bin/f >/cat.out; exec /bin/busybox sleep 120' &
CA=$!
cg_exec $A "$BB" chroot $D/b /bin/busybox sh -c '/bin/busybox cat /bin/f >/cat.out; exec /bin/busybox sleep 120' &
CB=$!
SA=$(sum $D/a/bin/f) SB=$(sum $D/b/bin/f)
probe_wait " /bin/f ok $SA"
probe_wait " /bin/f ok $SB"

# What the root cache checks a lender by, against /proc of the live shell (now sleep, same pid).
check_lender() { # PID ROOT_DIR WHAT
	pid=$1
	ticks=$(cut -d' ' -f22 /proc/$pid/stat)
	ev=$(grep "\"tgid\":$pid," /tmp/ev.copy | grep '"hook":"bprm_check"' | tail -1)
	[ -n "$ev" ] || nsima_fail "$3: no bprm_check event of pid $pid"
	nsima_check_eq "$(($(nsima_json_field "$ev" start_boottime) / 10000000))" "$ticks" \
		"$3: start_boottime in ticks = /proc/$pid/stat field 22"
	nsima_check_eq "$(nsima_json_field "$ev" root_ino)" "$(stat -Lc %i "$2")" "$3: root_ino"
	nsima_check_eq "$(nsima_json_field "$ev" root_dev)" "$(stat -Lc %d /proc/$pid/root)" "$3: root_dev"
	nsima_check_eq "$(nsima_json_field "$ev" root_ino)" "$(stat -Lc %i /proc/$pid/root)" \
		"$3: root_ino = /proc/$pid/root"
	nsima_check_eq "$(nsima_json_field "$ev" mnt_ns)" "$(stat -Lc %i /proc/$pid/ns/mnt)" \
		"$3: mnt_ns = /proc/$pid/ns/mnt"
}
# A second watcher keeps a copy of the raw events for the checks above.
nsimactl watch --cgroup $A >/tmp/ev.copy 2>/tmp/w2.err &
W2=$!
nsima_wait_for /tmp/w2.err "watching namespace"
# (a chroot of its own: a busybox inode not seen before, so its exec is not silenced as a repeat)
cg_exec $A "$BB" chroot $D/c /bin/busybox sh -c 'exec /bin/busybox sleep 120' &
CC=$!
nsima_wait_for /tmp/ev.copy "\"tgid\":$CC,.*\"hook\":\"bprm_check\"|\"hook\":\"bprm_check\".*\"tgid\":$CC,"
sleep 0.5
check_lender $CC $D/c "chroot lender"

# 2. containers, one after the other, at the same mount point with other content
ctr() { # CONTENT
	cg_exec $A "$BB" unshare -m "$BB" sh -c "mount --make-rprivate / && mount -t tmpfs t $D/ctr && cp $BB $D/ctr/busybox && echo '$1' >$D/ctr/f && exec chroot $D/ctr /busybox sh -c '/busybox cat /f >/cat.out; exec /busybox sleep 120'" &
}
ctr "first container"
C1=$!
S1=$(printf 'first container\n' | sha256sum | cut -d' ' -f1)
probe_wait " /f ok $S1"
kill $C1
wait $C1 2>/dev/null || true
ctr "second container, other bytes"
C2=$!
S2=$(printf 'second container, other bytes\n' | sha256sum | cut -d' ' -f1)
probe_wait " /f ok $S2"
ns1=$(grep " /f ok $S1" /tmp/probe.out | sed -n 's/.*mnt_ns=\([0-9]*\).*/\1/p' | head -1)
ns2=$(grep " /f ok $S2" /tmp/probe.out | sed -n 's/.*mnt_ns=\([0-9]*\).*/\1/p' | head -1)
echo "container mount namespaces: $ns1 then $ns2"
check_lender $C2 /proc/$C2/root "container lender"

# 3. a container on overlayfs (how runtimes lay out a rootfs): lower has the image, upper is
# empty; its file is measured through the overlay root
mkdir -p $D/lower $D/upper $D/work $D/ovl
cp "$BB" $D/lower/busybox
echo "overlay image file" >$D/lower/f
SO=$(sum $D/lower/f)
cg_exec $A "$BB" unshare -m "$BB" sh -c "mount --make-rprivate / && mount -t overlay o -o lowerdir=$D/lower,upperdir=$D/upper,workdir=$D/work $D/ovl && exec chroot $D/ovl /busybox sh -c '/busybox cat /f >/cat.out; exec /busybox sleep 120'" &
C3=$!
probe_wait " /f ok $SO"

# 4. a process that exits at once, in a root no other process lends: measured either through
# its root (if it is still alive when its event is read) or by file handle (ext4), never lost
mkdir -p $D/d/bin
cp "$BB" $D/d/bin/busybox
echo "short-lived process's file" >$D/d/bin/g
SG=$(sum $D/d/bin/g)
cg_exec $A "$BB" chroot $D/d /bin/busybox cat /bin/g >/dev/null
probe_wait " /bin/g ok $SG"

kill $W $W2
wait $P
cat /tmp/probe.out
# None of the files above was read through another process's root (the identity check would
# report it). Other events may be mismatches for good reasons (e.g. the overlay's mount point
# directory, opened before the overlay covered it).
n=$(grep -cE " (/bin/f|/f|/bin/g) mismatch " /tmp/probe.out || true)
nsima_check_eq "$n" 0 "events measured through a wrong root"
grep -q "^stats captured=" /tmp/probe.out || nsima_fail "access_probe did not finish"
kill $CA $CB $CC $C2 $C3 2>/dev/null || true
echo "access_roots: ok"
