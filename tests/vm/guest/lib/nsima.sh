# SPDX-License-Identifier: Apache-2.0
# Guest-side helpers for nsima's VM tests (busybox sh). Source it:
#   . /usr/share/nsima-test/nsima.sh
# Every helper fails the test (exit 1) with a message naming what was expected.

NSIMA_SOCK=${NSIMA_SOCK:-/run/nsima/nsimad.sock}
NSIMAD_LOG=${NSIMAD_LOG:-/tmp/nsimad.log}

nsima_fail() {
	echo "FAIL: $*" >&2
	if [ -f "$NSIMAD_LOG" ]; then
		echo "--- nsimad log (tail) ---" >&2
		tail -n 30 "$NSIMAD_LOG" >&2
	fi
	exit 1
}

nsima_check_eq() { # ACTUAL EXPECTED WHAT
	[ "$1" = "$2" ] || nsima_fail "$3: expected '$2', got '$1'"
}

# nsima_check_same_entry PATH KERNEL_LIST NSIMA_LIST: PATH is in both ascii lists exactly once,
# the entries byte-identical but for the PCR column (kernel IMA's 10, nsima's host 23).
nsima_check_same_entry() {
	k=$(grep -c " $1\$" "$2" || true) # grep -c exits 1 on no match; the count is checked
	n=$(grep -c " $1\$" "$3" || true)
	nsima_check_eq "$k" 1 "kernel IMA entries for $1"
	nsima_check_eq "$n" 1 "nsima entries for $1"
	kl=$(grep " $1\$" "$2")
	nl=$(grep " $1\$" "$3")
	echo "kernel: $kl"
	echo "nsima:  $nl"
	nsima_check_eq "$(echo "$nl" | cut -d' ' -f2-)" "$(echo "$kl" | cut -d' ' -f2-)" \
		"template digest, template, file digest and path of $1"
	nsima_check_eq "$(echo "$kl" | cut -d' ' -f1)" 10 "kernel IMA's PCR"
	nsima_check_eq "$(echo "$nl" | cut -d' ' -f1)" 23 "nsima's host PCR"
}

nsima_check_contains() { # HAYSTACK NEEDLE WHAT
	case "$1" in *"$2"*) ;; *) nsima_fail "$3: '$2' not in '$1'" ;; esac
}

# nsima_start [nsimad args...]: starts nsimad in the background, waits for its socket
# (NSIMA_START_SECONDS, 30 by default; benchmarks on a loaded TCG guest give it more).
nsima_start() {
	nsimad "$@" >"$NSIMAD_LOG" 2>&1 &
	NSIMAD_PID=$!
	i=0
	t=$((${NSIMA_START_SECONDS:-30} * 10))
	while [ ! -S "$NSIMA_SOCK" ]; do
		kill -0 "$NSIMAD_PID" 2>/dev/null || nsima_fail "nsimad exited during start-up"
		i=$((i + 1))
		[ $i -lt $t ] || nsima_fail "nsimad did not open $NSIMA_SOCK within ${NSIMA_START_SECONDS:-30} s"
		sleep 0.1
	done
	grep -q "ready" "$NSIMAD_LOG" || sleep 0.2
}

# nsima_stop [--check]: SIGTERM, then waits 10 s for nsimad to exit; --check: its exit status
# must be 0.
nsima_stop() {
	[ -n "${NSIMAD_PID:-}" ] || return 0
	kill -TERM "$NSIMAD_PID" 2>/dev/null || true
	i=0
	while kill -0 "$NSIMAD_PID" 2>/dev/null; do
		i=$((i + 1))
		[ $i -lt 100 ] || nsima_fail "nsimad did not exit within 10 s of SIGTERM"
		sleep 0.1
	done
	rc=0
	wait "$NSIMAD_PID" 2>/dev/null || rc=$?
	NSIMAD_PID=
	[ "${1:-}" != --check ] || [ $rc -eq 0 ] || nsima_fail "nsimad exited with status $rc"
}

# nsima_wait_for FILE REGEX [SECONDS]: waits until a line of FILE matches (grep -E).
nsima_wait_for() {
	t=$((${3:-20} * 10))
	i=0
	while ! grep -Eq "$2" "$1" 2>/dev/null; do
		i=$((i + 1))
		[ $i -lt $t ] || nsima_fail "no line matching '$2' in $1 within ${3:-20} s"
		sleep 0.1
	done
}

# nsima_count FILE REGEX...: lines of FILE matching every REGEX.
nsima_count() {
	f=$1
	shift
	out=$(cat "$f")
	for re in "$@"; do
		out=$(printf '%s\n' "$out" | grep -E -- "$re" || true)
	done
	[ -z "$out" ] && echo 0 || printf '%s\n' "$out" | wc -l
}

# nsima_json_field LINE FIELD: the value of "FIELD" in a flat JSON line (number or string).
nsima_json_field() {
	printf '%s\n' "$1" | sed -n "s/.*\"$2\":\(\"[^\"]*\"\|[-0-9.]*\|true\|false\).*/\1/p" | tr -d '"'
}

# nsima_status_field PATH...: a number from `nsimactl status` (e.g. nsima_status_field bpf dropped).
nsima_status() {
	nsimactl status --json | tr -d ' \n'
}
nsima_stat() { # KEY: counter from the "bpf" object of nsimactl status (emitted, dropped, ...)
	nsima_status | sed -n "s/.*\"bpf\":{[^}]*\"$1\":\([0-9]*\).*/\1/p"
}
nsima_hook_stat() { # HOOK KEY: per-hook counter
	nsima_status | sed -n "s/.*\"$1\":{[^}]*\"$2\":\([0-9]*\).*/\1/p"
}

# nsima_pcr_file BANK OUT [DIR]: evmctl's --pcrs file (PCR-00..PCR-23) from the TPM's sysfs
# (DIR defaults to /sys/class/tpm/tpm0).
nsima_pcr_file() {
	i=0
	: >"$2"
	while [ $i -lt 24 ]; do
		v=$(tr 'A-F' 'a-f' <"${3:-/sys/class/tpm/tpm0}/pcr-$1/$i")
		printf 'PCR-%02d: %s\n' $i "$v" >>"$2"
		i=$((i + 1))
	done
}

# nsima_evmctl_check LIST PCRS_SHA1 PCRS_SHA256 ENTRIES: evmctl must match the list against
# both banks, and replay exactly ENTRIES entries (evmctl stops at the first entry that matches,
# so trailing entries would otherwise pass unseen).
nsima_evmctl_check() {
	out=$(evmctl -v ima_measurement --ignore-violations --pcrs sha256,"$3" --pcrs sha1,"$2" "$1" 2>&1) ||
		nsima_fail "evmctl ima_measurement rejected $1: $out"
	nsima_check_contains "$out" "Matched per TPM bank" "evmctl on $1"
	n=$(printf '%s\n' "$out" | sed -n 's/.*PCR-[0-9]*: succeed at entry \([0-9]*\).*/\1/p' | sort -u)
	nsima_check_eq "$n" "$4" "entries evmctl replayed from $1"
}
