#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# nsima against kernel IMA with the ima-sig template: a file signed with evmctl ima_sign (its
# security.ima signature is in the sig field), a hash-only xattr (not a signature: empty sig
# field, trailing space), and an unsigned file get the same entries in both lists (only the PCR
# column differs). evmctl --verify-sig then checks the signature inside nsima's own list.
# vm-run-args: --tpm --append "ima_policy=tcb ima_template=ima-sig ima_hash=sha256" --add /usr/bin/evmctl --add @SRC@/tests/fixtures/keys
. /usr/share/nsima-test/nsima.sh
set -eu

# vm-run --add puts the fixture directory at its host path, wherever the tree is cloned
K=$(find / -xdev -path '*/tests/fixtures/keys' -type d 2>/dev/null | head -n 1)
[ -n "$K" ] || K=$(find /tmp /run -path '*/tests/fixtures/keys' -type d 2>/dev/null | head -n 1)
[ -f "$K/test-rsa2048.key" ] || nsima_fail "test key not found (vm-run --add tests/fixtures/keys)"
KLIST=/sys/kernel/security/ima/ascii_runtime_measurements
head -n 1 $KLIST | grep -q " ima-sig " || nsima_fail "kernel IMA is not using ima-sig"
W=/data/sig
mkdir -p $W /tmp/prep
# Files are signed on tmpfs (which tcb does not measure) and copied with their security.ima:
# evmctl reading a file on /data as root would make kernel IMA measure it before it is signed.
echo signed >/tmp/prep/signed.txt
echo hashed >/tmp/prep/hashed.txt
echo plain >/tmp/prep/plain.txt
cp "$(command -v hello)" /tmp/prep/hello
evmctl ima_sign -a sha256 --key "$K/test-rsa2048.key" /tmp/prep/signed.txt >/dev/null 2>&1 || nsima_fail "evmctl ima_sign"
evmctl ima_sign -a sha256 --key "$K/test-rsa2048.key" /tmp/prep/hello >/dev/null 2>&1 || nsima_fail "evmctl ima_sign hello"
evmctl ima_hash -a sha256 /tmp/prep/hashed.txt >/dev/null 2>&1 || nsima_fail "evmctl ima_hash"
for f in signed.txt hashed.txt plain.txt hello; do
	cp -p /tmp/prep/$f $W/$f
	if getfattr --only-values -n security.ima /tmp/prep/$f >/tmp/prep/$f.ima 2>/dev/null; then
		setfattr -n security.ima -v "0s$(base64 -w 0 /tmp/prep/$f.ima)" $W/$f
	fi
done

nsima_start --builtin tcb --template ima-sig
cat $W/signed.txt $W/hashed.txt $W/plain.txt >/dev/null
$W/hello >/dev/null
sleep 1
nsimactl pcr --ns host >/dev/null
nsimactl log --ns host >/tmp/nsima.ascii
nsimactl log --ns host --format binary >/tmp/nsima.bin
cp $KLIST /tmp/kernel.ascii
nsima_stop

for f in signed.txt hashed.txt plain.txt hello; do
	kl=$(grep " $W/$f " /tmp/kernel.ascii || grep " $W/$f\$" /tmp/kernel.ascii)
	nl=$(grep " $W/$f " /tmp/nsima.ascii || grep " $W/$f\$" /tmp/nsima.ascii)
	echo "kernel: $kl"
	echo "nsima:  $nl"
	nsima_check_eq "$(echo "$nl" | cut -d' ' -f2-)" "$(echo "$kl" | cut -d' ' -f2-)" "ima-sig entry of $W/$f"
done
grep " $W/signed.txt 030204" /tmp/nsima.ascii >/dev/null || nsima_fail "no v2 signature in the sig field of signed.txt"
grep -q " $W/hashed.txt \$" /tmp/nsima.ascii || nsima_fail "hash-only xattr must leave the sig field empty (trailing space)"
out=$(evmctl -v ima_measurement --verify-sig --key "$K/test-rsa2048.der" /tmp/nsima.bin 2>&1 || true)
printf '%s\n' "$out" | grep -E "signed.txt|hello" | head -n 4
printf '%s\n' "$out" | grep -q "verification failed" && nsima_fail "evmctl --verify-sig: a signature in nsima's list failed"
n=$(printf '%s\n' "$out" | grep -c "verification is OK" || true)
[ "$n" -ge 2 ] || nsima_fail "evmctl --verify-sig verified $n signatures, expected signed.txt and hello"
echo "kernel_ima_sig_diff_test: OK"
