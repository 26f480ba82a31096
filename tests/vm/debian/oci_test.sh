#!/bin/bash
# nsima-oci-hook under real runtimes in a Debian guest (systemd, cgroup v2): podman (the .deb's
# hooks.d files, an image imported from a rootfs tarball, --network=none), runc and crun (hooks
# in config.json). Each container's first exec is in its own list (archived by poststop with its
# final PCRs) and not in a sibling's, a running container's vTPM quote passes tpm2_checkquote;
# a container whose org.nsima.policy names a missing file does
# not start, with the hook's sentence, and leaves no namespace behind.
# vm-run-args: --timeout 900
# A runc container killed with its runtime, its cgroup removed without poststop: nsimad ends the
# namespace and writes the same archive.
# Broken once each: the hook binding the parent cgroup (the sibling's start is refused), the hook
# ignoring org.nsima.vtpm (fails at 'vTPM container's archive has its PCR 10'), nsimad not
# ending gone cgroups (grace 1 h: fails waiting for the killed container's archive).
set -euo pipefail
. /usr/share/nsima-test/lib.sh
# on failure: what systemd, nsimad and the hook said
trap 'rc=$?; if [ $rc != 0 ]; then ls -l /run/nsima/oci /var/lib/nsima/archive >&2 || :; nsimactl ns list >&2 || :; journalctl --no-pager -t nsima-oci-hook -t podman -t conmon -n 60 >&2 || :; systemctl status nsimad.service --no-pager -l >&2 || :; journalctl -u nsimad.service --no-pager -n 80 >&2 || :; fi' EXIT

t() { timeout "$@"; }
archive_of() { # CONTAINER_ID: the archive directory poststop wrote (podman runs poststop in its cleanup)
	local d
	wait_for 30 sh -c "find /var/lib/nsima/archive -maxdepth 1 -name 'oci-$1-ns*' ! -name '*.partial' | grep -q ."
	d=$(find /var/lib/nsima/archive -maxdepth 1 -type d -name "oci-$1-ns*" ! -name '*.partial' | head -n 1)
	[[ -n $d ]] || fail "no archive for container $1 in /var/lib/nsima/archive: $(ls /var/lib/nsima/archive)"
	echo "$d"
}
check_own_list() { # CONTAINER_ID OWN_EXEC OTHER_EXEC
	local d paths
	d=$(archive_of "$1")
	paths=$(awk '{ print $5 }' "$d/ascii_runtime_measurements")
	grep -qxF -- "$2" <<<"$paths" || fail "container $1's list lacks its first exec $2: $paths"
	! grep -qxF -- "$3" <<<"$paths" || fail "container $1's list has its sibling's exec $3"
	assert_contains "$(cat "$d/container.json")" "\"container\": \"$1\"" "archive names the container"
	[[ -s $d/binary_runtime_measurements ]] || fail "no binary list in $d"
	log "container $1: $(wc -l <"$d/ascii_runtime_measurements") entries, archive $d"
}
ns_count() { t 30 nsimactl ns list --json | wc -l; }

t 180 systemctl start nsimad.service
log "nsimad: $(systemctl show -p StatusText --value nsimad.service)"

# A busybox root filesystem: one static busybox under three names, one per container.
root=/tmp/bbroot
mkdir -p $root/bin $root/proc $root/sys $root/dev $root/tmp $root/etc
for n in busybox busybox-a busybox-b busybox-r busybox-c; do cp /bin/busybox "$root/bin/$n"; done
ln -s busybox $root/bin/sh
echo 'root:x:0:0:root:/:/bin/sh' >$root/etc/passwd

