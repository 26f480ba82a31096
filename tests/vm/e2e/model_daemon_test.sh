#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Workload models end to end through nsimad (issue 13): a busybox workload (a script that execs
# applets and reads files) is learned in a modeled namespace (learning it again adds nothing),
# saved, and loaded into a new enforcing namespace with its own vTPM: the same workload, run
# alone and as two concurrent copies, is known (no forensics, same state); a new binary, a
# known binary (the shell) reading a file it never read each make their process untrusted (in
# forensics) and the kernel then refuses that process's next exec/open; the known binary with
# one byte appended is refused at exec (its content is not a known executable), and is in
# forensics too; `model state --offline` of the saved file equals the live state;
# the state extended into the vTPM (PCR 11) is in a quote that tpm2_checkquote accepts.
# vm-run-args: --add /usr/bin/swtpm --add /usr/bin/swtpm_ioctl --add /usr/bin/tpm2 --add /usr/bin/tpm2_checkquote
. /usr/share/nsima-test/nsima.sh
set -eu

W=/data/w
mkdir -p $W/k $W/n
BUSYBOX=$(readlink -f /bin/sh)
[ -f "$BUSYBOX" ] || nsima_fail "no busybox binary behind /bin/sh ($BUSYBOX)"
# busybox picks the applet from argv[1] only when argv[0] is named busybox
BB=$W/k/busybox
NB=$W/n/busybox # a binary the model never saw (same bytes, other path)
cp "$BUSYBOX" $BB
cp "$BUSYBOX" $NB
echo one >$W/in1
echo two >$W/in2
echo never >$W/new
cat >$W/work.sh <<'EOF'
/data/w/k/busybox cat /data/w/in1 >/dev/null
/data/w/k/busybox cat /data/w/in2 >/dev/null
/data/w/k/busybox ls /data/w >/dev/null
{ : </data/w/in1; } 2>/dev/null
/data/w/k/busybox echo work-done
EOF
L=/sys/fs/cgroup/learn
E=/sys/fs/cgroup/enforce
mkdir -p $L $E

workload() { # CGROUP: runs the workload there, checks it ran to its end
	out=$(cg_exec "$1" $BB sh $W/work.sh 2>&1) || nsima_fail "workload in $1 failed: $out"
	nsima_check_eq "$out" "work-done" "workload output in $1"
}
field() { # "model state" OUTPUT KEY
	printf '%s\n' "$1" | sed -n "s/^$2 //p"
}
# deviate CGROUP EXE SCRIPT WHAT: EXE runs `sh -c SCRIPT` in CGROUP, then the shell itself
# keeps opening in1 (as the workload's shell did: known) until the kernel refuses it (the
# untrusted mark arrives asynchronously); its children (sleep) may be refused first.
# (true, not the special builtin ':': a refused redirection of ':' ends the shell, silently
# with 2>/dev/null, instead of reaching SHELL-REFUSED)
deviate() {
	rc=0 # a refused shell may end with any status: its output is the check
	out=$(cg_exec "$1" "$2" sh -c "$3"'
		i=0
		while [ $i -lt 300 ]; do
			true </data/w/in1 2>/dev/null || { echo SHELL-REFUSED; exit 0; }
			/data/w/k/busybox sleep 0.1 2>/dev/null
			i=$((i + 1))
		done
		echo NEVER-REFUSED' 2>&1) || rc=$?
	echo "$4: status $rc, output: $out"
	nsima_check_contains "$out" "SHELL-REFUSED" "$4: the untrusted process itself is refused"
	case "$out" in *NEVER-REFUSED*) nsima_fail "$4: never refused: $out" ;; esac
}

nsima_start
lns=$(nsimactl ns create --cgroup $L --no-policy --model-mode learn)

# ---- learn
workload $L
s1=$(nsimactl model state --ns "$lns")
echo "--- learned"
printf '%s\n' "$s1"
nsima_check_eq "$(field "$s1" mode)" learn "mode after ns create --model-mode learn"
known=$(field "$s1" known)
[ "$known" -ge 5 ] || nsima_fail "the workload gave only $known coefficients"
nsimactl model save --ns "$lns" /tmp/w1.model || nsima_fail "model save"
workload $L
s2=$(nsimactl model state --ns "$lns")
nsimactl model save --ns "$lns" /tmp/w2.model || nsima_fail "model save"
if [ "$(field "$s2" state)" != "$(field "$s1" state)" ]; then
	echo "--- points the second run added"
	diff /tmp/w1.model /tmp/w2.model || :
	grep -E "warn|error" "$NSIMAD_LOG" | tail -n 20
