#!/bin/bash
# Appraisal through podman and the OCI hook (annotations org.nsima.appraise, .keys, .digests,
# .policy): an enforcing container whose digest list names its image's busybox runs it, while an
# unlisted binary of the same image is refused at exec. A keys directory or a digest list that does not exist fails the start and leaves no
# namespace behind.
# vm-run-args: --timeout 900 --add @SRC@/tests/fixtures/keys/test-ec256.pem
# Broken once: without the org.nsima.digests annotation (the listed busybox was refused too).
set -euo pipefail
. /usr/share/nsima-test/lib.sh
trap 'rc=$?; if [ $rc != 0 ]; then journalctl --no-pager -t nsima-oci-hook -n 30 >&2 || :; journalctl -u nsimad.service --no-pager -n 40 >&2 || :; fi' EXIT
t() { timeout "$@"; }

t 180 systemctl start nsimad.service
root=/tmp/bbroot
mkdir -p $root/bin $root/proc $root/sys $root/dev $root/tmp
cp /bin/busybox $root/bin/busybox
tar -C $root -c . | t 300 podman import - localhost/nsima-bb >/dev/null
P=(podman --cgroup-manager=cgroupfs)
mkdir -p /etc/nsima/keys
cert=$(find / \( -path /proc -o -path /sys \) -prune -o -name test-ec256.pem -type f -print 2>/dev/null | head -n 1)
[[ -n $cert ]] || fail "test-ec256.pem not in the guest (vm-run-args --add)"
cp "$cert" /etc/nsima/keys/
before=$(t 30 nsimactl ns list --json | wc -l)

# appraise=log with a keys directory: the container runs, its namespace was made with them
t 300 "${P[@]}" run --rm --network=none --annotation org.nsima.appraise=log \
	--annotation org.nsima.keys=/etc/nsima/keys localhost/nsima-bb /bin/busybox true
assert_contains "$(journalctl --no-pager -q -t nsima-oci-hook)" "createRuntime: container" "hook ran"

# appraise=enforce with a policy appraising execs and a digest list naming the image's busybox
cat /bin/busybox /etc/hostname >$root/bin/unlisted # another binary: not in the list
chmod 755 $root/bin/unlisted
tar -C $root -c . | t 300 podman import - localhost/nsima-bb2 >/dev/null
printf 'measure func=BPRM_CHECK mask=MAY_EXEC\nappraise func=BPRM_CHECK\n' >/etc/nsima/exec-appraise.policy
(cd $root && sha256sum bin/busybox | sed 's|  bin/|  /bin/|') >/etc/nsima/bb.list
log "digest list: $(cat /etc/nsima/bb.list)"
A=(--annotation org.nsima.policy=/etc/nsima/exec-appraise.policy --annotation org.nsima.appraise=enforce
	--annotation org.nsima.digests=/etc/nsima/bb.list)
out=$(t 300 "${P[@]}" run --rm --network=none "${A[@]}" localhost/nsima-bb2 /bin/busybox echo listed-ran 2>&1) ||
	fail "the listed busybox did not run in an enforcing container: $out"
assert_contains "$out" "listed-ran" "the listed busybox ran"
rc=0
out=$(t 300 "${P[@]}" run --rm --network=none "${A[@]}" localhost/nsima-bb2 /bin/unlisted true 2>&1) || rc=$?
log "unlisted binary: rc=$rc: $out"
[[ $rc != 0 ]] || fail "an unlisted binary ran in an enforcing container"
assert_contains "$out" "ermission denied" "the unlisted binary's exec was refused"
assert_eq "$before" "$(t 30 nsimactl ns list --json | wc -l)" "poststop deleted the enforcing containers' namespaces"

# a keys directory that does not exist: nsimad refuses, the start fails, nothing is left
rc=0
t 300 "${P[@]}" run --rm --network=none --annotation org.nsima.appraise=enforce \
	--annotation org.nsima.keys=/etc/nsima/no-such-keys localhost/nsima-bb /bin/busybox true || rc=$?
[[ $rc != 0 ]] || fail "a container with a missing keys directory started"
assert_eq "$before" "$(t 30 nsimactl ns list --json | wc -l)" "no namespace left behind"

# a digest list that does not exist: the namespace is deleted again (never half made)
rc=0
t 300 "${P[@]}" run --rm --network=none --annotation org.nsima.digests=/etc/nsima/no-such.list \
	localhost/nsima-bb /bin/busybox true || rc=$?
[[ $rc != 0 ]] || fail "a container with a missing digest list started"
assert_eq "$before" "$(t 30 nsimactl ns list --json | wc -l)" "no namespace left behind (digests)"
log "ok"
