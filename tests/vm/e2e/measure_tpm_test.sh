#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Measurement lists against real TPMs, checked with the tools a verifier uses:
# - the host namespace's list (host TPM = qemu's swtpm, PCR 23) replays with evmctl
#   ima_measurement against the PCRs the kernel's TPM driver reads, and fails once one byte of
#   the list is flipped; its entries are the files' digests;
# - a namespace with its own vTPM (swtpm started by nsimad, PCR 10) is quoted with nsimactl quote:
#   tpm2_checkquote accepts the quote with its nonce and rejects another nonce, and evmctl
#   replays that namespace's list to the quoted PCR value;
# - a namespace without a vTPM has its entries recorded in (and extended by) its owner's list.
# vm-run-args: --tpm --add /usr/bin/evmctl --add /usr/bin/swtpm --add /usr/bin/swtpm_ioctl --add /usr/bin/tpm2 --add /usr/bin/tpm2_checkquote
. /usr/share/nsima-test/nsima.sh
set -eu
set -o pipefail

D=/data/m
mkdir -p $D /sys/fs/cgroup/plain /sys/fs/cgroup/vt
for i in 1 2 3 4 5; do echo "file $i" >$D/f$i; done
cp "$(command -v hello)" $D/hello
[ -c /dev/tpmrm0 ] || nsima_fail "no /dev/tpmrm0 (vm-run --tpm)"
# Only the ext4 disk (0xef53) is measured: the test's own tools (on the initramfs) stay out of
# the host list, so that the list and the PCR can be read at a quiet moment.
cat >/tmp/reads.policy <<'POL'
measure func=FILE_CHECK mask=^MAY_READ uid=0 fsmagic=0xef53
measure func=BPRM_CHECK fsmagic=0xef53
POL

nsima_start --host-tcti device:/dev/tpmrm0 --policy /tmp/reads.policy
# Kernel IMA owns PCR 10 here (its boot_aggregate is there): nsimad must have detected it from
# the kernel's list and put the host namespace on PCR 23.
nsima_check_eq "$(head -n 1 /sys/kernel/security/ima/ascii_runtime_measurements | cut -d' ' -f1)" 10 \
	"PCR of kernel IMA's boot_aggregate"
grep -qF "kernel IMA: /sys/kernel/security/ima/ascii_runtime_measurements (first entry) -> host namespace uses PCR 23" \
	"$NSIMAD_LOG" || nsima_fail "nsimad did not find kernel IMA in its list and put the host namespace on PCR 23"
nsima_check_eq "$(nsima_json_field "$(nsimactl ns list --json | grep '"id":"host"')" pcr)" 23 \
	"PCR of the host namespace"
plain=$(nsimactl ns create --cgroup /sys/fs/cgroup/plain --policy /tmp/reads.policy)
vt=$(nsimactl ns create --cgroup /sys/fs/cgroup/vt --policy /tmp/reads.policy --vtpm)

# host namespace: the workload runs in the root cgroup
for i in 1 2 3; do cat $D/f$i >/dev/null; done
$D/hello >/dev/null
# plain namespace (no vTPM): f4; vTPM namespace: f5 and hello
cg_exec /sys/fs/cgroup/plain /bin/cat $D/f4 >/dev/null
cg_exec /sys/fs/cgroup/vt /bin/cat $D/f5 >/dev/null
cg_exec /sys/fs/cgroup/vt $D/hello >/dev/null
sleep 2

# ---- host list vs host TPM (kernel TPM driver's sysfs), evmctl
nsimactl pcr --ns host # waits for pending extends
nsimactl log --ns host --format binary >/tmp/host.bin
nsimactl log --ns host >/tmp/host.ascii
cat /tmp/host.ascii
nsima_pcr_file sha1 /tmp/pcr-sha1
nsima_pcr_file sha256 /tmp/pcr-sha256
entries=$(wc -l </tmp/host.ascii)
nsima_evmctl_check /tmp/host.bin /tmp/pcr-sha1 /tmp/pcr-sha256 "$entries"
awk '{ print $1 }' /tmp/host.ascii | sort -u | tr '\n' ' ' | grep -qx "23 " ||
	nsima_fail "host entries not all on PCR 23"
# the host's policy judges every namespace below it too (f4, f5 were read in child namespaces)
for i in 1 2 3 4 5; do
	d=$(sha256sum $D/f$i | cut -d' ' -f1)
	grep -q " ima-ng sha256:$d $D/f$i\$" /tmp/host.ascii || nsima_fail "f$i not in the host list"
