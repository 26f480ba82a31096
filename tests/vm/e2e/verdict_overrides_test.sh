#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# Operator denies are never lost: `nsimactl deny PATH` resolves PATH in the namespace's own root
# (a chroot'ed container's file, not the host's file at the same path); the deny survives a
# policy load, reaches a namespace created below the denied one, survives nsimad restarts (kept
# in overrides.json apart from the verdict cache); allow lifts it again.
. /usr/share/nsima-test/nsima.sh
set -eu

A=/sys/fs/cgroup/ctr
mkdir -p $A /data/ov
echo host >/data/ov/f
# the container's root: another /data/ov/f at the same path
R=/data/rootfs
mkdir -p $R/bin $R/data/ov
cp /bin/busybox $R/bin/busybox
for a in cat sleep sh; do ln -s busybox $R/bin/$a; done
echo container >$R/data/ov/f
cat >/tmp/p.policy <<'POL'
measure func=FILE_CHECK mask=^MAY_READ
POL

in_ctr() { # CGROUP CMD...: run CMD inside the container root, in CGROUP
	cg=$1
	shift
	cg_exec "$cg" /usr/sbin/chroot $R "$@"
}
denied() { # CGROUP WHAT: cat of the container's /data/ov/f must be refused
	out=$(in_ctr "$1" /bin/cat /data/ov/f 2>&1) && nsima_fail "$2: read was allowed ($out)"
	nsima_check_contains "$out" "Permission denied" "$2"
}
allowed() { # CGROUP WHAT
	out=$(in_ctr "$1" /bin/cat /data/ov/f 2>&1) || nsima_fail "$2: read was refused ($out)"
	nsima_check_eq "$out" container "$2"
}

nsima_start
ns=$(nsimactl ns create --cgroup $A --policy /tmp/p.policy)
# a long-lived process of the container lends its root to path resolution
in_ctr $A /bin/sleep 600 &
SLEEPER=$!
nsima_wait_for $A/cgroup.procs '[0-9]' 10
allowed $A "container file before the deny"

# 1. PATH as the container sees it
nsimactl deny --cgroup $A /data/ov/f
denied $A "the container's file after deny"
out=$(cg_exec $A /bin/cat /data/ov/f)
nsima_check_eq "$out" host "the host's file at the same path is not the one denied"

# 2. a policy load judges every file again, but keeps the operator's deny
nsimactl policy load --ns "$ns" /tmp/p.policy
denied $A "after policy load"

# 3. a namespace created below the denied one is denied too
mkdir -p $A/sub
sub=$(nsimactl ns create --cgroup $A/sub --policy /tmp/p.policy)
denied $A/sub "in namespace $sub created below $ns"
# and cannot lift its ancestor's deny
rc=0
out=$(nsimactl allow --cgroup $A/sub --root $R /data/ov/f 2>&1) || rc=$?
[ $rc -ne 0 ] || nsima_fail "allow in a child lifted the ancestor's deny"
nsima_check_contains "$out" "denied by namespace $ns" "allow in the child"
denied $A/sub "after the refused allow"

# 4. restarts keep it (the verdict map starts empty; overrides.json brings it back)
nsima_stop
nsima_start
denied $A "after an nsimad restart"
denied $A/sub "in the child after an nsimad restart"
grep -q '"path": "/data/ov/f"' /var/lib/nsima/overrides.json || nsima_fail "deny not in overrides.json"

# 5. allow in the namespace that denied lifts it there and below
nsimactl allow --cgroup $A /data/ov/f
allowed $A "after allow"
allowed $A/sub "in the child after allow"

kill $SLEEPER
nsima_stop
echo "verdict_overrides_test: OK"
