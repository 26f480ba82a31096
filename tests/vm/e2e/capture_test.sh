#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# The capture path on the real 6.1 kernel: events from the BPF-LSM hooks for processes in a
# registered cgroup (exec, open, exec-mmap), nothing for other cgroups, silence for repeats,
# and verdicts: deny makes open and exec fail with EACCES in that namespace only, and a rewrite
# of a file invalidates its judged verdict but not an operator's deny (every version).
. /usr/share/nsima-test/nsima.sh
set -eu

D=/data/capture
mkdir -p "$D"
cp "$(command -v hello)" "$D/hello"
cp "$(command -v mmap_exec)" /tmp/mmap_exec
echo one >"$D/f"
echo two >"$D/g"
LIB=$(ls /lib/x86_64-linux-gnu/libc.so.6)
cp "$LIB" "$D/libtest.so"
for c in a b c; do mkdir -p /sys/fs/cgroup/$c; done
A=/sys/fs/cgroup/a B=/sys/fs/cgroup/b C=/sys/fs/cgroup/c

nsima_start
# watch never creates a namespace: make them first
nsimactl ns create --cgroup $A --no-policy >/dev/null
nsimactl ns create --cgroup $C --no-policy >/dev/null
nsimactl watch --cgroup $A >/tmp/wa.log 2>/tmp/wa.err &
WA=$!
nsimactl watch --cgroup $C >/tmp/wc.log 2>/tmp/wc.err &
WC=$!
nsima_wait_for /tmp/wa.err "watching namespace"
nsima_wait_for /tmp/wc.err "watching namespace"

# 1. exec: one bprm_check event with the cgroup id, path and inode of the binary
CGA=$(stat -c %i $A)
out=$(cg_exec $A "$D/hello")
nsima_check_eq "$out" hello "exec of $D/hello"
nsima_wait_for /tmp/wa.log "\"hook\":\"bprm_check\".*\"path\":\"$D/hello\""
n=$(nsima_count /tmp/wa.log '"hook":"bprm_check"' "\"path\":\"$D/hello\"")
nsima_check_eq "$n" 1 "bprm_check events for $D/hello"
line=$(grep '"hook":"bprm_check"' /tmp/wa.log | grep "\"path\":\"$D/hello\"")
nsima_check_eq "$(nsima_json_field "$line" cgroup_id)" "$CGA" "cgroup_id of the exec event"
nsima_check_eq "$(nsima_json_field "$line" ino)" "$(stat -c %i "$D/hello")" "ino of the exec event"
nsima_check_eq "$(nsima_json_field "$line" mask)" 1 "mask of the exec event (MAY_EXEC)"
nsima_check_eq "$(nsima_json_field "$line" fsname)" ext4 "fsname of the exec event"
# the task's root (what the path is relative to) and its process's start time travel along
nsima_check_eq "$(nsima_json_field "$line" root_ino)" "$(stat -c %i /)" "root_ino of the exec event"
[ "$(nsima_json_field "$line" start_boottime)" -gt 0 ] || nsima_fail "start_boottime of the exec event is 0"
# the exec open is a FILE_CHECK with MAY_EXEC, as IMA sees it
n=$(nsima_count /tmp/wa.log '"hook":"file_open"' "\"path\":\"$D/hello\"" '"mask":1,')
nsima_check_eq "$n" 1 "exec-open file_open events for $D/hello"

# 2. open for read: file_open with path, mask MAY_READ and the open flags
out=$(cg_exec $A /bin/cat "$D/f")
nsima_check_eq "$out" one "cat $D/f"
nsima_wait_for /tmp/wa.log "\"hook\":\"file_open\".*\"path\":\"$D/f\""
line=$(grep '"hook":"file_open"' /tmp/wa.log | grep "\"path\":\"$D/f\"")
nsima_check_eq "$(nsima_json_field "$line" mask)" 4 "mask of the read open (MAY_READ)"
flags=$(nsima_json_field "$line" f_flags)
nsima_check_eq "$((flags & 3))" 0 "O_ACCMODE of the read open"
# open for write + append: MAY_WRITE|MAY_APPEND
cg_exec $A /bin/sh -c "echo more >> $D/g"
nsima_wait_for /tmp/wa.log "\"hook\":\"file_open\".*\"path\":\"$D/g\""
line=$(grep '"hook":"file_open"' /tmp/wa.log | grep "\"path\":\"$D/g\"" | head -n 1)
nsima_check_eq "$(nsima_json_field "$line" mask)" 10 "mask of an O_APPEND write open"

