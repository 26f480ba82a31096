# SPDX-License-Identifier: Apache-2.0
# nsima VM test helpers. Installed in the guest as /usr/share/nsima-test/lib.sh by tests/vm/vm-run
# (every tests/vm/guest/lib/*.sh lands in /usr/share/nsima-test/). Source it from a VM test:
#   . /usr/share/nsima-test/lib.sh
# POSIX sh: the guest shell is busybox ash. Every helper prints to stderr and exits the test on failure.

# log MSG...: a progress line, prefixed so it stands out from the tools' own output.
log() {
	printf '[%s] %s\n' "${NSIMA_TEST_NAME:-test}" "$*" >&2
}

# fail MSG...: print MSG and end the test with status 1.
fail() {
	printf 'FAIL: %s\n' "$*" >&2
	exit 1
}

# assert_eq EXPECTED ACTUAL [WHAT]
assert_eq() {
	[ "$1" = "$2" ] || fail "${3:-values differ}: expected '$1', got '$2'"
}

# assert_ne UNEXPECTED ACTUAL [WHAT]
assert_ne() {
	[ "$1" != "$2" ] || fail "${3:-values are equal}: did not expect '$1'"
}

# assert_contains HAYSTACK NEEDLE [WHAT]: NEEDLE is a fixed string, not a pattern.
assert_contains() {
	case "$1" in
	*"$2"*) ;;
	*) fail "${3:-missing text}: '$2' not in '$1'" ;;
	esac
}

# assert_not_contains HAYSTACK NEEDLE [WHAT]
assert_not_contains() {
	case "$1" in
	*"$2"*) fail "${3:-unexpected text}: '$2' in '$1'" ;;
	*) ;;
	esac
}

# assert_rc EXPECTED_STATUS CMD [ARGS...]: run CMD, compare its exit status (output is kept).
assert_rc() {
	_nsima_want=$1
	shift
	_nsima_rc=0
	"$@" || _nsima_rc=$?
	[ "$_nsima_rc" -eq "$_nsima_want" ] || fail "'$*' exited $_nsima_rc, expected $_nsima_want"
}

# wait_for SECONDS CMD [ARGS...]: run CMD every 0.1 s until it succeeds; fail after SECONDS.
# CMD's output is discarded; wrap it in sh -c '...' for pipelines.
wait_for() {
	_nsima_tries=$(($1 * 10))
	shift
	while ! "$@" >/dev/null 2>&1; do
		_nsima_tries=$((_nsima_tries - 1))
		[ "$_nsima_tries" -gt 0 ] || fail "timed out waiting for: $*"
		sleep 0.1
	done
}
