#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# nsima against kernel IMA itself: the guest kernel runs with ima_policy=tcb and the ima-ng
# template (sha256) on a TPM; nsimad's host namespace runs the same builtin tcb policy. After a
# fixed workload on the ext4 disk (tcb skips tmpfs), every workload file is in both lists
# exactly once with the same template, file digest, path and template digest (so the same
# template data byte for byte); files tcb excludes are in neither. Only the PCR column differs
# (kernel IMA owns PCR 10, nsima's host namespace PCR 23). Violations: a file read while open for
# write (open_writers) and a file appended while open for read (ToMToU) give the same violation
# entry (zero digests, the path) in both lists. (Kernel IMA may log one more open_writers for
# nsimad's own read of the file while the writer is still open: nsimad's own accesses are not
# nsima events, so the kernel's count is at least nsima's.)
# vm-run-args: --tpm --append "ima_policy=tcb ima_template=ima-ng ima_hash=sha256"
. /usr/share/nsima-test/nsima.sh
set -eu

KLIST=/sys/kernel/security/ima/ascii_runtime_measurements
[ -r $KLIST ] || nsima_fail "kernel IMA list not readable"
head -n 1 $KLIST | grep -q "^10 .* ima-ng sha256:.* boot_aggregate" || nsima_fail "kernel IMA is not using ima-ng/sha256 on PCR 10"
W=/data/w
mkdir -p $W
cp "$(command -v hello)" $W/hello
printf '#!/bin/sh\necho script\n' >$W/script.sh
chmod +x $W/script.sh
echo alpha >$W/a.txt
echo "name with space" >"$W/b c.txt"
echo tmp >/tmp/t.txt

nsima_start --builtin tcb
$W/hello >/dev/null
$W/script.sh >/dev/null
cat $W/a.txt "$W/b c.txt" /tmp/t.txt >/dev/null
run_as 1000 1000 /bin/cat $W/a.txt >/dev/null # uid 1000 re-read: nothing new for either
echo c >$W/c.txt
echo d >$W/d.txt
exec 3>>$W/c.txt # open_writers: read while open for write
cat $W/c.txt >/dev/null
exec 3>&-
exec 4<$W/d.txt # ToMToU: appended while open for read (after being measured)
sleep 0.5
echo more >>$W/d.txt
exec 4<&-
sleep 1
nsimactl pcr --ns host >/dev/null # pending extends done
nsimactl log --ns host >/tmp/nsima.ascii
cp $KLIST /tmp/kernel.ascii
nsima_stop

for f in hello script.sh a.txt b_c.txt; do
	nsima_check_same_entry "$W/$f" /tmp/kernel.ascii /tmp/nsima.ascii
done
Z40=$(printf '%040d' 0)
Z64=$(printf '%064d' 0)
for f in c.txt d.txt; do
	viol=" $Z40 ima-ng sha256:$Z64 $W/$f"
	k=$(grep -c -- "^10$viol\$" /tmp/kernel.ascii || true)
	n=$(grep -c -- "^23$viol\$" /tmp/nsima.ascii || true)
	echo "violations for $W/$f: kernel IMA $k, nsima $n"
	nsima_check_eq "$n" 1 "nsima violation entries for $W/$f"
	[ "$k" -ge 1 ] || nsima_fail "kernel IMA has no violation for $W/$f (test workload broken)"
done
grep -q "/tmp/t.txt" /tmp/kernel.ascii && nsima_fail "kernel IMA measured tmpfs (tcb excludes it)"
grep -q "/tmp/t.txt" /tmp/nsima.ascii && nsima_fail "nsima measured tmpfs (tcb excludes it)"
echo "kernel_ima_diff_test: OK"