done
# the plain namespace's entries are in its own list and in its owner's (host) list
nsimactl log --ns "$plain" >/tmp/plain.ascii
grep -q " $D/f4\$" /tmp/plain.ascii || nsima_fail "f4 not in its namespace's list"
tail -n +2 /tmp/plain.ascii | while read -r line; do
	grep -qxF "$line" /tmp/host.ascii || nsima_fail "entry of namespace $plain not in the owner's list: $line"
done
# one flipped byte (inside the last entry's file digest) and evmctl refuses the list
cp /tmp/host.bin /tmp/host.bad
size=$(wc -c </tmp/host.bad)
printf '\377' | dd of=/tmp/host.bad bs=1 seek=$((size - 10)) conv=notrunc 2>/dev/null
if evmctl ima_measurement --ignore-violations --pcrs sha256,/tmp/pcr-sha256 --pcrs sha1,/tmp/pcr-sha1 /tmp/host.bad >/tmp/bad.out 2>&1; then
	cat /tmp/bad.out
	nsima_fail "evmctl accepted a list with a flipped byte"
fi

# ---- nsimactl log --follow prints entries as they are added
nsimactl log --ns host --follow >/tmp/follow.ascii 2>&1 &
FOLLOW=$!
sleep 1
echo "late file" >$D/late
cat $D/late >/dev/null
nsima_wait_for /tmp/follow.ascii " $D/late\$" 20
kill $FOLLOW
nsima_check_eq "$(head -n 1 /tmp/follow.ascii | awk '{ print $5 }')" boot_aggregate "first line of --follow"

# ---- vTPM namespace: quote, tpm2_checkquote, evmctl against the quoted PCR
nonce=0123456789abcdef0123456789abcdef
nsimactl quote --ns "$vt" --nonce $nonce --out /tmp/q
tpm2_checkquote -u /tmp/q/ak.pub.pem -m /tmp/q/quote.msg -s /tmp/q/quote.sig -f /tmp/q/quote.pcrs \
	-g sha256 -q $nonce >/tmp/q/check.out || nsima_fail "tpm2_checkquote rejected the quote"
if tpm2_checkquote -u /tmp/q/ak.pub.pem -m /tmp/q/quote.msg -s /tmp/q/quote.sig -f /tmp/q/quote.pcrs \
	-g sha256 -q deadbeef >/dev/null 2>&1; then
	nsima_fail "tpm2_checkquote accepted another nonce"
fi
cat /tmp/q/check.out
# quoted PCR values (sha1 and sha256 banks, PCR 10) -> evmctl --pcrs files
for bank in sha1 sha256; do
	v=$(awk -v b="$bank:" '$1 == b { on = 1; next } /^ *sha[0-9]*:/ { on = 0 } on && $1 == "10:" { print $2 }' /tmp/q/check.out | sed 's/^0x//' | tr 'A-F' 'a-f')
	[ -n "$v" ] || nsima_fail "no $bank PCR 10 in the quote"
	len=$([ $bank = sha1 ] && echo 40 || echo 64)
	zero=$(printf "%0${len}d" 0)
	i=0
	: >/tmp/vt-$bank
	while [ $i -lt 24 ]; do
		[ $i = 10 ] && val=$v || val=$zero
		printf 'PCR-%02d: %s\n' $i "$val" >>/tmp/vt-$bank
		i=$((i + 1))
	done
done
nsimactl log --ns "$vt" --format binary >/tmp/vt.bin
nsimactl log --ns "$vt" >/tmp/vt.ascii
cat /tmp/vt.ascii
nsima_check_eq "$(awk '{ print $1 }' /tmp/vt.ascii | sort -u)" 10 "PCR of the vTPM namespace's entries"
nsima_evmctl_check /tmp/vt.bin /tmp/vt-sha1 /tmp/vt-sha256 "$(wc -l </tmp/vt.ascii)"
nsima_check_eq "$(awk '{ print $5 }' /tmp/vt.ascii | tr '\n' ' ')" "boot_aggregate $D/f5 $D/hello " \
	"entries of the vTPM namespace's list"
nsimactl pcr --ns "$vt" | grep -q "matches the list" || nsima_fail "nsimactl pcr: vTPM PCR differs from the list"

nsima_stop
echo "measure_tpm_test: OK"
