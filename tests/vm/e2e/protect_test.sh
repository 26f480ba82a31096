#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Self-protection (issue 12 item 4, bpf/protect.bpf.c): root inside a registered namespace's
# cgroup, in its own mount namespace (a container sharing the host's pid namespace, the case
# where nsimad's pid can be named at all), cannot signal or ptrace nsimad or its vTPM's swtpm,
# cannot get fds of nsima's BPF maps, programs or links by id or by pin, cannot write, rename,
# unlink or create nsima's files (lists, vTPM state, keys), cannot move itself out of its
# namespace's cgroup subtree (moving into a child of it still works). Each refusal is EPERM,
# a violation entry in the host list and an audit line (host and attacker's namespace), counted
# in `nsimactl status`. Host root keeps nsimactl, bpftool (lockdown off), SIGTERM; with
# --lockdown bpftool is refused to host root too, nsimactl still answers, and the host can
# still stop nsimad and `nsimad --unload`.
# vm-run-args: --add /usr/bin/swtpm --add /usr/sbin/bpftool
. /usr/share/nsima-test/nsima.sh
set -eu
set -o pipefail

C=/sys/fs/cgroup/prot
OTHER=/sys/fs/cgroup/prot-other
mkdir -p $C $OTHER /data/prot
BB=
for p in /bin/busybox /usr/bin/busybox /usr/local/bin/busybox; do [ -x $p ] && BB=$p && break; done
[ -n "$BB" ] || nsima_fail "no busybox"
echo "measure func=FILE_CHECK mask=^MAY_READ fsmagic=0xef53" >/tmp/p.policy

nsima_start --host-tcti none --policy /tmp/p.policy
ns=$(nsimactl ns create --cgroup $C --policy /tmp/p.policy --vtpm)
# the swtpm and the confined parser's workers are protected within the Protector's sync
# interval (0.5 s): nsimad, its swtpm and each nsima-parse
parsers() { for d in /proc/[0-9]*; do [ "$(cat "$d/comm" 2>/dev/null)" != nsima-parse ] || echo "${d#/proc/}"; done; }
PARSERS=$(parsers | wc -l)
[ "$PARSERS" -ge 1 ] || nsima_fail "no nsima-parse worker runs"
PARSER=$(parsers | sed -n 1p)
i=0
while [ "$(nsima_status | sed -n 's/.*"protect":{[^}]*"processes":\([0-9]*\).*/\1/p')" != $((2 + PARSERS)) ]; do
	i=$((i + 1))
	[ $i -lt 100 ] || nsima_fail "nsimad, the swtpm and $PARSERS parser workers not all protected: $(nsima_status)"
	sleep 0.1
done
SWTPM=$(cat /run/nsima/vtpm/*/swtpm.pid)
NSLIST=$(nsima_json_field "$(nsimactl ns list --json | grep "\"id\":\"$ns\"")" list)
VSTATE=$(find /var/lib/nsima/vtpm -type f -name '*.permall' | head -n 1)
KEYS=$(dirname "$NSLIST")/keys
mkdir -p "$KEYS"
[ -f "$NSLIST" ] && [ -f "$VSTATE" ] || nsima_fail "no list ($NSLIST) or vTPM state ($VSTATE)"
MAPID=$(bpftool map show pinned /sys/fs/bpf/nsima/verdicts | sed -n 's/^\([0-9]*\):.*/\1/p')
PROGID=$(bpftool prog show | sed -n 's/^\([0-9]*\): lsm  name nsima_file_open.*/\1/p')
[ -n "$MAPID" ] && [ -n "$PROGID" ] || nsima_fail "no ids: map '$MAPID' prog '$PROGID'"
ino() { stat -c %i "$1"; }
LIST_INO=$(ino "$NSLIST")
VSTATE_INO=$(ino "$VSTATE")

cat >/tmp/attack.sh <<'EOF'
set -u
fail() { echo "FAIL: $*"; exit 1; }
# refused WHAT CMD...: CMD fails with EPERM (or EACCES for a /proc file the kernel opens for us)
refused() {
	what=$1
	shift
	if out=$("$@" 2>&1); then fail "$what succeeded: $out"; fi
	case "$out" in
	*"Operation not permitted"* | *"Permission denied"*) echo "refused: $what" ;;
	*) fail "$what failed otherwise: $out" ;;
	esac
}
grep -q "^0::/prot$" /proc/self/cgroup || fail "not in the namespace's cgroup: $(cat /proc/self/cgroup)"
refused "kill -9 nsimad" kill -9 "$NSIMAD"
refused "kill -STOP nsimad" kill -STOP "$NSIMAD"
refused "kill -9 swtpm" kill -9 "$SWTPM"
refused "kill -STOP swtpm" kill -STOP "$SWTPM"
refused "kill -9 a parser worker" kill -9 "$PARSER"
out=$(ptrace_attach "$NSIMAD") || fail "ptrace of nsimad not refused with EPERM: $out"
out=$(ptrace_attach "$SWTPM") || fail "ptrace of swtpm not refused with EPERM: $out"
refused "read nsimad's environ" cat "/proc/$NSIMAD/environ"
sleep 1
refused "bpftool prog show" bpftool prog show
refused "bpftool map show" bpftool map show
refused "bpftool link show" bpftool link show
refused "bpftool map show id" bpftool map show id "$MAPID"
refused "bpftool prog dump id" bpftool prog dump xlated id "$PROGID"
refused "bpftool map dump pinned" bpftool map dump pinned /sys/fs/bpf/nsima/ctl
refused "bpftool map show pinned" bpftool map show pinned /sys/fs/bpf/nsima/stats
refused "unlink a pin" rm -f /sys/fs/bpf/nsima/link_nsima_file_open
sleep 1
refused "append to the list" sh -c "echo ATTACK >>'$NSLIST'"
refused "truncate the list" sh -c ": >'$NSLIST'"
refused "rename the list" mv "$NSLIST" "$NSLIST.moved"
refused "unlink the list" rm -f "$NSLIST"
sleep 1
refused "write the vTPM state" sh -c "echo ATTACK >>'$VSTATE'"
refused "unlink the vTPM state" rm -f "$VSTATE"
refused "plant a key" sh -c "echo ATTACK >'$KEYS/evil.pem'"
refused "remove the keys directory" rmdir "$KEYS"
refused "chmod the state directory" chmod 777 /var/lib/nsima
sleep 1
refused "move to the root cgroup" sh -c 'echo $$ >/sys/fs/cgroup/cgroup.procs'
refused "move to another cgroup" sh -c "echo \$\$ >$OTHER/cgroup.procs"
refused "threads to another cgroup" sh -c "echo \$\$ >$OTHER/cgroup.threads"
# inside its own subtree it manages its cgroups as before
mkdir -p /sys/fs/cgroup/prot/child || fail "mkdir of a child cgroup refused"
echo $$ >/sys/fs/cgroup/prot/child/cgroup.procs || fail "moving into a child of its own cgroup refused"
grep -q "^0::/prot/child$" /proc/self/cgroup || fail "not moved: $(cat /proc/self/cgroup)"
echo "attacks done"
EOF
out=$(NSIMAD=$NSIMAD_PID SWTPM=$SWTPM PARSER=$PARSER NSLIST=$NSLIST VSTATE=$VSTATE KEYS=$KEYS MAPID=$MAPID \
	PROGID=$PROGID OTHER=$OTHER cg_exec $C "$BB" unshare -m "$BB" sh /tmp/attack.sh 2>&1) ||
	nsima_fail "attack script: $out"
