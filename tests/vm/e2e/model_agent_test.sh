#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# A modeled namespace that delegates to the reference agent (nsima-model-agent serve, protocol
# v1, docs/model-agent-protocol.md) through nsimad: the learned busybox workload passes; a known
# binary reading a file it never read is made untrusted by the agent's verdict and the kernel
# refuses the shell itself; with the agent killed, the namespace fails closed (the next process
# is untrusted and refused) while a namespace using nsimad's own model runs its workload as
# before.
# vm-run-args: --add @BUILD@/daemon/nsima-model-agent
. /usr/share/nsima-test/nsima.sh
set -eu

AGENT=$(find / -xdev -name nsima-model-agent -type f 2>/dev/null | head -n 1)
[ -x "$AGENT" ] || nsima_fail "nsima-model-agent not in the guest (vm-run-args --add)"
W=/data/w
mkdir -p $W/k
BB=$W/k/busybox
cp "$(readlink -f /bin/sh)" $BB
echo one >$W/in1
echo never >$W/new
cat >$W/work.sh <<'EOS'
/data/w/k/busybox cat /data/w/in1 >/dev/null
{ : </data/w/in1; } 2>/dev/null
/data/w/k/busybox echo work-done
EOS
L=/sys/fs/cgroup/learn
A=/sys/fs/cgroup/agent
P=/sys/fs/cgroup/plain
mkdir -p $L $A $P
workload() { # CGROUP
	out=$(cg_exec "$1" $BB sh $W/work.sh 2>&1) || nsima_fail "workload in $1 failed: $out"
	nsima_check_eq "$out" "work-done" "workload output in $1"
}
field() { printf '%s\n' "$1" | sed -n "s/^$2 //p"; }
deviate() { # CGROUP SCRIPT WHAT: the shell itself must be refused (see model_daemon_test.sh)
	rc=0
	out=$(cg_exec "$1" $BB sh -c "$2"'
		i=0
		while [ $i -lt 300 ]; do
			true </data/w/in1 2>/dev/null || { echo SHELL-REFUSED; exit 0; }
			/data/w/k/busybox sleep 0.1 2>/dev/null
			i=$((i + 1))
		done
		echo NEVER-REFUSED' 2>&1) || rc=$?
	echo "$3: status $rc, output: $out"
	case "$out" in *NEVER-REFUSED*) nsima_fail "$3: the shell was never refused: $out" ;; esac
	# anywhere: the process is untrusted from its first event on (the agent is gone), and the
	# mark lands asynchronously: it may be refused already while it starts (a non-zero exit
	# before its loop) or at its first open
	if [ "${4:-}" = anywhere ] && [ $rc -ne 0 ]; then return 0; fi
	nsima_check_contains "$out" "SHELL-REFUSED" "$3: the untrusted shell is refused"
}

nsima_start
lns=$(nsimactl ns create --cgroup $L --no-policy --model-mode learn)
workload $L
nsimactl model save --ns "$lns" /tmp/w.model || nsima_fail "model save"

timeout 300 "$AGENT" serve --model /tmp/w.model --socket /run/agent.sock --log /tmp/agent.log &
AG=$!
i=0
while [ ! -S /run/agent.sock ]; do
	i=$((i + 1))
	[ $i -lt 100 ] || nsima_fail "the agent did not listen within 10 s: $(cat /tmp/agent.log)"
	sleep 0.1
done
ans=$(nsimactl ns create --cgroup $A --no-policy --model /tmp/w.model --model-mode enforce --model-agent /run/agent.sock --model-agent-timeout 1500)
if nsimactl ns create --cgroup $P --no-policy --model-mode learn --model-agent-timeout 10 2>/tmp/err; then
	nsima_fail "a timeout without an agent was accepted"
fi
nsima_check_contains "$(cat /tmp/err)" "model-agent" "the refusal names the missing option"
pns=$(nsimactl ns create --cgroup $P --no-policy --model /tmp/w.model --model-mode enforce)

workload $A
a1=$(nsimactl model state --ns "$ans")
echo "--- agent namespace after the known workload"
printf '%s\n' "$a1"
nsima_check_eq "$(field "$a1" untrusted)" 0 "the agent trusts the known workload"
nsima_check_eq "$(field "$a1" agent_failures)" 0 "every event got the agent's verdict"
nsima_check_eq "$(field "$a1" agent_timeout_ms)" 1500 "the namespace's own agent timeout"
[ "$(field "$a1" agent_verdicts)" -gt 0 ] || nsima_fail "the agent gave no verdict"
nsima_check_eq "$(field "$a1" agent_connected)" true "nsimad is connected to the agent"

deviate $A 'read x </data/w/new' "agent: a known binary reading a file it never read"
grep -q '"untrusted":true' /tmp/agent.log || nsima_fail "the agent logged no untrusted verdict: $(tail -n 5 /tmp/agent.log)"

kill -KILL $AG
wait $AG 2>/dev/null || :
start=$(date +%s)
workload $P
end=$(date +%s)
[ $((end - start)) -lt 20 ] || nsima_fail "the namespace without agent took $((end - start)) s"
deviate $A ':' "agent killed, fail-closed" anywhere
a2=$(nsimactl model state --ns "$ans")
echo "--- agent namespace after the agent was killed"
printf '%s\n' "$a2"
[ "$(field "$a2" agent_failures)" -gt 0 ] || nsima_fail "no failure verdict after the agent died"
[ "$(field "$a2" untrusted)" -ge 2 ] || nsima_fail "the shell run after the agent died is not untrusted"
p2=$(nsimactl model state --ns "$pns")
nsima_check_eq "$(field "$p2" untrusted)" 0 "the namespace with nsimad's model is untouched"
echo "ok: agent verdicts enforced, fail-closed when it died"
