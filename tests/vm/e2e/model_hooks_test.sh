#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The model hooks (bpf/model.bpf.c) loaded and attached on the 6.1 kernel by
# tests/bpf/model_probe, for a workload in a modeled cgroup: every program passes the verifier
# and attaches; socket(2) and connect(2) are reported; a signal to a process outside the namespace is refused (EPERM) and reported
# with the cross flag, one inside is not; fork and exit are reported; with enforce, a process
# marked untrusted is refused its opens and execs, its children forked afterwards inherit the
# mark at fork (in the kernel, before nsimad could act), while the probe outside is untouched.
# vm-run-args: --add @BUILD@/tests/bpf/model_probe
. /usr/share/nsima-test/lib.sh
set -eu

PROBE=$(find / /tmp /run -xdev -name model_probe -type f 2>/dev/null | head -1)
[ -x "$PROBE" ] || fail "model_probe not in the guest (vm-run-args --add)"
CG=/sys/fs/cgroup/modeled
# has_match OUTPUT REGEX WHAT: a line of OUTPUT matches REGEX
has_match() {
	printf '%s\n' "$1" | grep -q "$2" || fail "$3: no line matching '$2'"
}
# has_line OUTPUT LINE WHAT: OUTPUT has LINE as a whole line
has_line() {
	printf '%s\n' "$1" | grep -qx "$2" || fail "$3: no line '$2'"
}
mkdir -p "$CG"
echo hello >/tmp/f

log "learn-like namespace (on): signals and lineage"
out=$("$PROBE" --cgroup "$CG" --flags on -- sh -c '
	if kill -0 1 2>/dev/null; then echo KILL-OUT-ALLOWED; else echo KILL-OUT-DENIED; fi
	if kill -0 $$; then echo KILL-SELF-ALLOWED; else echo KILL-SELF-DENIED; fi
	( : )
	cat /tmp/f >/dev/null && echo CAT-OK
	echo | nc -w 1 127.0.0.1 9 2>/dev/null
	echo NC-DONE
')
printf '%s\n' "$out"
assert_contains "$out" "attached" "the programs load and attach"
has_line "$out" "KILL-OUT-DENIED" "a signal leaving the namespace"
has_line "$out" "KILL-SELF-ALLOWED" "a signal inside the namespace"
has_line "$out" "CAT-OK" "a trusted process's exec and open"
assert_contains "$out" "event hook=task_kill flags=0x5 ns=5" "the refused signal is reported, cross"
assert_contains "$out" "target_tgid=1 target_ns=0 arg0=0" "its target is init, in no namespace"
assert_contains "$out" "event hook=task_kill flags=0x0 ns=5" "the allowed signal is reported"
assert_contains "$out" "target_ns=5 arg0=0" "its target is in the namespace"
assert_contains "$out" "event hook=fork flags=0x0 ns=5" "forks are reported"
assert_contains "$out" "event hook=exit" "exits are reported"
has_line "$out" "NC-DONE" "the socket client ran"
has_match "$out" "^event hook=socket_create flags=0x0 ns=5 .* comm=nc .* arg0=2 arg1=1 arg2=0 " \
	"socket(AF_INET, SOCK_STREAM, 0) is reported"
has_match "$out" "^event hook=socket_connect flags=0x0 ns=5 .* comm=nc .* arg0=2 arg1=1 arg2=6 .* addr_len=16$" \
	"connect(2) is reported with the socket's protocol and its sockaddr_in"
assert_contains "$out" "workload exit=0" "the workload ran to its end"
assert_contains "$out" "mstat 30=0" "nothing was refused for an untrusted process"

log "enforcing namespace: an untrusted process and its later children"
mkfifo /tmp/mfifo
out=$("$PROBE" --cgroup "$CG" --flags on,enforce --untrust-first-fork /tmp/mfifo -- sh -c '
	( : )
	{ read -r x </tmp/mfifo; } 2>/dev/null || echo SYNC-OPEN-DENIED
	if { : </tmp/f; } 2>/dev/null; then echo OPEN-ALLOWED; else echo OPEN-DENIED; fi
	if cat /tmp/f >/dev/null 2>&1; then echo EXEC-ALLOWED; else echo EXEC-DENIED; fi
	( if { : </tmp/f; } 2>/dev/null; then echo CHILD-OPEN-ALLOWED; else echo CHILD-OPEN-DENIED; fi )
	# no redirection here: the open of /dev/null would be refused first
	if kill -0 $$; then echo SIG-ALLOWED; else echo SIG-DENIED; fi
')
printf '%s\n' "$out"
assert_contains "$out" "untrusted tgid=" "the probe marked the shell"
has_line "$out" "OPEN-DENIED" "an untrusted process's open"
has_line "$out" "EXEC-DENIED" "an untrusted process's exec"
has_line "$out" "CHILD-OPEN-DENIED" "a child forked after the mark inherits it"
has_line "$out" "SIG-DENIED" "every modeled event of an untrusted process is refused"
assert_contains "$out" "event hook=task_kill flags=0x3 ns=5" "the refused signal is reported as denied, by an untrusted process"
assert_contains "$out" "event hook=fork flags=0x2 ns=5" "a fork by the untrusted shell is reported as such"
assert_not_contains "$out" "OPEN-ALLOWED" "no open of an untrusted process gets through (parent or child)"
assert_not_contains "$out" "mstat 30=0" "refused accesses are counted"
# outside the namespace nothing changed
cat /tmp/f >/dev/null || fail "the host itself was refused"
log "ok"
