#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# A security.ima signature written at run time is appraised when it is written
# (bpf/setxattr.bpf.c, lsm.s/inode_post_setxattr), so the file is decided before its first exec:
#  - `evmctl ima_sign` run inside an enforcing namespace (`appraise func=BPRM_CHECK
#    appraise_type=imasig`) with the namespace's key: the first exec runs, with no exec event
#    and no first-access deny (the verdict came from the setxattr path: counters bpf.setxattr,
#    appraise.setxattr_passed); signed by a key the namespace does not hold: refused
#    (appraise.setxattr_failed, audit says unknown-key);
#  - per-class denies: a binary refused at exec (by the setxattr path and by the first-access
#    path alike) can still be read with cat: the policy appraises BPRM_CHECK only.
# vm-run-args: --add /usr/bin/evmctl --add @SRC@/tests/fixtures/keys
. /usr/share/nsima-test/nsima.sh
set -eu

K=$(find / -xdev -path '*/tests/fixtures/keys' -type d 2>/dev/null | head -n 1)
[ -n "$K" ] || K=$(find /tmp /run -path '*/tests/fixtures/keys' -type d 2>/dev/null | head -n 1)
[ -f "$K/test-rsa2048.key" ] || nsima_fail "test keys not found (vm-run --add tests/fixtures/keys)"
HELLO=$(command -v hello)
EVMCTL=$(command -v evmctl)
run() { # CGROUP FILE [ARGS]: prints the exit status of FILE run in CGROUP (126: execve refused)
	rc=0
	cg_exec "$@" >/tmp/run.out 2>&1 || rc=$?
	echo $rc
}
appr() { # KEY: a counter of the "appraise" object of nsimactl status
	nsima_status | sed -n "s/.*\"appraise\":{[^}]*\"$1\":\([0-9]*\).*/\1/p"
}
wait_appr() { # KEY VALUE: until the counter reaches VALUE (nsimad's verdict is written)
	i=0
	while [ "$(appr "$1")" -lt "$2" ]; do
		i=$((i + 1))
		[ $i -lt 200 ] || nsima_fail "appraise.$1 is $(appr "$1"), not $2, after 20 s"
		sleep 0.1
	done
}

# the tools the namespace runs (signed, pre-appraised: decided with no event)
X=/data/sxtools
D=/data/sx
mkdir -p $X $D
cp /bin/busybox $X/busybox
cp "$EVMCTL" $X/evmctl
for f in $X/busybox $X/evmctl; do
	evmctl ima_sign -a sha256 --key "$K/test-rsa2048.key" $f >/dev/null 2>&1 || nsima_fail "sign $f"
done
for f in good bad plain; do
	cp "$HELLO" $D/$f
	printf '%s' $f >>$D/$f # distinct contents
done
mkdir -p /tmp/sxkeys
cp "$K/test-rsa2048.der" /tmp/sxkeys/
printf 'appraise func=BPRM_CHECK appraise_type=imasig\n' >/tmp/sx.policy
N=/sys/fs/cgroup/sx.$$
mkdir -p $N

nsima_start
n=$(nsimactl ns create --cgroup $N --policy /tmp/sx.policy --keys /tmp/sxkeys --rootfs $X)

# 1. per-class denies (the first-access path): an unsigned binary is refused first, appraised,
#    refused by its content at exec, and still readable (no rule appraises FILE_CHECK)
nsima_check_eq "$(run $N $D/plain)" 126 "first exec of an unsigned binary"
nsimactl audit --ns "$n" >/dev/null # barrier: its appraisal is done
nsima_check_eq "$(run $N $D/plain)" 126 "its second exec (IMA-signature-required)"
nsima_check_eq "$(run $N $X/busybox cat $D/plain)" 0 "cat of the unsigned binary refused at exec"
nsima_check_eq "$(run $N $D/plain)" 126 "its exec after the read"


# 2. signed at run time, inside the namespace, with its key: decided before the first exec
s0=$(nsima_stat setxattr)
p0=$(appr setxattr_passed)
f0=$(appr setxattr_failed)
nsima_check_eq "$(run $N $X/evmctl ima_sign -a sha256 --key "$K/test-rsa2048.key" $D/good)" 0 \
	"evmctl ima_sign in $n (pre-appraised evmctl): $(cat /tmp/run.out)"
nsima_check_eq "$(run $N $X/evmctl ima_sign -a sha256 --key "$K/test-rsa2048-b.key" $D/bad)" 0 \
	"evmctl ima_sign with a key $n does not hold: $(cat /tmp/run.out)"
nsima_check_eq "$(nsima_stat setxattr)" $((s0 + 2)) "security.ima writes the hook sent to nsimad"
nsima_check_eq "$(nsima_stat setxattr_dropped)" 0 "security.ima writes lost"
# The window: from the write to nsimad's verdict (the event, one read and hash of the file,
# the appraisal). An exec inside it would be refused once (first-access rule), so wait for it.
wait_appr setxattr_passed $((p0 + 1))
wait_appr setxattr_failed $((f0 + 1))
echo "setxattr window (hook to verdict): last $(appr setxattr_window_last_us) us, max $(appr setxattr_window_max_us) us"

e0=$(nsima_hook_stat bprm_check emitted)
d0=$(nsima_hook_stat bprm_check denied)
t0=$(nsima_stat trusted)
nsima_check_eq "$(run $N $D/good)" 0 "first exec of a binary signed at run time with $n's key"
nsima_check_eq "$(cat /tmp/run.out)" hello "its output"
nsima_check_eq "$(run $N $D/bad)" 126 "first exec of a binary signed with a key $n lacks"
nsima_check_eq "$(nsima_hook_stat bprm_check emitted)" "$e0" \
	"exec events of the two execs (both decided by the setxattr path's verdicts)"
nsima_check_eq "$(nsima_hook_stat bprm_check denied)" $((d0 + 1)) "execs refused"
nsima_check_eq "$(nsima_stat trusted)" "$t0" "execs allowed by the digest-list path"
# (the hook names files outside the writer's root filesystem by inode: found by digest)
line=$(nsimactl audit --ns "$n" | grep "$(sha256sum $D/bad | cut -d' ' -f1)" | tail -n 1)
nsima_check_contains "$line" '"status":"unknown-key"' "audit of the binary signed with another key"

# 3. per-class denies (the setxattr path): refused at exec, still readable
nsima_check_eq "$(run $N $X/busybox cat $D/bad)" 0 "cat of the binary refused at exec"
nsima_check_eq "$(run $N $D/bad)" 126 "its exec after the read"
nsima_stop
rmdir $N
echo "appraise_setxattr_test: OK"
