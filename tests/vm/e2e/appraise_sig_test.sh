#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Appraisal per namespace, decided in the kernel: evmctl-signed binaries (RSA and EC) under
# `appraise func=BPRM_CHECK appraise_type=imasig`, each namespace with its own keys.
#  - a pre-appraised rootfs (ns create --rootfs) runs its signed binary on the first exec with no
#    event reaching nsimad, and its unsigned one is refused the same way; a file added afterwards
#    is refused on its first exec (first-access rule), appraised, then decided by its content;
#  - one byte changed, unsigned, a sibling's key, a key only the child holds (the parent enforces),
#    and malformed security.ima values (truncated, wrong size, unknown algorithm, 60 KB): EACCES,
#    with the reason in the namespace's audit log, nsimad serving on;
#  - log mode: runs, and is logged; revoke: a binary already allowed is denied at once.
# vm-run-args: --add /usr/bin/evmctl --add @SRC@/tests/fixtures/keys
. /usr/share/nsima-test/nsima.sh
set -eu

K=$(find / -xdev -path '*/tests/fixtures/keys' -type d 2>/dev/null | head -n 1)
[ -n "$K" ] || K=$(find /tmp /run -path '*/tests/fixtures/keys' -type d 2>/dev/null | head -n 1)
[ -f "$K/test-ec256.key" ] || nsima_fail "test keys not found (vm-run --add tests/fixtures/keys)"
HELLO=$(command -v hello)

sign() { # FILE KEY
	evmctl ima_sign -a sha256 --key "$K/$2" "$1" >/dev/null 2>&1 || nsima_fail "evmctl ima_sign $1 with $2"
}
keys_dir() { # NAME CERT...: a directory holding these certificates
	d=/tmp/keys-$1
	shift
	mkdir -p "$d"
	for c in "$@"; do cp "$K/$c" "$d/"; done
	echo "$d"
}
run() { # CGROUP FILE: prints the exit status of FILE run in CGROUP (126: execve refused)
	rc=0
	cg_exec "$1" "$2" >/tmp/run.out 2>&1 || rc=$?
	echo $rc
}
# the first exec of a file nobody decided yet is refused (enforce: first-access rule); nsimad
# appraises it meanwhile; the barrier (audit) waits for that; then the content decides.
decided() { # CGROUP FILE NS EXPECTED_FIRST: prints the status of the second exec
	first=$(run "$1" "$2")
	[ "$first" = "$4" ] || nsima_fail "$2 in $3: first exec gave $first, expected $4"
	nsimactl audit --ns "$3" >/dev/null
	run "$1" "$2"
}
audit_has() { # NS PATH TEXT WHAT
	line=$(nsimactl audit --ns "$1" | grep "\"path\":\"$2\"" | tail -n 1)
	[ -n "$line" ] || nsima_fail "$4: no audit line for $2 in namespace $1"
	nsima_check_contains "$line" "$3" "$4"
}

T=/data/t
P=/data/pre
mkdir -p $T $P
for f in rsa mod plain rsab ec logged trunc size algo read; do cp "$HELLO" $T/$f; done
printf 'y' >>$T/read
cp "$HELLO" $P/signed
cp "$HELLO" $P/unsigned
printf 'x' >>$T/plain # a different file content than the signed ones
sign $T/rsa test-rsa2048.key
sign $T/mod test-rsa2048.key
printf 'X' | dd of=$T/mod bs=1 seek=200 conv=notrunc 2>/dev/null # one byte changed, signature kept
sign $T/rsab test-rsa2048-b.key
sign $T/ec test-ec256.key
sign $P/signed test-rsa2048.key
sig=$(getfattr -e hex -n security.ima $T/rsa 2>/dev/null | sed -n 's/^security.ima=0x//p')
[ -n "$sig" ] || nsima_fail "no security.ima on $T/rsa after evmctl ima_sign"
setfattr -n security.ima -v 0x030204 $T/trunc                       # header cut short
setfattr -n security.ima -v "0x${sig}00" $T/size                    # one byte past sig_size
setfattr -n security.ima -v "0x0302ff000000000100$(printf '00%.0s' $(seq 256))" $T/algo # v2, hash algorithm 255
# 60,000 bytes of signature (tmpfs keeps values up to XATTR_SIZE_MAX; ext4 here only one block)
H=/tmp/huge
cp "$HELLO" $H
setfattr -n security.ima -v "0x03020400000000ea60$(printf '41%.0s' $(seq 60000))" $H

cat >/tmp/imasig.policy <<'POL'
appraise func=BPRM_CHECK appraise_type=imasig
POL
A=/sys/fs/cgroup/a
B=/sys/fs/cgroup/b
C=$A/c
L=/sys/fs/cgroup/l
mkdir -p $A $B $C $L

nsima_start
a=$(nsimactl ns create --cgroup $A --policy /tmp/imasig.policy --keys "$(keys_dir a test-rsa2048.der)" --rootfs $P)
b=$(nsimactl ns create --cgroup $B --policy /tmp/imasig.policy --keys "$(keys_dir b test-rsa2048-b.der)")
c=$(nsimactl ns create --cgroup $C --policy /tmp/imasig.policy --keys "$(keys_dir c test-ec256.der)")
l=$(nsimactl ns create --cgroup $L --policy /tmp/imasig.policy --appraise log)
nsimactl keys list --ns "$a" | grep -q "rsa-2048" || nsima_fail "keys list of $a does not show its RSA key"
nsimactl keys list --ns "$c" | grep -q "ec-prime256v1" || nsima_fail "keys list of $c does not show its EC key"

