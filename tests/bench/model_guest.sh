#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Guest side of tests/bench/vm-model. Two namespaces under one nsimad: `plain` (no model) and
# `modeled` (its model learned from the same accesses, then sealed: every access is still an
# event, and nothing is refused, so no refusal can shorten the modeled side). Each figure is the
# median of 5 separate processes; rounds alternate plain/modeled so drift hits both alike.
set -eu
echo 0 >/proc/sys/kernel/randomize_va_space
D=/data/bench
P=/sys/fs/cgroup/plain
M=/sys/fs/cgroup/modeled
mkdir -p $D $P $M
head -c 4096 /dev/zero >$D/file
cp "$(command -v nop)" $D/nop
BA=$(command -v bench_access)
NOPEN=${NOPEN:-5000}
NEXEC=${NEXEC:-100}
ROUNDS=${ROUNDS:-5}

median() { sort -n | sed -n 3p; }
measure() { # CGROUP open|exec
	if [ "$2" = open ]; then
		for i in 1 2 3 4 5; do cg_exec "$1" $BA open $D/file $NOPEN; done | median
	else
		for i in 1 2 3 4 5; do cg_exec "$1" $BA exec $D/nop $NEXEC; done | median
	fi
}
stat() { nsimactl status --json | tr -d ' \n' | sed -n "s/.*\"bpf\":{[^}]*\"$1\":\([0-9]*\).*/\1/p"; }

nsimad --log-level warn >/tmp/nsimad.log 2>&1 &
NSIMAD=$!
while [ ! -S /run/nsima/nsimad.sock ]; do sleep 0.1; done
nsimactl ns create --cgroup $P --no-policy >/dev/null
mns=$(nsimactl ns create --cgroup $M --no-policy --model-mode learn)
# first accesses: judged once (plain: then silent; modeled: learned)
for i in 1 2; do
	for c in $P $M; do
		cg_exec $c $BA open $D/file 1 >/dev/null
		cg_exec $c $BA exec $D/nop 1 >/dev/null
	done
	sleep 1
done
nsimactl model seal --ns "$mns" >/dev/null
measure $P open >/dev/null # warm-up: TCG translates the code paths once
measure $M open >/dev/null
round=0
while [ $round -lt "$ROUNDS" ]; do
	round=$((round + 1))
	pl="$(measure $P open) $(measure $P exec)"
	mo="$(measure $M open) $(measure $M exec)"
	echo "plain $pl" >>/tmp/results
	echo "modeled $mo" >>/tmp/results
	echo "$pl $mo" | awk '{ printf "round ratio %.3f %.3f\n", $3 / $1, $4 / $2 }' >>/tmp/ratios
done
nsimactl pcr >/dev/null 2>&1 || :
cat /tmp/results
st=$(nsimactl model state --ns "$mns")
printf '%s\n' "$st" | grep -E "^(mode|known|forensic|untrusted) "
# what the sealed model did not know (a repeated learned workload should add nothing)
nsimactl model forensics --ns "$mns" | head -20
echo "bpf: emitted $(stat emitted) dropped $(stat dropped) quiet $(stat quiet) denied $(stat denied) model_quiet $(stat model_quiet) model_pending $(stat model_pending)"
cat /tmp/ratios
mid=$(((ROUNDS + 1) / 2))
med() { grep "^$1 " /tmp/results | awk -v c="$2" '{ print $c }' | sort -n | sed -n ${mid}p; }
rmed() { awk -v c="$1" '{ print $c }' /tmp/ratios | sort -n | sed -n ${mid}p; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b / a }'; }
a_open=$(med plain 2) b_open=$(med modeled 2) a_exec=$(med plain 3) b_exec=$(med modeled 3)
echo "open+close  ns/op (median of $ROUNDS rounds x 5 processes): unmodeled ${a_open}  modeled ${b_open}  ratio $(ratio "$a_open" "$b_open"), median round ratio $(rmed 3)"
echo "fork+execve ns/op (median of $ROUNDS rounds x 5 processes): unmodeled ${a_exec}  modeled ${b_exec}  ratio $(ratio "$a_exec" "$b_exec"), median round ratio $(rmed 4)"
kill -TERM $NSIMAD
wait $NSIMAD || :
