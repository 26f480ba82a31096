// SPDX-License-Identifier: Apache-2.0
// Offline policy commands behind `nsimactl policy check|explain|show-builtin` (the CLI wiring
// lives in daemon/cli and only forwards arguments and streams). They need no daemon: they parse
// a policy file and, for explain, judge one event the way nsimad would.
//
// A `file` argument of the form "builtin:<name>" names a builtin policy instead of a file.
#pragma once

#include <ostream>
#include <string>

namespace nsima::policy {

// Exit 0: valid; prints "<N> rules OK" and notes (rules for funcs nsima never sees, PCRs a TPM
// does not have, ...), one per line as "<file>:<line>: note: ...".
// Exit 1: invalid or unreadable; prints every error as "<file>:<line>:<col>: '<token>': <why>".
int cmd_check(const std::string& file, std::ostream& out, std::ostream& err);

// Judges one event against a policy. `event_json` is either a `nsimactl watch` line (hook =
// "file_open" | "mmap_file" | "bprm_check", with mask, prot, reqprot, uid, euid, gid, egid,
// new_uid..., fowner, fgroup, fsmagic, fsname, fsuuid, path) or a direct access with
// func = "FILE_CHECK" | "MMAP_CHECK" | ... (same fields). mask may be a number or
// "MAY_READ|MAY_WRITE"; fsmagic a number or a hex string; fsuuid canonical or 32 hex digits;
// suid/sgid default to euid/egid; cap_setuid/cap_setgid (bools) or cap_effective (number).
//
// Text output, one self-contained line per fact so that grep works:
//   access <func> mask=<...> uid=... fsmagic=0x... fsname=... [path=...]
//   <func> measure: <file>:<line>: <rule text>        (or "<func> measure: no rule")
//   <func> appraise: ... / audit: ... / hash: ...
//   <func> decision: measure=yes|no appraise=... pcr=<n>|default template=<name>|default ...
//   <func> note: ...
// With json = true, one JSON object instead.
// Exit 0: done; 1: the policy is invalid or unreadable; 2: the event JSON is unusable.
int cmd_explain(const std::string& file, const std::string& event_json, std::ostream& out,
                std::ostream& err, bool json = false);

// Prints the text of a builtin policy (exactly policies/<name>.policy). Exit 1 if unknown,
// with the list of known names on `err`.
int cmd_show_builtin(const std::string& name, std::ostream& out, std::ostream& err);

}  // namespace nsima::policy
