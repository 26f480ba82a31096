#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Namespace resolution never fails open (hole 1), on the real hooks with a 16-entry cgroup
# cache: a cached "in no namespace" answer does not outlive the registration of an ancestor; a
# cgroup created after its siblings were cached resolves; every one of 300 child cgroups of a
# namespace (far more than the cache holds), and a task 40 levels deep, gets events tagged
# with the namespace; a cgroup too deep for the hooks' walk is refused as a namespace.
. /usr/share/nsima-test/nsima.sh
set -eu

N=300
D=/data/cg
mkdir -p "$D"
i=0
while [ $i -lt $N ]; do
	echo "$i" >"$D/f$i"
	i=$((i + 1))
done
for f in late1 late2 late3 deep; do echo "$f" >"$D/$f"; done
P=/sys/fs/cgroup/big
L=/sys/fs/cgroup/late
mkdir -p "$P" "$L/s1"
i=0
while [ $i -lt $N ]; do
	mkdir "$P/c$i"
	i=$((i + 1))
done

# watch_ns CGROUP LOG: makes CGROUP a namespace and watches it, prints the namespace id
watch_ns() {
	nsimactl ns create --cgroup "$1" --no-policy >/dev/null
	nsimactl watch --cgroup "$1" >"$2" 2>"$2.err" &
	nsima_wait_for "$2.err" "watching namespace"
	sed -n 's/.*watching namespace "*\([0-9]*\)"*.*/\1/p' "$2.err"
}
# wait_count N FILE REGEX...: until exactly N lines of FILE match every REGEX (30 s)
wait_count() {
	want=$1
	shift
	k=0
	while [ "$(nsima_count "$@")" -lt "$want" ]; do
		k=$((k + 1))
		[ $k -lt 300 ] || break
		sleep 0.1
	done
	nsima_count "$@"
}

nsima_start --cgroup-cache-entries 16

# 1. a sibling's "none" cached before its parent became a namespace
out=$(cg_exec "$L/s1" /bin/cat "$D/late1")
nsima_check_eq "$out" late1 "cat in a cgroup of no namespace"
nsL=$(watch_ns "$L" /tmp/late.log)
[ -n "$nsL" ] || nsima_fail "no namespace id for $L"
cg_exec "$L/s1" /bin/cat "$D/late2" >/dev/null
n=$(wait_count 1 /tmp/late.log "\"path\":\"$D/late2\"" "\"ns_id\":$nsL,")
nsima_check_eq "$n" 1 "events of $L/s1 (cached as in no namespace) after $L was registered"
# a cgroup created after its sibling's walk was cached
mkdir "$L/s2"
cg_exec "$L/s2" /bin/cat "$D/late3" >/dev/null
n=$(wait_count 1 /tmp/late.log "\"path\":\"$D/late3\"" "\"ns_id\":$nsL,")
nsima_check_eq "$n" 1 "events of $L/s2, created after its sibling was cached"
nsima_check_eq "$(nsima_count /tmp/late.log "\"path\":\"$D/late1\"")" 0 \
	"events of the access made before $L was a namespace"

# 2. many more cgroups than the cache holds
ns=$(watch_ns "$P" /tmp/big.log)
[ -n "$ns" ] || nsima_fail "no namespace id for $P"
i=0
while [ $i -lt $N ]; do
	out=$(cg_exec "$P/c$i" /bin/cat "$D/f$i")
	nsima_check_eq "$out" "$i" "cat $D/f$i in $P/c$i"
	i=$((i + 1))
done
n=$(wait_count $N /tmp/big.log '"hook":"file_open"' "\"path\":\"$D/f[0-9]*\"")
nsima_check_eq "$n" $N "file_open events of $D/f* from the $N children of $P"
n=$(nsima_count /tmp/big.log '"hook":"file_open"' "\"path\":\"$D/f[0-9]*\"" "\"ns_id\":$ns,")
nsima_check_eq "$n" $N "of them tagged with namespace $ns"
# one per file and child: the cgroup ids are the children's
i=0
while [ $i -lt $N ]; do
	line=$(grep "\"path\":\"$D/f$i\"" /tmp/big.log | grep '"hook":"file_open"')
	nsima_check_eq "$(nsima_json_field "$line" cgroup_id)" "$(stat -c %i "$P/c$i")" "cgroup of the f$i event"
	i=$((i + 1))
done

# 3. a task 40 levels below the root, in namespace $ns (level 1)
deep=$P/c0
lvl=2
while [ $lvl -lt 40 ]; do
	deep=$deep/d
	lvl=$((lvl + 1))
done
mkdir -p "$deep"
cg_exec "$deep" /bin/cat "$D/deep" >/dev/null
n=$(wait_count 1 /tmp/big.log "\"path\":\"$D/deep\"" "\"ns_id\":$ns,")
nsima_check_eq "$n" 1 "events of a task at cgroup level 40"
# 4. a namespace where the walk (levels 0..31) would not see it is refused
tooDeep=$P/c1
lvl=2
while [ $lvl -lt 32 ]; do
	tooDeep=$tooDeep/d
	lvl=$((lvl + 1))
done
mkdir -p "$tooDeep"
out=$(nsimactl ns create --cgroup "$tooDeep" --no-policy 2>&1) && nsima_fail "a namespace at cgroup level 32 was created: $out"
nsima_check_contains "$out" "deep" "ns create at level 32"
ok=$(nsimactl ns create --cgroup "${tooDeep%/d}" --no-policy)
[ -n "$ok" ] || nsima_fail "no namespace at level 31"

nsima_stop
echo "capture_cgroups_test: OK"
