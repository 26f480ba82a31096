#!/bin/bash
# `cmake --install --prefix DIR` as a new user would run it: every path in the installed unit and
# hooks.d files is under DIR and exists, `systemd-analyze verify` passes, the unit's exposure
# stays at most 4.0 (`systemd-analyze security --offline`), nsimad reads the installed config
# (and names file:line:column for a bad one), and nsima-oci-hook answers malformed OCI state with
# one sentence and a non-zero exit before it talks to nsimad (the state parsed by the installed
# nsima-parse: a hook that cannot find it fails naming it).
# (EXPECTED of hook() is a bash pattern: * matches the parser's own wording.)
# usage: install_test.sh BUILD_DIR
set -euo pipefail
build=$1
fail() { echo "FAIL: $*" >&2; exit 1; }
dir=$(mktemp -d /tmp/nsima-install.XXXXXX)
trap 'rm -rf "$dir"' EXIT
p=$dir/prefix
timeout 300 cmake --install "$build" --prefix "$p" >"$dir/install.log" 2>&1 || { cat "$dir/install.log"; fail "cmake --install"; }
unit=$p/lib/systemd/system/nsimad.service
[[ -f $unit ]] || fail "no $unit"
exec_start=$(sed -n 's/^ExecStart=//p' "$unit")
[[ $exec_start == "$p/bin/nsimad --config $p/etc/nsima/nsimad.conf" ]] || fail "ExecStart=$exec_start"
for d in $(sed -n 's|^Documentation=file://||p' "$unit"); do
	[[ -f $d ]] || fail "Documentation= names $d, which is not installed"
done
[[ -x $p/bin/nsima-oci-hook && -f $p/etc/nsima/nsimad.conf && -f $p/lib/tmpfiles.d/nsima.conf ]] || fail "missing installed files"
# the confined parser nsimad and the hook start (daemon/confine): where default_worker_path() looks
[[ -x $p/libexec/nsima/nsima-parse ]] || fail "no $p/libexec/nsima/nsima-parse"
out=$(timeout 10 "$p/libexec/nsima/nsima-parse" 2>&1 </dev/null) && fail "nsima-parse ran without its socket"
[[ $out == "nsima-parse: started by nsimad or nsima-oci-hook only (fd 3 is its socket)" ]] || fail "nsima-parse said '$out'"
SYSTEMD_LOG_LEVEL=notice timeout 60 systemd-analyze verify "$unit" || fail "systemd-analyze verify $unit"
timeout 60 systemd-analyze security --offline=true --threshold=40 --no-pager "$unit" >"$dir/security.txt" 2>&1 ||
	{ tail -n 5 "$dir/security.txt"; fail "systemd-analyze security: exposure above 4.0"; }
echo "$(tail -n 1 "$dir/security.txt")"
for s in createRuntime poststop; do
	j=$p/share/containers/oci/hooks.d/nsima-$s.json
	python3 -c 'import json,sys; h=json.load(open(sys.argv[1])); assert h["version"]=="1.0.0"; assert h["stages"]==[sys.argv[2]]; assert h["hook"]["args"][1]==sys.argv[2]; print(h["hook"]["path"])' "$j" "$s" >"$dir/path" || fail "$j"
	[[ $(cat "$dir/path") == "$p/bin/nsima-oci-hook" ]] || fail "$j names $(cat "$dir/path")"
done

# nsimad reads the installed config (--unload with nothing pinned exits at once, after the config)
out=$(timeout 30 "$p/bin/nsimad" --config "$p/etc/nsima/nsimad.conf" --unload --pin-dir "$dir/nopins" 2>&1) || fail "nsimad with the installed config: $out"
printf '[host]\npcr = 99\n' >"$dir/bad.conf"
rc=0
out=$(timeout 30 "$p/bin/nsimad" --config "$dir/bad.conf" --unload --pin-dir "$dir/nopins" 2>&1) || rc=$?
[[ $rc != 0 && $out == "nsimad: $dir/bad.conf:2:7: [host] pcr must be an integer from 0 to 23, got the integer 99" ]] || fail "bad config: rc=$rc '$out'"
out=$(timeout 30 "$p/bin/nsimad" --config "$dir/missing.conf" --unload 2>&1) && fail "a missing --config file was accepted"
[[ $out == *"$dir/missing.conf: cannot read the config file: No such file or directory"* ]] || fail "missing config: '$out'"

# nsima-oci-hook: malformed state is one sentence and a non-zero exit (no nsimad needed to say so)
hook() { # EXPECTED_SENTENCE STATE [HOOK ARGS...]
	local rc=0 out
	out=$(printf '%s' "$2" | timeout 30 "$p/bin/nsima-oci-hook" createRuntime --config "$p/etc/nsima/nsimad.conf" --socket "$dir/none.sock" "${@:3}" 2>&1) || rc=$?
	[[ $rc != 0 ]] || fail "hook accepted: $2"
	# shellcheck disable=SC2053 # $1 is a pattern
	[[ $out == "nsima-oci-hook createRuntime: "$1 ]] || fail "hook said '$out', expected '$1'"
	[[ $(printf '%s\n' "$out" | wc -l) == 1 ]] || fail "more than one line: $out"
}
hook 'the OCI state on stdin is not valid JSON (parse error at line 1, column 37: syntax error *)' '{"ociVersion":"1.0.2","id":"c1","pid'
hook 'the OCI state has no "pid" (createRuntime needs the container'"'"'s host pid)' '{"ociVersion":"1.0.2","id":"c1","status":"creating","bundle":"/b"}'
hook 'the OCI state has pid 0 (createRuntime needs the container'"'"'s host pid)' '{"ociVersion":"1.0","id":"c1","pid":0}'
gone=$(($(cat /proc/sys/kernel/pid_max) + 1)) # no process has it
hook "process $gone named by the OCI state is gone (no /proc/$gone/cgroup)" "{\"ociVersion\":\"1.0\",\"id\":\"c1\",\"pid\":$gone}"
hook 'the OCI state on stdin is empty (a runtime passes the container state as JSON)' ''
hook 'the OCI state could not be parsed: parser-unavailable: *' '{"ociVersion":"1.0","id":"c1","pid":1}' --parser "$dir/no-parser"
echo "install_test: ok"
