#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# nsimad on a host whose kernel will not run its programs ends with one sentence that says what
# is missing and how to fix it, never a bare errno, and never libbpf's misleading 'ulimit -l'
# advice as the cause. Runs in a private mount namespace (securityfs mounted there only).
set -eu
NSIMAD=$1
fail() { echo "FAIL: $*" >&2; exit 1; }

# without securityfs: it says so and how to mount it
out=$(unshare -m sh -c "umount /sys/kernel/security 2>/dev/null; timeout 20 $NSIMAD --socket /tmp/nsima-startup-\$\$.sock" 2>&1) && fail "nsimad started without securityfs"
echo "$out" | tail -n 1
echo "$out" | tail -n 1 | grep -q "mount -t securityfs" || fail "no hint to mount securityfs: $out"

# with securityfs: either 'bpf' is missing from the LSM list (boot with lsm=...,bpf) or it is
# listed and the kernel still refuses (sandbox, lockdown, capabilities)
out=$(unshare -m sh -c "mount -t securityfs none /sys/kernel/security && timeout 20 $NSIMAD --socket /tmp/nsima-startup-\$\$.sock" 2>&1) && fail "nsimad started although the kernel refuses BPF-LSM here"
last=$(echo "$out" | tail -n 1)
echo "$last"
case "$last" in
nsimad:*"boot with lsm="*) ;;
nsimad:*"yet the kernel refused to load LSM programs"*"does not apply"*) ;;
*) fail "unexpected last line: $last" ;;
esac
if echo "$out" | grep -v "does not apply" | grep -v "nsima: not the cause" | grep -q "ulimit"; then
	fail "libbpf's ulimit advice was shown as the cause: $out"
fi

# not root: it says so before touching the kernel
out=$(timeout 20 setpriv --reuid 65534 --regid 65534 --clear-groups "$NSIMAD" --socket /tmp/nsima-startup-nobody.sock 2>&1) && fail "nsimad started as nobody"
echo "$out" | tail -n 1 | grep -q "must run as root" || fail "no 'must run as root': $out"
# without a TPM, the PCR refusals still hold (before any BPF program is loaded)
d=$(mktemp -d /tmp/nsima-startup-XXXXXX)
out=$(unshare -m sh -c "mount -t securityfs none /sys/kernel/security && timeout 20 $NSIMAD --host-tcti none --host-pcr 0 --state-dir $d/state --run-dir $d/run --socket $d/s.sock" 2>&1) && { rm -rf "$d"; fail "nsimad started with --host-pcr 0"; }
rm -rf "$d"
echo "$out" | tail -n 1
echo "$out" | tail -n 1 | grep -q "PCR 0 is used by" || fail "no PCR 0 refusal without a TPM: $out"
echo "startup_errors_test: OK"