fi
nsima_check_eq "$(field "$s2" state)" "$(field "$s1" state)" "learning the same workload again changes nothing"
nsima_check_eq "$(field "$s2" known)" "$known" "no new coefficient from the second run"
nsimactl model save --ns "$lns" /tmp/w.model || nsima_fail "model save"
grep -q "^point [0-9a-f]\{64\} bprm_committed_creds" /tmp/w.model || nsima_fail "no exec point in the saved model"
grep -q "^point [0-9a-f]\{64\} file_open /data/w/in1" /tmp/w.model || nsima_fail "no open of in1 in the saved model"
off=$(nsimactl model state --offline /tmp/w.model)
nsima_check_eq "$(field "$off" state)" "$(field "$s1" state)" "model state --offline of the saved file = the live state"

# ---- enforce a loaded model in a new namespace with a vTPM
ens=$(nsimactl ns create --cgroup $E --no-policy --vtpm --model /tmp/w.model --model-mode enforce)
workload $E
cg_exec $E $BB sh $W/work.sh >/tmp/c1.out 2>&1 &
p1=$!
cg_exec $E $BB sh $W/work.sh >/tmp/c2.out 2>&1 &
p2=$!
wait $p1 || nsima_fail "concurrent workload 1 failed: $(cat /tmp/c1.out)"
wait $p2 || nsima_fail "concurrent workload 2 failed: $(cat /tmp/c2.out)"
nsima_check_eq "$(cat /tmp/c1.out /tmp/c2.out | tr '\n' ' ')" "work-done work-done " "concurrent workloads"
e1=$(nsimactl model state --ns "$ens")
echo "--- enforcing, after the known workload"
printf '%s\n' "$e1"
nsima_check_eq "$(field "$e1" mode)" enforce "mode of the loaded model"
nsima_check_eq "$(field "$e1" forensic)" 0 "the known workload leaves no forensics"
nsima_check_eq "$(field "$e1" untrusted)" 0 "the known workload leaves nobody untrusted"
nsima_check_eq "$(field "$e1" state)" "$(field "$s1" state)" "enforcing state = learned state"
nsima_check_eq "$(field "$e1" kernel)" true "the model hooks run"

# ---- deviations
deviate $E $NB ':' "a new binary"
deviate $E $BB 'read x </data/w/new' "a known binary reading a file it never read"
printf 'x' >>$BB
# not a known executable of the model: refused at exec, before it runs (bpf/access.bpf.h)
rc=0
out=$(cg_exec $E $BB sh -c 'echo RAN' 2>&1) || rc=$?
echo "a known binary with one byte appended: status $rc, output: $out"
nsima_check_eq "$rc" 126 "exec of the known binary with one byte appended"
nsima_check_contains "$out" "Permission denied" "exec of the known binary with one byte appended"
e2=$(nsimactl model state --ns "$ens")
echo "--- enforcing, after the deviations"
printf '%s\n' "$e2"
u=$(field "$e2" untrusted)
[ "$u" -ge 3 ] || nsima_fail "3 deviating processes, $u marked untrusted"
nsima_check_eq "$(field "$e2" mark_errors)" 0 "untrusted marks written"
[ "$(field "$e2" state)" != "$(field "$s1" state)" ] || nsima_fail "the deviations did not change the state"
nsimactl model forensics --ns "$ens" >/tmp/forensics
echo "--- forensics"
cat /tmp/forensics
grep -q "bprm_committed_creds.*/data/w/n/busybox" /tmp/forensics || nsima_fail "the new binary's exec is not in forensics"
grep -q "file_open.*/data/w/new" /tmp/forensics || nsima_fail "the read of the new file is not in forensics"
grep -q "bprm_committed_creds.*/data/w/k/busybox" /tmp/forensics || nsima_fail "the modified binary's exec is not in forensics"
# outside the modeled namespaces nothing is refused
$BB cat $W/in1 >/dev/null || nsima_fail "the host was refused"

# ---- the state into the vTPM, quoted
x=$(nsimactl model state --ns "$ens" --extend)
pcr=$(field "$x" pcr_sha256)
[ -n "$pcr" ] || nsima_fail "model state --extend gave no PCR value: $x"
nonce=0123456789abcdef
rm -rf /tmp/q && mkdir -p /tmp/q
nsimactl quote --ns "$ens" --nonce $nonce --out /tmp/q || nsima_fail "nsimactl quote"
timeout 60 tpm2_checkquote -u /tmp/q/ak.pub.pem -m /tmp/q/quote.msg -s /tmp/q/quote.sig -f /tmp/q/quote.pcrs \
	-g sha256 -q $nonce >/tmp/q/check.out 2>&1 || nsima_fail "tpm2_checkquote rejected the quote: $(cat /tmp/q/check.out)"
upper=$(printf '%s' "$pcr" | tr 'a-f' 'A-F')
grep -Eq "^ *11 *: *0x$upper" /tmp/q/check.out || nsima_fail "PCR 11 = $upper not in the quote: $(cat /tmp/q/check.out)"
echo "ok: model learned, saved, enforced; state $(field "$e1" state) quoted in PCR 11"
