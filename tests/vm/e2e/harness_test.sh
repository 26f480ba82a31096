#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Self-test of the VM harness (tests/vm/vm-run), run inside the guest: mounts, /data ext4 with
# security.ima xattrs, overlayfs, the TPM, BPF-LSM, the nsima binaries and the helper library.
# --share, --disk-dir, exit status, timeout and boot-failure paths: tests/vm/harness_share_test.sh.
# vm-run-args: --tpm
set -eu
# shellcheck disable=SC1091 # guest path (tests/vm/guest/lib/lib.sh)
. /usr/share/nsima-test/lib.sh

log "kernel $(uname -r), uptime $(cut -d' ' -f1 /proc/uptime) s"
assert_eq 0 "$(id -u)" "runs as root"
assert_eq /tmp "$(pwd)" "cwd"
assert_eq 1 "${NSIMA_VM:-}" "NSIMA_VM"

# ---- mounts
mounts=$(cat /proc/mounts)
for m in "proc /proc proc" "securityfs /sys/kernel/security securityfs" "bpffs /sys/fs/bpf bpf" \
	"cgroup2 /sys/fs/cgroup cgroup2" "tmpfs /tmp tmpfs" "tmpfs /run tmpfs" "devtmpfs /dev devtmpfs" \
	"/dev/vda /data ext4"; do
	assert_contains "$mounts" "$m " "mount"
done
ctl=$(cat /sys/fs/cgroup/cgroup.subtree_control)
for c in memory pids cpu; do
	assert_contains " $ctl " " $c " "cgroup2 subtree_control"
done
mkdir /sys/fs/cgroup/harness
echo $$ >/sys/fs/cgroup/harness/cgroup.procs
assert_contains "$(cat /proc/self/cgroup)" "0::/harness" "cgroup2 move"
echo $$ >/sys/fs/cgroup/cgroup.procs
rmdir /sys/fs/cgroup/harness

# ---- BPF-LSM and kernel IMA are there
assert_contains ",$(cat /sys/kernel/security/lsm)," ",bpf," "BPF-LSM active"
[ -e /sys/kernel/security/ima/ascii_runtime_measurements ] || fail "no kernel IMA securityfs files"

# ---- /data: ext4 that keeps security.ima (and user.*) xattrs
echo hello >/data/f
setfattr -n security.ima -v 0x0404aabbccdd /data/f
setfattr -n user.nsima -v test /data/f
assert_contains "$(getfattr -n security.ima -e hex /data/f 2>&1)" "security.ima=0x0404aabbccdd" "security.ima on /data"
assert_contains "$(getfattr -d /data/f 2>&1)" 'user.nsima="test"' "user xattr on /data"
df_data=$(df -k /data | tail -n 1)
log "/data: $df_data"

# ---- overlayfs on /data (how containers see their rootfs)
assert_contains "$(cat /proc/filesystems)" "overlay" "overlay module loaded"
mkdir -p /data/ovl/lower /data/ovl/upper /data/ovl/work /data/ovl/merged
echo lower >/data/ovl/lower/l.txt
mount -t overlay overlay -o lowerdir=/data/ovl/lower,upperdir=/data/ovl/upper,workdir=/data/ovl/work /data/ovl/merged
assert_eq lower "$(cat /data/ovl/merged/l.txt)" "overlay read-through"
echo upper >/data/ovl/merged/u.txt
assert_eq upper "$(cat /data/ovl/upper/u.txt)" "overlay copy-up"
umount /data/ovl/merged

# ---- TPM (vm-run --tpm): the TIS device, PCRs in sysfs, the TCTI libraries for tpm2-tss
[ -c /dev/tpm0 ] || fail "/dev/tpm0 missing"
[ -c /dev/tpmrm0 ] || fail "/dev/tpmrm0 missing"
pcr10=$(cat /sys/class/tpm/tpm0/pcr-sha256/10)
log "PCR-10 (sha256): $pcr10"
assert_eq 64 "${#pcr10}" "sha256 PCR 10 length"
for l in libtss2-tctildr.so.0 libtss2-tcti-device.so.0 libtss2-tcti-swtpm.so.0 libtss2-tcti-mssim.so.0; do
	[ -e "/usr/lib/x86_64-linux-gnu/$l" ] || fail "TCTI library $l missing"
done
assert_contains "$(ldconfig -p)" "libtss2-tcti-device.so.0" "ld.so.cache knows the TCTI"

# ---- nsima binaries: on PATH, their libraries load, they run and exit
for b in nsimad nsimactl; do
	p=$(command -v "$b") || fail "$b not on PATH ($PATH)"
	libs=$(/lib64/ld-linux-x86-64.so.2 --list "$p" 2>&1) || fail "$b: libraries do not load: $libs"
	assert_not_contains "$libs" "not found" "$b libraries"
	rc=0
	timeout 10 "$b" --help >/dev/null 2>&1 </dev/null || rc=$?
	case $rc in 124 | 126 | 127) fail "$b --help: exit $rc" ;; esac
done

# ---- the helper library itself
rc=0
(fail "expected failure") 2>/dev/null || rc=$?
assert_eq 1 "$rc" "fail exits 1"
rc=0
(assert_eq a b) 2>/dev/null || rc=$?
assert_eq 1 "$rc" "assert_eq mismatch fails"
rc=0
(assert_contains "abc" "x") 2>/dev/null || rc=$?
assert_eq 1 "$rc" "assert_contains mismatch fails"
assert_rc 3 sh -c 'exit 3'
(sleep 0.3 && touch /tmp/ready) &
wait_for 5 test -e /tmp/ready
rc=0
(wait_for 1 false) 2>/dev/null || rc=$?
assert_eq 1 "$rc" "wait_for times out"

log "all harness checks passed"