# 1. the pre-appraised rootfs: decided in the kernel, no event on the first exec
before=$(nsima_stat emitted)
nsima_check_eq "$(run $A $P/signed)" 0 "pre-appraised signed binary, first exec"
nsima_check_eq "$(cat /tmp/run.out)" hello "its output"
nsima_check_eq "$(run $A $P/unsigned)" 126 "pre-appraised unsigned binary, first exec"
nsima_check_eq "$(nsima_stat emitted)" "$before" "events reaching nsimad for two pre-appraised execs"
audit_has "$a" /unsigned '"status":"IMA-signature-required"' "unsigned file of the rootfs"
# a file added afterwards: refused until appraised, then decided by its content
cp "$HELLO" $P/added
sign $P/added test-rsa2048.key
nsima_check_eq "$(decided $A $P/added "$a" 126)" 0 "file added to the rootfs after pre-appraisal"

# 2. signed with the namespace's key: runs (after its first, undecided exec)
nsima_check_eq "$(decided $A $T/rsa "$a" 126)" 0 "RSA-signed binary in $a"
# 3. one byte changed: the signature no longer matches
nsima_check_eq "$(decided $A $T/mod "$a" 126)" 126 "modified binary in $a"
audit_has "$a" $T/mod '"status":"invalid-signature"' "modified binary"
audit_has "$a" $T/mod '"result":"deny"' "modified binary"
# 4. unsigned under imasig
nsima_check_eq "$(decided $A $T/plain "$a" 126)" 126 "unsigned binary in $a"
audit_has "$a" $T/plain '"status":"IMA-signature-required"' "unsigned binary"
# 4b. a file only read so far (reads are not appraised: judged for reading only) is still a
#     first access when it is executed: refused, appraised, refused by its content
cp /bin/busybox $T/busybox
sign $T/busybox test-rsa2048.key
nsima_check_eq "$(decided $A $T/busybox "$a" 126)" 0 "signed busybox in $a"
cg_exec $A $T/busybox cat $T/read >/dev/null || nsima_fail "reading $T/read in $a was refused"
nsimactl audit --ns "$a" >/dev/null
nsima_check_eq "$(decided $A $T/read "$a" 126)" 126 "unsigned binary that was read before, in $a"
audit_has "$a" $T/read '"status":"IMA-signature-required"' "unsigned binary read before its exec"
# 5. signed by a key only the sibling holds: denied here, runs there
nsima_check_eq "$(decided $A $T/rsab "$a" 126)" 126 "binary signed with $b's key, in $a"
audit_has "$a" $T/rsab '"status":"unknown-key"' "sibling's key"
nsima_check_eq "$(decided $B $T/rsab "$b" 126)" 0 "the same binary in $b"
# 6. the child holds an EC key its enforcing parent does not: denied, both logs say why
nsima_check_eq "$(decided $C $T/ec "$c" 126)" 126 "EC-signed binary in child $c of $a"
audit_has "$a" $T/ec '"status":"unknown-key"' "parent's audit of the child's access"
audit_has "$c" $T/ec "\"denied_by\":\"$a\"" "child's audit names the parent that denied"
nsima_check_eq "$(decided $C $T/rsa "$c" 126)" 126 "RSA-signed binary in $c (its own EC key does not sign it)"
# 7. malformed security.ima values: denied with a reason, nsimad serving on
nsima_check_eq "$(decided $A $T/trunc "$a" 126)" 126 "truncated security.ima"
audit_has "$a" $T/trunc '"reason":"' "truncated security.ima"
audit_has "$a" $T/trunc '"malformed":"truncated"' "truncated security.ima"
nsima_check_eq "$(decided $A $T/size "$a" 126)" 126 "security.ima longer than its sig_size"
audit_has "$a" $T/size '"malformed":"size-mismatch"' "wrong-size security.ima"
nsima_check_eq "$(decided $A $T/algo "$a" 126)" 126 "security.ima with hash algorithm 255"
audit_has "$a" $T/algo '"malformed":"unknown-algorithm"' "unknown-algorithm security.ima"
nsima_check_eq "$(decided $A $H "$a" 126)" 126 "60 KB security.ima"
audit_has "$a" $H '"cause":"invalid-signature"' "60 KB security.ima"
nsimactl status >/dev/null || nsima_fail "nsimad stopped serving after malformed values"
# 8. log mode: the same unsigned binary runs on its first exec, and is logged
nsima_check_eq "$(run $L $T/plain)" 0 "unsigned binary in log-mode namespace $l"
nsimactl audit --ns "$l" >/dev/null
audit_has "$l" $T/plain '"result":"log"' "log mode"
# 9. revoke: the RSA-signed binary allowed in 2. is denied at once, whatever signs it
digest=$(sha256sum $T/rsa | cut -d' ' -f1)
out=$(nsimactl digests revoke --ns "$a" "$digest")
# the same content was allowed at three paths of $a (rsa, and the rootfs' signed and added)
nsima_check_contains "$out" "3 file(s)" "revoke denies every file already allowed with that content"
nsima_check_eq "$(run $A $T/rsa)" 126 "revoked binary in $a, right after the revoke"
nsima_check_eq "$(run $A $P/signed)" 126 "pre-appraised copy of the revoked content in $a"
nsima_check_eq "$(run $B $T/rsab)" 0 "the same content in the sibling $b (not below $a) still runs"

st=$(nsima_status)
nsima_check_contains "$st" '"appraise":{' "status has appraisal counters"
nsima_stop
echo "appraise_sig_test: OK"