echo "$out"
nsima_check_contains "$out" "attacks done" "the attack script ran to its end"

# ---- everything is intact
for p in "$NSIMAD_PID" "$SWTPM" "$PARSER"; do
	kill -0 "$p" || nsima_fail "process $p is gone"
	state=$(sed 's/^.*) \(.\).*/\1/' /proc/$p/stat)
	[ "$state" != T ] || nsima_fail "process $p was stopped"
done
nsima_check_eq "$(ino "$NSLIST")" "$LIST_INO" "the list's inode"
nsima_check_eq "$(ino "$VSTATE")" "$VSTATE_INO" "the vTPM state's inode"
[ ! -e "$NSLIST.moved" ] && [ ! -e "$KEYS/evil.pem" ] && [ -d "$KEYS" ] || nsima_fail "files changed"
if grep -q ATTACK "$NSLIST" "$VSTATE"; then nsima_fail "ATTACK written into nsima's files"; fi
[ -e /sys/fs/bpf/nsima/link_nsima_file_open ] || nsima_fail "a pin was removed"
[ "$(stat -c %a /var/lib/nsima)" != 777 ] || nsima_fail "the state directory was chmod'ed"

# ---- each refusal is in the host list and in both audit logs
sleep 1.5 # one pipeline tick
HL=$(nsimactl log --ns host)
entry() { # REGEX MIN WHAT
	n=$(printf '%s\n' "$HL" | grep -cE " nsima:protect:$1" || true)
	[ "$n" -ge "$2" ] || nsima_fail "$3: $n host-list entries match nsima:protect:$1 (want >= $2)"
}
entry "signal:ns-$ns:sig-9:pid-$NSIMAD_PID:nsimad$" 1 "kill -9 nsimad"
entry "signal:ns-$ns:sig-19:pid-$NSIMAD_PID:nsimad$" 1 "kill -STOP nsimad"
entry "signal:ns-$ns:sig-9:pid-$SWTPM:swtpm" 1 "kill -9 swtpm"
entry "signal:ns-$ns:sig-19:pid-$SWTPM:swtpm" 1 "kill -STOP swtpm"
entry "signal:ns-$ns:sig-9:pid-$PARSER:nsima-parse" 1 "kill -9 a parser worker"
entry "ptrace:ns-$ns:mode-[0-9]+:pid-$NSIMAD_PID:" 3 "ptrace, pidfd_getfd and environ of nsimad"
entry "ptrace:ns-$ns:mode-[0-9]+:pid-$SWTPM:" 2 "ptrace and pidfd_getfd of swtpm"
entry "bpf:ns-$ns:map-[0-9]+$" 4 "map fds by id and by pin"
entry "bpf:ns-$ns:map-$MAPID$" 1 "the map asked by id"
entry "bpf:ns-$ns:prog-$PROGID$" 1 "the program asked by id"
entry "bpf:ns-$ns:link-[0-9]+$" 1 "link fds by id"
entry "file:ns-$ns:unlink:link_nsima_file_open$" 1 "unlinking a pin"
entry "file:ns-$ns:write:$(basename "$NSLIST")$" 2 "append and truncate of the list"
entry "file:ns-$ns:rename:$(basename "$NSLIST")$" 1 "rename of the list"
entry "file:ns-$ns:unlink:$(basename "$NSLIST")$" 1 "unlink of the list"
entry "file:ns-$ns:write:$(basename "$VSTATE")$" 1 "write of the vTPM state"
entry "file:ns-$ns:unlink:$(basename "$VSTATE")$" 1 "unlink of the vTPM state"
entry "file:ns-$ns:create:evil.pem$" 1 "a planted key"
entry "file:ns-$ns:rmdir:keys$" 1 "rmdir of the keys"
entry "file:ns-$ns:setattr:nsima$" 1 "chmod of the state directory"
entry "cgroup:ns-$ns:cgroup-[0-9]+:cgroup.procs$" 2 "moves out of the subtree"
entry "cgroup:ns-$ns:cgroup-[0-9]+:cgroup.threads$" 1 "threads out of the subtree"
total=$(printf '%s\n' "$HL" | grep -c " nsima:protect:" || true)
# 5 signals, 5 ptrace checks, 7 BPF fds, 10 file operations, 3 cgroup writes
[ "$total" -ge 30 ] || nsima_fail "host list holds $total protect entries (want >= 30)"
ha=$(nsimactl audit --ns host | grep -c '"kind":"protect"' || true)
na=$(nsimactl audit --ns "$ns" | grep -c '"kind":"protect"' || true)
[ "$ha" -ge "$total" ] || nsima_fail "host audit: $ha protect lines for $total entries"
[ "$na" -ge "$total" ] || nsima_fail "namespace $ns audit: $na protect lines for $total entries"
st=$(nsima_status)
pstat() { printf '%s\n' "$st" | sed -n "s/.*\"protect\":{[^}]*\"$1\":\([0-9a-z]*\).*/\1/p"; }
nsima_check_eq "$(pstat signal)" 5 "status protect.signal"
[ "$(pstat ptrace)" -ge 5 ] || nsima_fail "status protect.ptrace $(pstat ptrace)"
[ "$(pstat cgroup)" -ge 3 ] || nsima_fail "status protect.cgroup $(pstat cgroup)"
nsima_check_eq "$(pstat lockdown)" false "status protect.lockdown"

