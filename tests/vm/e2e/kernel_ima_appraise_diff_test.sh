#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# nsima's appraisal decision against kernel IMA's own, for the same files, key and rule, in the
# same guest: `appraise func=BPRM_CHECK appraise_type=imasig` with one RSA certificate (kernel
# 6.1 has no ECDSA, so EC is compared in appraise_sig_test only against evmctl-made signatures).
# First nsima decides in a namespace holding the certificate (kernel IMA has no appraise rule
# yet), then kernel IMA decides from the root cgroup with the certificate in its `_ima` keyring
# and the same rule (fsmagic=ext4 keeps it off the initramfs). Both tables must be equal.
# A second rule appraises reads of one file (fowner=4242) by its hash: read first, then run, it
# must still need a signature to run (kernel IMA keeps a status per func, so does nsima).
# vm-run-args: --append "ima_appraise=enforce" --add /usr/bin/evmctl --add /usr/bin/keyctl --add @SRC@/tests/fixtures/keys
. /usr/share/nsima-test/nsima.sh
set -eu

K=$(find / -xdev -path '*/tests/fixtures/keys' -type d 2>/dev/null | head -n 1)
[ -n "$K" ] || K=$(find /tmp /run -path '*/tests/fixtures/keys' -type d 2>/dev/null | head -n 1)
[ -f "$K/test-rsa2048.key" ] || nsima_fail "test keys not found (vm-run --add tests/fixtures/keys)"
HELLO=$(command -v hello)
sign() { evmctl ima_sign -a sha256 --key "$K/$2" "$1" >/dev/null 2>&1 || nsima_fail "evmctl ima_sign $1"; }
run() { # CGROUP FILE: exit status (126: execve refused)
	rc=0
	cg_exec "$1" "$2" >/dev/null 2>&1 || rc=$?
	echo $rc
}

T=/data/k
mkdir -p $T
for f in signed modified unsigned hashonly otherkey trunc badsize; do cp "$HELLO" $T/$f; done
printf 'u' >>$T/unsigned
printf 'h' >>$T/hashonly
sign $T/signed test-rsa2048.key
sign $T/modified test-rsa2048.key
printf 'X' | dd of=$T/modified bs=1 seek=200 conv=notrunc 2>/dev/null
evmctl ima_hash -a sha256 $T/hashonly >/dev/null 2>&1 || nsima_fail "evmctl ima_hash"
sign $T/otherkey test-rsa2048-b.key
sig=$(getfattr -e hex -n security.ima $T/signed 2>/dev/null | sed -n 's/^security.ima=0x//p')
[ -n "$sig" ] || nsima_fail "no security.ima on $T/signed"
setfattr -n security.ima -v 0x030204 $T/trunc
setfattr -n security.ima -v "0x${sig}00" $T/badsize
FILES="signed modified unsigned hashonly otherkey trunc badsize"
cp "$HELLO" $T/readexec
printf 'r' >>$T/readexec
chown 4242 $T/readexec
evmctl ima_hash -a sha256 $T/readexec >/dev/null 2>&1 || nsima_fail "evmctl ima_hash readexec"
cp /bin/busybox $T/busybox # signed: runs under both, and reads readexec
sign $T/busybox test-rsa2048.key

# 1. nsima (kernel IMA has no appraise rule yet)
printf 'appraise func=BPRM_CHECK appraise_type=imasig\nappraise func=FILE_CHECK mask=MAY_READ fowner=4242\n' >/tmp/nsima.policy
A=/sys/fs/cgroup/a
mkdir -p $A /tmp/keys
cp "$K/test-rsa2048.der" /tmp/keys/
nsima_start
a=$(nsimactl ns create --cgroup $A --policy /tmp/nsima.policy --keys /tmp/keys)
: >/tmp/nsima.table
for f in $FILES; do
	run $A $T/$f >/dev/null # first access: refused until appraised
	nsimactl audit --ns "$a" >/dev/null
	echo "$f $(run $A $T/$f)" >>/tmp/nsima.table
done
# read, then run: each first access of its kind is refused until appraised, then decided
run $A $T/busybox >/dev/null
nsimactl audit --ns "$a" >/dev/null
for i in 1 2; do
	rc=0
	cg_exec $A $T/busybox cat $T/readexec >/dev/null 2>&1 || rc=$?
	nsimactl audit --ns "$a" >/dev/null
done
echo "readexec-read $rc" >>/tmp/nsima.table
run $A $T/readexec >/dev/null
nsimactl audit --ns "$a" >/dev/null
echo "readexec $(run $A $T/readexec)" >>/tmp/nsima.table
nsima_stop

# 2. kernel IMA, from the root cgroup (no nsima namespace), same certificate and rule
ring=$(keyctl newring _ima @u) || nsima_fail "keyctl newring _ima"
keyctl padd asymmetric "" "$ring" <"$K/test-rsa2048.der" >/dev/null || nsima_fail "keyctl padd the certificate"
printf 'appraise func=BPRM_CHECK fsmagic=0xef53 appraise_type=imasig\nappraise func=FILE_CHECK mask=MAY_READ fowner=4242 fsmagic=0xef53\n' >/sys/kernel/security/ima/policy ||
	nsima_fail "loading kernel IMA's appraise policy"
: >/tmp/kernel.table
for f in $FILES; do
	rc=0
	$T/$f >/dev/null 2>&1 || rc=$?
	echo "$f $rc" >>/tmp/kernel.table
done
rc=0
$T/busybox cat $T/readexec >/dev/null 2>&1 || rc=$?
echo "readexec-read $rc" >>/tmp/kernel.table
rc=0
$T/readexec >/dev/null 2>&1 || rc=$?
echo "readexec $rc" >>/tmp/kernel.table

echo "file nsima kernel"
paste -d' ' /tmp/nsima.table /tmp/kernel.table | awk '{ print $1, $2, $4 }'
nsima_check_eq "$(cat /tmp/nsima.table)" "$(cat /tmp/kernel.table)" "nsima's decisions equal kernel IMA's"
grep -q "^signed 0$" /tmp/kernel.table || nsima_fail "kernel IMA refused the signed binary: the comparison proves nothing"
grep -q "^readexec-read 0$" /tmp/kernel.table || nsima_fail "kernel IMA refused reading a file its hash rule passes"
grep -q "^unsigned 126$" /tmp/kernel.table || nsima_fail "kernel IMA allowed the unsigned binary: its policy is not in force"
echo "kernel_ima_appraise_diff_test: OK"
