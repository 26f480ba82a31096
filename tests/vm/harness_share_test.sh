#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# Host-side self-test of tests/vm/vm-run (ctest vm.harness_share): what a guest script cannot check
# by itself. Runs VMs two at a time (which also exercises the cache lock):
#   1. --share (9p, both directions) + --disk-dir (ext4 keeps security.ima) + argument passing +
#      output without a final newline + no kernel noise or markers on stdout
#   2. --tpm + --add tpm2_pcrread (dlopen'ed TCTIs work) + a non-zero exit status propagates
#   3. --timeout: exit 124, in time, nothing left running
#   4. a kernel panic (rdinit=/bin/false): exit 125
# and afterwards: no qemu/swtpm/helper left running, every run directory removed.
# usage: harness_share_test.sh BUILD_DIR
set -euo pipefail

BUILD_DIR=${1:?usage: harness_share_test.sh BUILD_DIR}
VM_RUN=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/vm-run
W=$(mktemp -d "${TMPDIR:-/tmp}/nsima-harness.XXXXXX")
trap 'rm -rf "$W"' EXIT
mkdir -p "$W/tmp" "$W/share" "$W/disk/sub"
export TMPDIR=$W/tmp # every vm-run run directory goes here: leftovers are easy to find

passed=0 failed=0
ok() {
	echo "ok - $*"
	passed=$((passed + 1))
}
not_ok() {
	echo "not ok - $*"
	failed=$((failed + 1))
}
check() { # check DESCRIPTION CMD...
	local d=$1
	shift
	if "$@"; then ok "$d"; else not_ok "$d"; fi
}
has() { grep -qF -- "$2" "$1"; }
hasnt() { ! grep -qF -- "$2" "$1"; }
show() { # show NAME: the captured output of a run, on failure
	echo "---- $1 stdout ----"
	cat "$W/$1.out"
	echo "---- $1 stderr ----"
	cat "$W/$1.err"
}
run_vm() { # run_vm NAME VM-RUN-ARGS...: background run, status in $W/NAME.rc, seconds in NAME.secs
	local name=$1
	shift
	(
		s=$(date +%s)
		rc=0
		"$VM_RUN" --build-dir "$BUILD_DIR" "$@" >"$W/$name.out" 2>"$W/$name.err" || rc=$?
		echo "$rc" >"$W/$name.rc"
		echo $(($(date +%s) - s)) >"$W/$name.secs"
	) &
}
rc_of() { cat "$W/$1.rc"; }

command -v tpm2_pcrread >/dev/null || {
	echo "tpm2_pcrread not found: apt-get install tpm2-tools" >&2
	exit 1
}
command -v setfattr >/dev/null || {
	echo "setfattr not found: apt-get install attr" >&2
	exit 1
}

# ---- usage errors need no VM
rc=0
"$VM_RUN" --build-dir "$BUILD_DIR" "$W/does-not-exist.sh" >/dev/null 2>&1 || rc=$?
check "missing SCRIPT: exit 2 (got $rc)" test "$rc" = 2

