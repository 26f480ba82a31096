#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Trust without security.ima: digest lists per namespace.
#  - a binary listed in an unsigned sha256sum manifest passes `appraise func=BPRM_CHECK`, an
#    unlisted one is refused (missing-hash);
#  - under appraise_type=imasig an unsigned manifest is not enough, a manifest signed with
#    `openssl dgst -sha256 -sign` by a key of the namespace is (as good as a file signature);
#    a manifest changed after signing is refused at load;
#  - `digests revoke` in a parent denies, at once, the same content in a child that lists and
#    signs it; `digests from-rootfs` prints what sha256sum prints.
# vm-run-args: --add /usr/bin/evmctl --add /usr/bin/openssl --add @SRC@/tests/fixtures/keys
. /usr/share/nsima-test/nsima.sh
set -eu

K=$(find / -xdev -path '*/tests/fixtures/keys' -type d 2>/dev/null | head -n 1)
[ -n "$K" ] || K=$(find /tmp /run -path '*/tests/fixtures/keys' -type d 2>/dev/null | head -n 1)
[ -f "$K/test-rsa2048.key" ] || nsima_fail "test keys not found (vm-run --add tests/fixtures/keys)"
HELLO=$(command -v hello)
run() { # CGROUP FILE: the exit status of FILE run in CGROUP (126: execve refused)
	rc=0
	cg_exec "$1" "$2" >/tmp/run.out 2>&1 || rc=$?
	echo $rc
}
decided() { # CGROUP FILE NS [FIRST]: the first exec gives FIRST (default 126: refused until
	# appraised; 0 where the kernel finds the content in the namespace's trusted digests, see
	# appraise_kernel_trust_test.sh), then the content decides
	first=$(run "$1" "$2")
	[ "$first" = "${4:-126}" ] || nsima_fail "$2 in $3: first exec gave $first, expected ${4:-126}"
	nsimactl audit --ns "$3" >/dev/null
	run "$1" "$2"
}
audit_has() { # NS PATH TEXT WHAT
	line=$(nsimactl audit --ns "$1" | grep "\"path\":\"$2\"" | tail -n 1)
	[ -n "$line" ] || nsima_fail "$4: no audit line for $2 in namespace $1"
	nsima_check_contains "$line" "$3" "$4"
}

D=/data/d
mkdir -p $D
for f in listed unlisted; do cp "$HELLO" $D/$f; done
printf 'a' >>$D/listed
printf 'b' >>$D/unlisted
cp $D/listed $D/signed-copy
evmctl ima_sign -a sha256 --key "$K/test-rsa2048.key" $D/signed-copy >/dev/null 2>&1 || nsima_fail "evmctl ima_sign"
(cd $D && sha256sum listed) | sed "s| listed| $D/listed|" >/tmp/list.sha256
cp /tmp/list.sha256 /tmp/signed.sha256
openssl dgst -sha256 -sign "$K/test-rsa2048.key" -out /tmp/signed.sha256.sig /tmp/signed.sha256 ||
	nsima_fail "openssl dgst -sign"
cp /tmp/signed.sha256 /tmp/tampered.sha256
cp /tmp/signed.sha256.sig /tmp/tampered.sha256.sig
printf '%s  /data/d/unlisted\n' "$(sha256sum $D/unlisted | cut -d' ' -f1)" >>/tmp/tampered.sha256

printf 'appraise func=BPRM_CHECK\n' >/tmp/hash.policy
printf 'appraise func=BPRM_CHECK appraise_type=imasig\n' >/tmp/imasig.policy
mkdir -p /tmp/keys && cp "$K/test-rsa2048.der" /tmp/keys/
M=/sys/fs/cgroup/m
S=/sys/fs/cgroup/s
U=/sys/fs/cgroup/u
C=$M/c
mkdir -p $M $S $U $C

nsima_start
m=$(nsimactl ns create --cgroup $M --policy /tmp/hash.policy)
s=$(nsimactl ns create --cgroup $S --policy /tmp/imasig.policy --keys /tmp/keys)
u=$(nsimactl ns create --cgroup $U --policy /tmp/imasig.policy --keys /tmp/keys)
c=$(nsimactl ns create --cgroup $C --policy /tmp/imasig.policy --keys /tmp/keys)

# 1. a hash rule: listed passes, unlisted is refused
out=$(nsimactl digests load --ns "$m" /tmp/list.sha256)
nsima_check_contains "$out" "1 digests added" "unsigned manifest loaded"
nsima_check_contains "$out" "unsigned" "an unsigned manifest says so"
nsima_check_eq "$(decided $M $D/listed "$m" 0)" 0 "listed binary under a hash rule"
nsima_check_eq "$(decided $M $D/unlisted "$m")" 126 "unlisted binary under a hash rule"
audit_has "$m" $D/unlisted '"status":"missing-hash"' "unlisted binary"

# 2. imasig: an unsigned manifest does not satisfy it, a signed one does
nsimactl digests load --ns "$u" /tmp/list.sha256 >/dev/null
nsima_check_eq "$(decided $U $D/listed "$u")" 126 "binary in an unsigned manifest under imasig"
audit_has "$u" $D/listed '"status":"IMA-signature-required"' "unsigned manifest under imasig"
out=$(nsimactl digests load --ns "$s" /tmp/signed.sha256)
nsima_check_contains "$out" "signed by key" "signed manifest: its signer"
nsima_check_eq "$(decided $S $D/listed "$s" 0)" 0 "binary in a signed manifest under imasig"
# a manifest changed after signing is refused, nothing of it loaded
rc=0
out=$(nsimactl digests load --ns "$s" /tmp/tampered.sha256 2>&1) || rc=$?
nsima_check_eq "$rc" 1 "loading a tampered manifest fails"
nsima_check_contains "$out" "signature" "the tampered manifest's error"
nsima_check_eq "$(decided $S $D/unlisted "$s")" 126 "a digest only the tampered manifest lists"

# 3. revoke in the parent: the child lists (signed manifest) and signs the same content; it ran,
#    and is denied at once after the revoke, whatever signs or lists it
nsimactl digests load --ns "$c" /tmp/signed.sha256 >/dev/null
nsimactl digests load --ns "$m" /tmp/list.sha256 >/dev/null
nsima_check_eq "$(decided $C $D/signed-copy "$c" 0)" 0 "signed and listed binary in child $c of $m"
out=$(nsimactl digests revoke --ns "$m" "$(sha256sum $D/listed | cut -d' ' -f1)")
nsima_check_contains "$out" "revoked" "digests revoke"
nsima_check_eq "$(run $C $D/signed-copy)" 126 "revoked in parent $m: the child's signed copy"
nsima_check_eq "$(run $M $D/listed)" 126 "revoked in $m: its own listed binary"
nsima_check_eq "$(run $S $D/listed)" 0 "the sibling $s is not below $m: still runs"

# 4. from-rootfs prints what sha256sum prints, with paths as the container sees them
mkdir -p /tmp/rootfs/usr/bin
cp $D/listed /tmp/rootfs/usr/bin/tool
got=$(nsimactl digests from-rootfs /tmp/rootfs)
want="$(sha256sum /tmp/rootfs/usr/bin/tool | cut -d' ' -f1)  /usr/bin/tool"
nsima_check_eq "$got" "$want" "digests from-rootfs"
nsima_stop
echo "appraise_digests_test: OK"