# 3. mmap PROT_EXEC of a shared library
out=$(cg_exec $A /tmp/mmap_exec "$D/libtest.so")
nsima_check_eq "$out" ok "mmap_exec $D/libtest.so"
nsima_wait_for /tmp/wa.log "\"hook\":\"mmap_file\".*\"path\":\"$D/libtest.so\""
line=$(grep '"hook":"mmap_file"' /tmp/wa.log | grep "\"path\":\"$D/libtest.so\"")
nsima_check_eq "$(nsima_json_field "$line" prot)" 5 "prot of the exec mmap"
nsima_check_eq "$(nsima_json_field "$line" reqprot)" 5 "reqprot of the exec mmap"

# 4. a process in an unregistered cgroup gives no event
sleep 0.5
before=$(nsima_stat emitted)
out=$(cg_exec $B /bin/cat "$D/f")
nsima_check_eq "$out" one "cat in unregistered cgroup"
sleep 1
after=$(nsima_stat emitted)
nsima_check_eq "$after" "$before" "events emitted for an unregistered cgroup"

# 5. a second open of an allowed, unchanged file gives no event
echo fresh >"$D/h"
cg_exec $A /bin/cat "$D/h" >/dev/null
nsima_wait_for /tmp/wa.log "\"path\":\"$D/h\""
sleep 0.5
quiet_before=$(nsima_stat quiet)
cg_exec $A /bin/cat "$D/h" >/dev/null
sleep 1
n=$(nsima_count /tmp/wa.log '"hook":"file_open"' "\"path\":\"$D/h\"")
nsima_check_eq "$n" 1 "file_open events for two opens of unchanged $D/h"
quiet_after=$(nsima_stat quiet)
[ "$quiet_after" -gt "$quiet_before" ] || nsima_fail "the hot path did not count the silenced open"

# 6. deny: open and exec fail with EACCES in namespace a only
nsimactl deny --cgroup $A --root / "$D/f"
nsimactl deny --cgroup $A --root / "$D/hello"
denied_before=$(nsima_stat denied)
out=$(cg_exec $A /bin/cat "$D/f" 2>&1 || true)
nsima_check_contains "$out" "Permission denied" "cat of a denied file"
rc=0
out=$(cg_exec $A "$D/hello" 2>&1) || rc=$?
nsima_check_eq "$rc" 126 "exit status of exec of a denied binary"
nsima_check_contains "$out" "Permission denied" "exec of a denied binary"
out=$(cg_exec $A /bin/cat "$D/g")
nsima_check_contains "$out" two "another file in the same namespace"
out=$(cg_exec $C /bin/cat "$D/f")
nsima_check_eq "$out" one "the denied file in another namespace"
out=$(cg_exec $C "$D/hello")
nsima_check_eq "$out" hello "the denied binary in another namespace"
denied_after=$(nsima_stat denied)
[ "$denied_after" -ge $((denied_before + 2)) ] || nsima_fail "denials not counted ($denied_before -> $denied_after)"
# allow lifts the deny
nsimactl allow --cgroup $A --root / "$D/hello"
out=$(cg_exec $A "$D/hello")
nsima_check_eq "$out" hello "exec after nsimactl allow"

# 7. an operator deny holds for every version of the file: a rewrite does not lift it
echo three >"$D/f"
out=$(cg_exec $A /bin/cat "$D/f" 2>&1) && nsima_fail "a rewrite lifted the operator's deny ($out)"
nsima_check_contains "$out" "Permission denied" "cat of a denied file after a rewrite"
nsimactl allow --cgroup $A --root / "$D/f"
out=$(cg_exec $A /bin/cat "$D/f")
nsima_check_eq "$out" three "cat after allow"
# 8. a judged verdict is for one version: rewriting a silenced file gives a new event
events_before=$(nsima_count /tmp/wa.log '"hook":"file_open"' "\"path\":\"$D/h\"")
echo changed >"$D/h"
out=$(cg_exec $A /bin/cat "$D/h")
nsima_check_eq "$out" changed "cat after the file was rewritten"
# (event JSON keys are sorted: flags < hook < path) flags 32 = NSIMA_EV_STALE
nsima_wait_for /tmp/wa.log "\"flags\":32,.*\"hook\":\"file_open\".*\"path\":\"$D/h\""
events_after=$(nsima_count /tmp/wa.log '"hook":"file_open"' "\"path\":\"$D/h\"")
nsima_check_eq "$events_after" $((events_before + 1)) "file_open events for $D/h after rewrite"

kill $WA $WC
nsima_stop
grep -q "events emitted" "$NSIMAD_LOG" || nsima_fail "nsimad did not shut down cleanly"
echo "capture_test: OK"
