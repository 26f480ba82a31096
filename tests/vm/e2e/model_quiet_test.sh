#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# A modeled namespace's cached accesses go quiet in the kernel once its model knows them
# (issue 13, model_quiet: bpf/access.bpf.h, daemon/model/README.md). One long-lived shell in a
# modeled namespace, driven command by command through a FIFO, opens the same file: once the
# model has judged its first open, every repeat is quiet in the kernel (bpf.model_quiet counts
# exactly the repeats: the kernel's key equals the one nsimad wrote). What changes the
# coefficient is an event again, seen by the model: the same file through another path (a hard
# link), the file's mode changed (chmod). A mode change (seal) keeps what is known quiet; an
# unknown access (a file never read, in seal mode) keeps no entry once judged (its repeats are
# quiet only while its first report is pending); a model load clears the namespace's entries,
# and after it the first open is an event whose repeats are quiet at once (pending).
. /usr/share/nsima-test/nsima.sh
set -eu

W=/data/w
mkdir -p $W
BB=$(readlink -f /bin/sh)
[ -f "$BB" ] || nsima_fail "no busybox binary behind /bin/sh ($BB)"
echo one >$W/in1
ln $W/in1 $W/link1
echo never >$W/new
Q=/sys/fs/cgroup/quiet
mkdir -p $Q
rm -f /tmp/cmd /tmp/ack
mkfifo /tmp/cmd /tmp/ack

field() { # "model state" OUTPUT KEY
	printf '%s\n' "$1" | sed -n "s/^$2 //p"
}
state() { nsimactl model state --ns "$ns"; }
quiet_hits() {
	v=$(nsima_stat model_quiet)
	[ -n "$v" ] || nsima_fail "no bpf.model_quiet in nsimactl status"
	echo "$v"
}
# cmd WORD: the shell does WORD (see below) and answers; 30 s at most
cmd() {
	timeout 30 sh -c "echo $1 >/tmp/cmd" || nsima_fail "the shell did not take '$1'"
	a=$(timeout 30 sh -c 'cat /tmp/ack') || nsima_fail "the shell did not answer '$1'"
	nsima_check_eq "$a" "ack $1" "answer to $1"
}
# wait_model KEY MIN: until `model state` shows KEY >= MIN (the model judged what was sent)
wait_model() {
	i=0
	while :; do
		v=$(field "$(state)" "$1")
		[ "${v:-0}" -ge "$2" ] && return 0
		i=$((i + 1))
		[ $i -lt 100 ] || nsima_fail "model state $1 stayed ${v:-none} (want >= $2)"
		sleep 0.2
	done
}

nsima_start
ns=$(nsimactl ns create --cgroup $Q --no-policy --model-mode learn)

# The shell: one process (builtins only: no fork, no exec) for the whole test.
cg_exec $Q $BB sh -c '
	while :; do
		read c </tmp/cmd
		case $c in
		open) : </data/w/in1 ;;
		loop) i=0; while [ $i -lt 200 ]; do : </data/w/in1; i=$((i + 1)); done ;;
		link) : </data/w/link1 ;;
		new) : </data/w/new ;;
		quit) echo "ack quit" >/tmp/ack; exit 0 ;;
		esac
		echo "ack $c" >/tmp/ack
	done' >/tmp/shell.out 2>&1 &
shell=$!

# ---- learn: the first open is an event; once judged, its repeats are quiet
cmd open
wait_model quiet_entries 1
s0=$(state)
printf '%s\n' "$s0"
known0=$(field "$s0" known)
e0=$(field "$s0" quiet_entries) # the open of in1 and what the shell's start mapped and read
q0=$(quiet_hits)
cmd loop
q1=$(quiet_hits)
echo "200 repeats: bpf.model_quiet $q0 -> $q1"
nsima_check_eq "$((q1 - q0))" 200 "repeats of a known open quiet in the kernel"
nsima_check_eq "$(field "$(state)" known)" "$known0" "the quiet repeats added nothing to the model"

# ---- another path to the same inode: another coefficient, so an event the model learns
cmd link
wait_model known $((known0 + 1))
q2=$(quiet_hits)
nsima_check_eq "$q2" "$q1" "the open through the hard link was not quiet"

# ---- the file's mode changed: its cell changed, an event again
chmod 600 $W/in1
cmd open
wait_model known $((known0 + 2))
nsima_check_eq "$(quiet_hits)" "$q2" "the open after chmod was not quiet"
wait_model quiet_entries $((e0 + 2))

# ---- seal: what is known stays quiet; an unknown access never is
nsimactl model seal --ns "$ns" >/dev/null || nsima_fail "model seal"
q3=$(quiet_hits)
cmd loop
q4=$(quiet_hits)
nsima_check_eq "$((q4 - q3))" 200 "known repeats stay quiet after seal"
p0=$(nsima_stat model_pending)
cmd new
wait_model forensic 1
cmd new
cmd new
cmd new
nsimactl model forensics --ns "$ns" >/tmp/forensics
grep -q "file_open.*/data/w/new" /tmp/forensics || nsima_fail "the unknown open is not in forensics: $(cat /tmp/forensics)"
p1=$(nsima_stat model_pending)
[ "$p1" -gt "$p0" ] || nsima_fail "the unknown open's report put no pending key ($p0 -> $p1)"
# judged unknown: its key goes (the entries settle at what is known)
i=0
while e=$(field "$(state)" quiet_entries) && [ "$e" != $((e0 + 2)) ]; do
	i=$((i + 1))
	[ $i -lt 100 ] || nsima_fail "model_quiet entries stayed $e, want $((e0 + 2)): $e0 and in1 after chmod, link1; none for the unknown file"
	sleep 0.2
done

# ---- a model load replaces what was known: the entries go
nsimactl model save --ns "$ns" /tmp/q.model || nsima_fail "model save"
nsimactl model load --ns "$ns" /tmp/q.model >/dev/null || nsima_fail "model load"
nsima_check_eq "$(field "$(state)" quiet_entries)" 0 "model_quiet entries after model load"
q5=$(quiet_hits)
cmd loop
q6=$(quiet_hits)
echo "after load: bpf.model_quiet $q5 -> $q6"
nsima_check_eq "$((q6 - q5))" 199 "after model load: the first open an event, its 199 repeats quiet (pending, then known)"

cmd quit
wait $shell || nsima_fail "the shell failed: $(cat /tmp/shell.out)"
s=$(state)
nsima_check_eq "$(field "$s" untrusted)" 0 "nobody untrusted (seal)"
echo "ok: known accesses quiet in the kernel ($((q1 - q0)) of 200), changed ones seen by the model"
