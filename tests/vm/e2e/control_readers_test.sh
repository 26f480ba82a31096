#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The read-only group on nsimad's control socket (--read-group): a member (uid nobody) reads
# status, is refused a change, and its request lines are parsed by the confined parser (its
# parse counter moves; root's requests do not move it). Lines that are not JSON or crash the
# worker: ServerLimitsTest.ReadGroupRequestsAreParsedByTheConfinedWorker (busybox nc has no -U).
. /usr/share/nsima-test/nsima.sh
set -eu

printf 'nsima-readers:x:64123:nobody\n' >>/etc/group
member() { # COMMAND...: run as nobody (a member of nsima-readers), 20 s at most
	timeout 20 su -s /bin/sh nobody -c "$*"
}
parses() { nsima_status | sed -n 's/.*"confine":{[^}]*"parses":\([0-9]*\).*/\1/p'; }

nsima_start --read-group nsima-readers
p0=$(parses)
[ -n "$p0" ] || nsima_fail "status has no confine.parses counter"
nsima_check_eq "$(parses)" "$p0" "parses after root's status requests"
out=$(member "nsimactl status --json") || nsima_fail "a member's status failed: $out"
nsima_check_contains "$out" '"pipeline"' "a member's status"
p1=$(parses)
[ "$p1" -gt "$p0" ] || nsima_fail "a member's request did not go through the confined parser ($p0 -> $p1)"
rc=0
out=$(member "nsimactl ns create --cgroup /sys/fs/cgroup/x" 2>&1) || rc=$?
[ "$rc" -ne 0 ] || nsima_fail "a member created a namespace"
nsima_check_contains "$out" 'is for root' "a member's change refused"
p2=$(parses)
[ "$p2" -gt "$p1" ] || nsima_fail "the refused request did not go through the confined parser"
nsimactl status >/dev/null || nsima_fail "nsimad stopped serving"
nsima_stop --check
echo "control_readers_test: OK"
