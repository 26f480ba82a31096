#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# nsimactl works from another mount namespace: `log` (ascii, binary, --follow) and `quote` come
# over the control socket, never from nsimad's files. nsimactl runs under `unshare -m` with a
# tmpfs over /var/lib/nsima, where nsimad's list files do not exist, and still gets each list
# byte for byte as the file holds it; the quote files it writes there verify with
# tpm2_checkquote.
# vm-run-args: --tpm --add /usr/bin/swtpm --add /usr/bin/swtpm_ioctl --add /usr/bin/tpm2 --add /usr/bin/tpm2_checkquote
. /usr/share/nsima-test/nsima.sh
set -eu
set -o pipefail

D=/data/cl
mkdir -p $D /sys/fs/cgroup/vt
for i in 1 2 3 4 5; do echo "file $i" >$D/f$i; done
cat >/tmp/p.policy <<'POL'
measure func=FILE_CHECK mask=^MAY_READ uid=0 fsmagic=0xef53
POL

# other CMD...: CMD in a new mount namespace where /var/lib/nsima is an empty tmpfs.
other() {
	unshare -m sh -c 'mount --make-rprivate / && mount -t tmpfs other /var/lib/nsima &&
		[ -z "$(ls -A /var/lib/nsima)" ] && exec "$@"' sh "$@"
}
# list_path NS: the list file of a namespace, as nsimad reports it.
list_path() {
	nsima_json_field "$(nsimactl ns list --json | grep "\"id\":\"$1\"")" list
}
# wait_entries NS N: until the namespace's list holds N entries.
wait_entries() {
	i=0
	while [ "$(nsima_json_field "$(nsimactl ns list --json | grep "\"id\":\"$1\"")" entries)" != "$2" ]; do
		i=$((i + 1))
		[ $i -lt 200 ] || nsima_fail "list of namespace $1 did not reach $2 entries"
		sleep 0.1
	done
}

nsima_start --host-tcti device:/dev/tpmrm0 --policy /tmp/p.policy
vt=$(nsimactl ns create --cgroup /sys/fs/cgroup/vt --policy /tmp/p.policy --vtpm)
cat $D/f1 $D/f2 >/dev/null
cg_exec /sys/fs/cgroup/vt /bin/cat $D/f3 >/dev/null
wait_entries host 5 # boot_aggregate, the vTPM's creation record, f1, f2, f3 (the host's policy judges the child too)
wait_entries "$vt" 2
host_list=$(list_path host)
vt_list=$(list_path "$vt")
[ -s "$host_list" ] && [ -s "$vt_list" ] || nsima_fail "no list files at $host_list, $vt_list"
other sh -c "[ ! -e '$host_list' ] && [ ! -e '$vt_list' ]" ||
	nsima_fail "the list files are visible in the other mount namespace: the test proves nothing"

# ---- log, binary and ascii, from the other mount namespace
for ns in host $vt; do
	f=$([ $ns = host ] && echo "$host_list" || echo "$vt_list")
	other nsimactl log --ns $ns --format binary >/tmp/$ns.bin ||
		nsima_fail "nsimactl log --ns $ns --format binary failed in another mount namespace"
	cmp /tmp/$ns.bin "$f" || nsima_fail "binary list of $ns from another mount namespace differs from $f"
	other nsimactl log --ns $ns >/tmp/$ns.ascii ||
		nsima_fail "nsimactl log --ns $ns failed in another mount namespace"
	nsimactl log --ns $ns >/tmp/$ns.ascii.here
	cmp /tmp/$ns.ascii /tmp/$ns.ascii.here || nsima_fail "ascii list of $ns differs between mount namespaces"
	echo "--- $ns"
	cat /tmp/$ns.ascii
done
# (hashing is asynchronous: entries of files read together may come in any order)
nsima_check_eq "$(awk '{ print $5 }' /tmp/host.ascii | sort | tr '\n' ' ')" "$D/f1 $D/f2 $D/f3 boot_aggregate nsima:ns-$vt-vtpm-created:ek-none " \
	"entries of the host list"
nsima_check_eq "$(awk '{ print $5 }' /tmp/$vt.ascii | tr '\n' ' ')" "boot_aggregate $D/f3 " \
	"entries of the vTPM namespace's list"
for i in 1 2 3; do
	d=$(sha256sum $D/f$i | cut -d' ' -f1)
	grep -qx "23 [0-9a-f]\{40\} ima-ng sha256:$d $D/f$i" /tmp/host.ascii || nsima_fail "f$i in the host list"
done

# ---- --follow from the other mount namespace: new entries arrive, byte for byte
other nsimactl log --ns host --follow --format binary >/tmp/follow.bin &
FB=$!
other nsimactl log --ns host --follow >/tmp/follow.ascii &
FA=$!
nsima_wait_for /tmp/follow.ascii " $D/f3\$" 20
cat $D/f4 $D/f5 >/dev/null
wait_entries host 7
nsima_wait_for /tmp/follow.ascii " $D/f5\$" 20
i=0
while [ "$(wc -c </tmp/follow.bin)" -lt "$(wc -c <"$host_list")" ]; do
	i=$((i + 1))
	[ $i -lt 100 ] || nsima_fail "binary --follow did not catch up with $host_list"
	sleep 0.1
done
kill $FB $FA
wait $FB $FA 2>/dev/null || true # killed on purpose: their status is SIGTERM's
cmp /tmp/follow.bin "$host_list" || nsima_fail "binary --follow output differs from $host_list"
nsimactl log --ns host >/tmp/host.ascii.now
cmp /tmp/follow.ascii /tmp/host.ascii.now || nsima_fail "ascii --follow output differs from the list"

# ---- quote from the other mount namespace: the files are written where nsimactl runs
nonce=00112233445566778899aabbccddeeff
other sh -c "nsimactl quote --ns $vt --nonce $nonce --out /var/lib/nsima/q >/dev/null &&
	tpm2_checkquote -u /var/lib/nsima/q/ak.pub.pem -m /var/lib/nsima/q/quote.msg \
		-s /var/lib/nsima/q/quote.sig -f /var/lib/nsima/q/quote.pcrs -g sha256 -q $nonce >/tmp/check.out" ||
	nsima_fail "quote from another mount namespace did not verify"
[ ! -e /var/lib/nsima/q ] || nsima_fail "nsimad wrote the quote files in its own mount namespace"
grep -q "10:" /tmp/check.out || nsima_fail "no PCR 10 in the quote: $(cat /tmp/check.out)"

# ---- protocol errors name the field
out=$(other nsimactl log --ns nope 2>&1) && nsima_fail "log of a missing namespace succeeded"
nsima_check_contains "$out" "no such namespace" "log of a missing namespace"
nsima_stop
echo "control_log_test: OK"