# ---- host root still manages nsima
nsimactl status >/dev/null || nsima_fail "nsimactl status from the host"
nsimactl ns list >/dev/null || nsima_fail "nsimactl ns list from the host"
out=$(bpftool prog show 2>&1) || nsima_fail "host root's bpftool without lockdown: $out"
nsima_check_contains "$out" "name nsima_file_open" "host root's bpftool prog show without lockdown"

# ---- lockdown: nsima's BPF objects refuse host root too; nsimactl answers; stop/unload work
nsima_stop
rm -f "$NSIMA_SOCK"
nsima_start --host-tcti none --policy /tmp/p.policy --lockdown
grep -q "BPF hooks: resumed" "$NSIMAD_LOG" || nsima_fail "nsimad did not resume its pins under lockdown"
grep -q "lockdown: nsima's BPF objects are reachable by nsimad alone" "$NSIMAD_LOG" ||
	nsima_fail "lockdown not on"
out=$(bpftool prog show 2>&1) && nsima_fail "host root's bpftool prog show under lockdown: $out"
nsima_check_contains "$out" "Operation not permitted" "bpftool prog show under lockdown"
out=$(bpftool map dump pinned /sys/fs/bpf/nsima/ctl 2>&1) && nsima_fail "map dump under lockdown: $out"
nsima_check_contains "$out" "Operation not permitted" "bpftool map dump pinned under lockdown"
nsimactl status >/dev/null || nsima_fail "nsimactl status under lockdown"
sleep 1.5
HL=$(nsimactl log --ns host)
entry "bpf:ns-[01]:prog-[0-9]+$" 1 "host root's bpftool prog show under lockdown"
entry "bpf:ns-[01]:map-[0-9]+$" 1 "host root's map dump under lockdown"
nsima_check_eq "$(nsima_status | sed -n 's/.*"protect":{[^}]*"lockdown":\([a-z]*\).*/\1/p')" true \
	"status protect.lockdown"
nsima_stop
nsimad --unload >/tmp/unload.log 2>&1 || nsima_fail "nsimad --unload under lockdown: $(cat /tmp/unload.log)"
out=$(bpftool prog show 2>&1) || nsima_fail "bpftool prog show after --unload: $out"
case "$out" in *"name nsima_"*) nsima_fail "nsima programs after --unload: $out" ;; esac
kill "$SWTPM" || nsima_fail "host root cannot signal the swtpm once the hooks are unloaded"
echo "PASS"
