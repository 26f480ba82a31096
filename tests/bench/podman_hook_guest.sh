#!/bin/bash
# SPDX-License-Identifier: Apache-2.0
# Guest side of tests/bench/vm-podman-hook (Debian guest, the .deb installed).
set -euo pipefail
shopt -s inherit_errexit # a failed podman run inside $(...) ends the benchmark
n=${1:-5}
timeout 180 systemctl start nsimad.service
root=/tmp/bbroot
mkdir -p $root/bin $root/proc $root/sys $root/dev $root/tmp
cp /bin/busybox $root/bin/busybox
tar -C $root -c . | timeout 300 podman import - localhost/nsima-bench >/dev/null
mkdir -p /tmp/no-hooks
P=(podman --cgroup-manager=cgroupfs)
run() { # KIND: one `podman run`: ms from the command's start to the container's first exec
	local global=() args=() t0 t1
	case $1 in
	none) global=(--hooks-dir /tmp/no-hooks) ;;
	hook) ;;
	vtpm) args=(--annotation org.nsima.vtpm=true) ;;
	esac
	# start -> first exec: the container's first process prints the (shared) uptime
	t0=$(cut -d' ' -f1 /proc/uptime)
	t1=$(timeout 300 "${P[@]}" "${global[@]}" run "${args[@]}" --rm --network=none localhost/nsima-bench /bin/busybox cat /proc/uptime | cut -d' ' -f1)
	awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%d", (b - a) * 1000 }'
}
run none >/dev/null # warm the image and podman's caches
declare -A all=()
for ((i = 0; i < n; i++)); do
	for k in none hook vtpm; do
		all[$k]="${all[$k]:-} $(run $k)"
	done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
m_none=$(median <<<"${all[none]}")
m_hook=$(median <<<"${all[hook]}")
m_vtpm=$(median <<<"${all[vtpm]}")
echo "podman run, start to first exec (ms, median of $n): no hooks $m_none [${all[none]} ], nsima hook $m_hook [${all[hook]} ], nsima hook + vTPM $m_vtpm [${all[vtpm]} ]"
awk -v a="$m_none" -v b="$m_hook" -v c="$m_vtpm" 'BEGIN { printf "ratio: hook %.2fx, hook + vTPM %.2fx (goal without vTPM: <= 1.20x)\n", b / a, c / a }'