# ---- 1 + 2, concurrently
echo from-host >"$W/share/in.txt"
echo data >"$W/disk/sub/f"
setfattr -n security.ima -v 0x0404deadbeef "$W/disk/sub/f"
cat >"$W/share_guest.sh" <<'EOF'
. /usr/share/nsima-test/lib.sh
assert_contains "$(cat /proc/mounts)" "share /share 9p" "9p mount"
assert_eq from-host "$(cat /share/in.txt)" "host file through 9p"
echo from-guest >/share/out.txt
assert_eq data "$(cat /data/sub/f)" "--disk-dir content"
assert_contains "$(getfattr -n security.ima -e hex /data/sub/f)" "0x0404deadbeef" "security.ima kept by mke2fs -d"
assert_eq 1 "$NSIMA_VM_SHARE" "NSIMA_VM_SHARE"
for a in "$@"; do echo "arg:[$a]"; done
echo "argc:$#"
printf 'no-newline-at-end'
EOF
cat >"$W/tpm_guest.sh" <<'EOF'
. /usr/share/nsima-test/lib.sh
sysfs=$(tr 'A-F' 'a-f' </sys/class/tpm/tpm0/pcr-sha256/10)
dev=$(tpm2_pcrread -T device:/dev/tpmrm0 sha256:10 | tr 'A-F' 'a-f')
assert_contains "$dev" "0x$sysfs" "tpm2_pcrread (device TCTI) vs sysfs"
dflt=$(tpm2_pcrread sha256:10 | tr 'A-F' 'a-f')
assert_contains "$dflt" "0x$sysfs" "tpm2_pcrread (tctildr default TCTI) vs sysfs"
echo before-exit
exit 7
EOF
# shellcheck disable=SC2016 # a literal $HOME argument
run_vm share --share "$W/share" --disk-dir "$W/disk" "$W/share_guest.sh" "a b" "it's" '$HOME' ""
run_vm tpm --tpm --add "$(command -v tpm2_pcrread)" "$W/tpm_guest.sh"
wait

check "share run exits 0 (got $(rc_of share))" test "$(rc_of share)" = 0
check "argument with a space" has "$W/share.out" "arg:[a b]"
check "argument with a quote" has "$W/share.out" "arg:[it's]"
# shellcheck disable=SC2016
check "argument not expanded" has "$W/share.out" 'arg:[$HOME]'
check "empty argument kept" has "$W/share.out" "arg:[]"
check "argument count" has "$W/share.out" "argc:4"
check "output without final newline" has "$W/share.out" "no-newline-at-end"
check "no protocol markers on stdout" hasnt "$W/share.out" "@@NSIMA-VM"
check "no kernel console on stdout" hasnt "$W/share.out" "EXT4-fs"
check "guest wrote to the host through 9p" test "$(cat "$W/share/out.txt" 2>/dev/null)" = from-guest
[[ $failed == 0 ]] || show share

check "non-zero status propagates: exit 7 (got $(rc_of tpm))" test "$(rc_of tpm)" = 7
check "output before the failure is shown" has "$W/tpm.out" "before-exit"
check "vm-run names the failing status" has "$W/tpm.err" "exited with status 7"
check "kernel log tail on failure" has "$W/tpm.err" "kernel console"
[[ $(rc_of tpm) == 7 ]] || show tpm

# ---- 3 + 4, concurrently
printf 'echo started\nsleep 600\n' >"$W/sleep_guest.sh"
printf 'echo never\n' >"$W/never_guest.sh"
run_vm timeout --tpm --timeout 60 "$W/sleep_guest.sh"
run_vm panic --append "rdinit=/bin/false" "$W/never_guest.sh"
wait
check "timeout: exit 124 (got $(rc_of timeout))" test "$(rc_of timeout)" = 124
check "timeout: took $(cat "$W/timeout.secs") s, well under 150" test "$(cat "$W/timeout.secs")" -lt 150
check "timeout: script output before the kill is shown" has "$W/timeout.out" "started"
check "timeout: reported as TIMEOUT" has "$W/timeout.err" "TIMEOUT"
[[ $(rc_of timeout) == 124 ]] || show timeout
check "panic: exit 125 (got $(rc_of panic))" test "$(rc_of panic)" = 125
check "panic: reported as KERNEL PANIC" has "$W/panic.err" "KERNEL PANIC"
check "panic: script did not run" hasnt "$W/panic.out" "never"
[[ $(rc_of panic) == 125 ]] || show panic

# ---- hygiene: nothing left running, run directories removed
sleep 1
left=$(pgrep -af -- "$W/tmp" || true)
check "no process left running${left:+: $left}" test -z "$left"
check "run directories removed" test -z "$(ls -A "$W/tmp")"

echo "$passed passed, $failed failed"
[[ $failed == 0 ]]
