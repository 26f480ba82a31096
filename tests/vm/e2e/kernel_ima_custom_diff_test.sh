#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# nsima against kernel IMA with a custom policy and the original `ima` template (sha1): the same
# rules (dont_measure by fsmagic, fsuuid of the ext4 disk, uid<, fowner=, mask=^MAY_READ and
# mask=MAY_EXEC) are written to /sys/kernel/security/ima/policy and given to nsimad's host
# namespace. After a workload that each rule selects or skips, every file is in both lists or in
# neither, and the entries are byte-identical but for the PCR column (kernel IMA 10, nsima 23).
# Broken once: nsimad without --template ima (the template column and digests differ).
# vm-run-args: --tpm --append "ima_template=ima ima_hash=sha1"
. /usr/share/nsima-test/nsima.sh
set -eu

KLIST=/sys/kernel/security/ima/ascii_runtime_measurements
[ -r $KLIST ] || nsima_fail "kernel IMA list not readable"
head -n 1 $KLIST | grep -q "^10 [0-9a-f]\{40\} ima [0-9a-f]\{40\} boot_aggregate" ||
	nsima_fail "kernel IMA is not using the ima template: $(head -n 1 $KLIST)"
dev=$(awk '$2 == "/data" { print $1 }' /proc/mounts)
[ -b "$dev" ] || nsima_fail "no block device for /data in /proc/mounts"
# the ext4 UUID: 16 bytes at offset 0x68 of the superblock (1024 bytes into the device)
u=$(dd if="$dev" bs=1 skip=1128 count=16 2>/dev/null | od -An -tx1 | tr -d ' \n')
[ ${#u} = 32 ] || nsima_fail "cannot read the ext4 UUID of $dev"
uuid=$(echo "$u" | sed 's/^\(.\{8\}\)\(.\{4\}\)\(.\{4\}\)\(.\{4\}\)/\1-\2-\3-\4-/')
cat >/tmp/custom.policy <<EOF
dont_measure fsmagic=0x9fa0
dont_measure fsmagic=0x62656572
dont_measure fsmagic=0x1021994
measure func=BPRM_CHECK mask=MAY_EXEC fsuuid=$uuid
measure func=FILE_CHECK mask=^MAY_READ uid<1000 fsuuid=$uuid
measure func=FILE_CHECK mask=^MAY_READ fowner=1000
EOF
echo "policy:"
cat /tmp/custom.policy

W=/data/w
mkdir -p $W /tmp/w
chmod 755 $W
cp "$(command -v hello)" $W/hello
echo root-read >$W/root.txt       # read by root: uid<1000 on the disk
echo user-read >$W/user.txt       # read by uid 1000 only, owned by root: no rule
echo owned >$W/owned.txt          # owned by 1000, read by 1000: fowner=1000
echo owned-tmp >/tmp/w/owned.txt  # owned by 1000 on tmpfs: dont_measure fsmagic first
chown 1000:1000 $W/owned.txt /tmp/w/owned.txt
chmod 644 $W/*.txt /tmp/w/owned.txt

cat /tmp/custom.policy >/sys/kernel/security/ima/policy || nsima_fail "kernel IMA refused the policy"
nsima_start --policy /tmp/custom.policy --template ima --hash sha1
$W/hello >/dev/null
cat $W/root.txt >/dev/null
run_as 1000 1000 /bin/cat $W/user.txt $W/owned.txt /tmp/w/owned.txt >/dev/null
sleep 1
nsimactl pcr --ns host >/dev/null # pending extends done
nsimactl log --ns host >/tmp/nsima.ascii
cp $KLIST /tmp/kernel.ascii
nsima_stop

for f in hello root.txt owned.txt; do
	nsima_check_same_entry "$W/$f" /tmp/kernel.ascii /tmp/nsima.ascii
done
for f in $W/user.txt /tmp/w/owned.txt; do
	grep -q " $f\$" /tmp/kernel.ascii && nsima_fail "kernel IMA measured $f (no rule selects it)"
	grep -q " $f\$" /tmp/nsima.ascii && nsima_fail "nsima measured $f (no rule selects it)"
done
echo "kernel_ima_custom_diff_test: OK"
