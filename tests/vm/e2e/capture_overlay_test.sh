#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Containers run on overlayfs: the capture path there gives one event per access (overlayfs'
# internal open of the real file is not reported), inode numbers as stat sees them on the
# overlay, paths relative to the process root (chroot), and verdicts that hold on the overlay
# inode for every version of the file, also after a copy-up.
. /usr/share/nsima-test/nsima.sh
set -eu

O=/data/ovl
M=/tmp/merged
mkdir -p $O/lower/bin $O/upper $O/work $M /sys/fs/cgroup/ctr
cp "$(command -v hello)" $O/lower/bin/hello
echo lower >$O/lower/file
cp /bin/busybox $O/lower/bin/busybox
ln -s busybox $O/lower/bin/cat
mount -t overlay overlay -o lowerdir=$O/lower,upperdir=$O/upper,workdir=$O/work $M ||
	nsima_fail "cannot mount overlayfs (module not loaded?)"
CG=/sys/fs/cgroup/ctr

nsima_start
nsimactl ns create --cgroup $CG --no-policy >/dev/null  # watch never creates one
nsimactl watch --cgroup $CG >/tmp/w.log 2>/tmp/w.err &
W=$!
nsima_wait_for /tmp/w.err "watching namespace"

out=$(cg_exec $CG /bin/cat $M/file)
nsima_check_eq "$out" lower "cat on overlay"
nsima_wait_for /tmp/w.log "\"hook\":\"file_open\".*\"path\":\"$M/file\""
sleep 0.5
n=$(nsima_count /tmp/w.log '"hook":"file_open"' "\"path\":\"$M/file\"")
nsima_check_eq "$n" 1 "file_open events for one open of an overlay file"
line=$(grep '"hook":"file_open"' /tmp/w.log | grep "\"path\":\"$M/file\"")
nsima_check_eq "$(nsima_json_field "$line" fsname)" overlay "fsname on overlay"
nsima_check_eq "$(nsima_json_field "$line" ino)" "$(stat -c %i $M/file)" "ino of the overlay file"
nsima_check_eq "$(nsima_json_field "$line" dev)" "$(stat -c %d $M/file)" "dev of the overlay file"

# exec inside a chroot on the overlay: the path is relative to the process root
out=$(cg_exec $CG /usr/sbin/chroot $M /bin/hello)
nsima_check_eq "$out" hello "exec in chroot on overlay"
nsima_wait_for /tmp/w.log '"hook":"bprm_check".*"path":"/bin/hello"'
line=$(grep '"hook":"bprm_check"' /tmp/w.log | grep '"path":"/bin/hello"')
nsima_check_eq "$(nsima_json_field "$line" ino)" "$(stat -c %i $M/bin/hello)" "ino of the exec in chroot"

# deny holds on the overlay inode, also after a copy-up with new content (every version)
nsimactl deny --cgroup $CG --root / $M/file
out=$(cg_exec $CG /bin/cat $M/file 2>&1) && nsima_fail "cat of a denied overlay file was allowed"
nsima_check_contains "$out" "Permission denied" "cat of a denied overlay file"
echo upper >>$M/file
out=$(cg_exec $CG /bin/cat $M/file 2>&1) && nsima_fail "the copy-up lifted the deny ($out)"
nsima_check_contains "$out" "Permission denied" "cat of a denied overlay file after copy-up"
nsimactl allow --cgroup $CG --root / $M/file
out=$(cg_exec $CG /bin/cat $M/file)
nsima_check_eq "$out" "lower
upper" "cat after copy-up"
[ -f $O/upper/file ] || nsima_fail "the write did not copy the file up"

kill $W
nsima_stop
umount $M
echo "capture_overlay_test: OK"