# ---- podman: hooks.d from the .deb, two sibling containers at once
tar -C $root -c . | t 300 podman import - localhost/nsima-bb >/dev/null
P=(podman --cgroup-manager=cgroupfs)
"${P[@]}" info --format '{{.Host.OCIRuntime.Name}} {{.Host.CgroupsVersion}}' | while read -r rt cg; do log "podman: runtime $rt, cgroups $cg"; done
run_podman() { # NAME EXEC [ANNOTATIONS...]
	local name=$1 exe=$2
	shift 2
	t 300 "${P[@]}" run --rm --network=none --cidfile "/tmp/$name.cid" "$@" localhost/nsima-bb \
		"$exe" sh -c 'sleep 2'
}
before=$(ns_count)
run_podman a /bin/busybox-a --annotation org.nsima.builtin=container-measure --annotation org.nsima.vtpm=true &
pa=$!
run_podman b /bin/busybox-b --annotation org.nsima.builtin=container-measure &
pb=$!
wait $pa || fail "podman run a failed"
wait $pb || fail "podman run b failed"
check_own_list "$(cat /tmp/a.cid)" /bin/busybox-a /bin/busybox-b
check_own_list "$(cat /tmp/b.cid)" /bin/busybox-b /bin/busybox-a
pcrs=$(cat "$(archive_of "$(cat /tmp/a.cid)")/pcrs.json")
assert_contains "$pcrs" '"pcr": 10' "vTPM container's archive has its PCR 10"
sha=$(printf '%s\n' "$pcrs" | tr -d ' \n' | sed -n 's/.*"values":{[^}]*"sha256":"\([0-9a-f]*\)".*/\1/p')
exp=$(printf '%s\n' "$pcrs" | tr -d ' \n' | sed -n 's/.*"expected":{[^}]*"sha256":"\([0-9a-f]*\)".*/\1/p')
[[ -n $sha && $sha == "$exp" ]] || fail "final vTPM PCR 10 ($sha) is not the list's replay ($exp)"
assert_eq "$before" "$(ns_count)" "poststop deleted the podman containers' namespaces"

# a missing policy file: the start fails with the hook's sentence, no namespace is left
rc=0
out=$(t 300 "${P[@]}" run --rm --network=none --annotation org.nsima.policy=/etc/nsima/missing.policy \
	localhost/nsima-bb /bin/busybox true 2>&1) || rc=$?
log "podman with a missing policy: rc=$rc: $out"
[[ $rc != 0 ]] || fail "a container whose policy file is missing started"
assert_eq "$before" "$(ns_count)" "no namespace left by the failed start"
# crun says only "error executing hook ... (exit code: 1)"; the hook's sentence is in the journal
hook_said="the policy file /etc/nsima/missing.policy named by annotation org.nsima.policy cannot be read: No such file or directory"
assert_contains "$out" "error executing hook \`/usr/bin/nsima-oci-hook\`" "podman names the failing hook"
assert_contains "$(journalctl --no-pager -q -t nsima-oci-hook)" "createRuntime: $hook_said" "the hook's sentence in the journal"

# ---- runc and crun with hooks in config.json
bundle() { # DIR EXEC: an OCI bundle around the busybox root with nsima's hooks
	mkdir -p "$1"
	cp -a $root "$1/rootfs"
	cat >"$1/config.json" <<JSON
{
  "ociVersion": "1.0.2",
  "process": {"terminal": false, "user": {"uid": 0, "gid": 0}, "cwd": "/",
    "args": ["$2", "sh", "-c", "exit 0"], "env": ["PATH=/bin"], "noNewPrivileges": true},
  "root": {"path": "rootfs", "readonly": true},
  "hostname": "nsima",
  "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
  "hooks": {
    "createRuntime": [{"path": "/usr/bin/nsima-oci-hook", "args": ["nsima-oci-hook", "createRuntime"], "timeout": 60}],
    "poststop": [{"path": "/usr/bin/nsima-oci-hook", "args": ["nsima-oci-hook", "poststop"], "timeout": 60}]
  },
  "linux": {"namespaces": [{"type": "pid"}, {"type": "mount"}, {"type": "ipc"}, {"type": "uts"}]}
}
JSON
}
bundle /tmp/b-runc /bin/busybox-r
bundle /tmp/b-crun /bin/busybox-c
t 120 runc run --bundle /tmp/b-runc nsima-runc </dev/null
check_own_list nsima-runc /bin/busybox-r /bin/busybox-c
t 120 crun run --bundle /tmp/b-crun nsima-crun </dev/null
check_own_list nsima-crun /bin/busybox-c /bin/busybox-r
assert_eq "$before" "$(ns_count)" "poststop deleted the runc/crun namespaces"

# a running runc container with its own vTPM: its quote passes tpm2_checkquote
bundle /tmp/b-quote /bin/busybox-r
sed -i 's|"sh", "-c", "exit 0"|"sh", "-c", "sleep 30"|; s|"noNewPrivileges": true}|"noNewPrivileges": true},\n  "annotations": {"org.nsima.vtpm": "true"}|' /tmp/b-quote/config.json
t 120 runc run --bundle /tmp/b-quote nsima-quote </dev/null &
rq=$!
wait_for 60 test -s /run/nsima/oci/nsima-quote.json
qns=$(sed -n 's/.*"ns":"\([0-9]*\)".*/\1/p' /run/nsima/oci/nsima-quote.json)
[[ -n $qns ]] || fail "no namespace in /run/nsima/oci/nsima-quote.json: $(cat /run/nsima/oci/nsima-quote.json)"
nonce=$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')
t 120 nsimactl quote --ns "$qns" --nonce "$nonce" --out /tmp/q >/dev/null
t 60 tpm2_checkquote -u /tmp/q/ak.pub.pem -m /tmp/q/quote.msg -s /tmp/q/quote.sig -f /tmp/q/quote.pcrs -g sha256 -q "$nonce" >/dev/null
log "vTPM quote of runc container nsima-quote (namespace $qns) passes tpm2_checkquote"
t 30 runc kill nsima-quote KILL
wait $rq || true # killed on purpose
check_own_list nsima-quote /bin/busybox-r /bin/busybox-c

# the runtime killed, the container's cgroup removed, no poststop: nsimad ends the namespace
# itself (after cgroup_gone_grace_ms) and writes the archive poststop would have written
bundle /tmp/b-kill /bin/busybox-r
sed -i 's|"sh", "-c", "exit 0"|"sh", "-c", "sleep 300"|' /tmp/b-kill/config.json
t 120 runc run --bundle /tmp/b-kill nsima-kill </dev/null &
rk=$!
wait_for 60 test -s /run/nsima/oci/nsima-kill.json
kcg=$(sed -n 's/.*"cgroup":"\([^"]*\)".*/\1/p' /run/nsima/oci/nsima-kill.json)
kns=$(sed -n 's/.*"ns":"\([0-9]*\)".*/\1/p' /run/nsima/oci/nsima-kill.json)
[[ -n $kcg && -n $kns && -d $kcg ]] || fail "no cgroup/namespace in /run/nsima/oci/nsima-kill.json: $(cat /run/nsima/oci/nsima-kill.json)"
row=$(t 30 nsimactl ns list | awk -F'\t' -v n="$kns" '$1 == n')
assert_eq "nsima-kill" "$(cut -f10 <<<"$row")" "ns list shows the container id of namespace $kns"
rpid=""
for p in /proc/[0-9]*; do
	[[ $(tr '\0' ' ' <"$p/cmdline" 2>/dev/null) == "runc run --bundle /tmp/b-kill nsima-kill "* ]] && rpid=${p#/proc/}
done
[[ -n $rpid ]] || fail "no runc process for nsima-kill"
kill -9 "$rpid" $rk
wait $rk || true # killed on purpose: runc never runs poststop now
while read -r p; do kill -9 "$p" 2>/dev/null || :; done <"$kcg/cgroup.procs"
wait_for 30 sh -c "[ -z \"\$(cat $kcg/cgroup.procs)\" ]"
rmdir "$kcg"
d=$(archive_of nsima-kill)
assert_contains "$(cat "$d/container.json")" '"ended": "cgroup-gone"' "nsimad wrote the killed container's archive"
check_own_list nsima-kill /bin/busybox-r /bin/busybox-c
wait_for 30 sh -c "! nsimactl ns list --json | grep -q '\"id\":\"$kns\"'"
ls -d /var/lib/nsima/archive/"$kns".cgroup-gone-* >/dev/null || fail "no archive/$kns.cgroup-gone-* (ended.json, vTPM state)"
t 60 runc delete -f nsima-kill 2>/dev/null || : # runc's own state; its poststop finds the namespace gone
assert_eq "$before" "$(ns_count)" "the killed container's namespace was ended"

# runc relays the hook's stderr: the missing-policy sentence reaches the user
sed -i 's|"noNewPrivileges": true}|"noNewPrivileges": true},\n  "annotations": {"org.nsima.policy": "/etc/nsima/missing.policy"}|' /tmp/b-runc/config.json
rc=0
out=$(t 120 runc run --bundle /tmp/b-runc nsima-bad </dev/null 2>&1) || rc=$?
[[ $rc != 0 ]] || fail "runc started a container whose policy file is missing"
assert_contains "$out" "nsima-oci-hook createRuntime: $hook_said" "runc's error relays the hook's sentence"
t 30 runc delete -f nsima-bad 2>/dev/null || true
assert_eq "$before" "$(ns_count)" "no namespace left by the failed runc start"
# ---- malformed OCI state on stdin, as a runtime could pass it: one sentence, a non-zero exit,
# no namespace half made (the installed hook, the real /proc and cgroup2 of this guest)
hook_refuses() { # WHAT SENTENCE-PART STATE
	local rc=0 out
	out=$(printf '%s' "$3" | t 30 /usr/bin/nsima-oci-hook createRuntime 2>&1) || rc=$?
	[[ $rc != 0 ]] || fail "the hook accepted $1: $out"
	[[ $(wc -l <<<"$out") == 1 ]] || fail "the hook said more than one line for $1: $out"
	assert_contains "$out" "nsima-oci-hook createRuntime: $2" "the hook's sentence for $1"
	assert_eq "$before" "$(ns_count)" "no namespace left by $1"
	log "$1: $out"
}
state() { printf '{"ociVersion":"1.0.2","id":"%s","status":"creating","pid":%s,"bundle":"/tmp/b-runc","annotations":{}}' "$1" "$2"; }
sleep 120 &
live=$!
mkdir -p /sys/fs/cgroup/nsima-bad-$$
echo $live >/sys/fs/cgroup/nsima-bad-$$/cgroup.procs
hook_refuses "truncated JSON" "the OCI state on stdin is not valid JSON" "$(state bad-trunc $live | head -c 40)"
hook_refuses "a state without pid" 'the OCI state has no "pid" (createRuntime needs the container'"'"'s host pid)' \
	'{"ociVersion":"1.0.2","id":"bad-nopid","status":"creating","bundle":"/tmp/b-runc"}'
sh -c 'exit 0' &
gone=$!
wait $gone
hook_refuses "a pid that is gone" "process $gone named by the OCI state is gone" "$(state bad-gone $gone)"
# a cgroup v1 host: a named v1 hierarchy mounted makes every /proc/PID/cgroup list it (hybrid)
mkdir -p /tmp/cgv1
mount -t cgroup -o none,name=nsimav1 nsimav1 /tmp/cgv1
hook_refuses "a cgroup v1 host" "this host uses cgroup v1 (/proc/$live/cgroup lists v1 hierarchies)" "$(state bad-v1 $live)"
umount /tmp/cgv1
hook_refuses "a container id with a slash" 'the OCI state'"'"'s container id "../x"' "$(state ../x $live)"
kill $live
wait $live || : # killed on purpose
rmdir /sys/fs/cgroup/nsima-bad-$$
log "ok"
