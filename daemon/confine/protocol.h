// SPDX-License-Identifier: Apache-2.0
// What nsima-parse is asked and what it answers (README.md): one request frame `op || input`,
// one reply frame `status || payload`. The worker runs the same parsers nsimad would run in
// process (appraise::parse_ima_xattr, appraise::parse_manifest, hook::parse_state) and answers
// their result in a canonical form; the daemon's decode_* functions re-validate that form
// strictly (lengths, algorithms, charset, bounds) and refuse anything else as a bad reply, so a
// subverted worker can lie only within what a well-formed parse could have said.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "appraise/digest_list.h"
#include "appraise/ima_xattr.h"
#include "common/result.h"
#include "hook/oci_state.h"

namespace nsima::confine {

enum class Op : uint8_t {
  kHello = 0,      // worker -> daemon, once, after confinement: payload kHelloMagic
  kImaXattr = 1,   // a security.ima value
  kManifest = 2,   // str(filename) || bytes(text): a sha256sum manifest
  kOciState = 3,   // the OCI state JSON a runtime gave the hook
  kControlRequest = 4,  // one control request line of a read-only group member (JSON)
  kRpmHeader = 5,  // u32 n || bytes(key packet) * n || bytes(package prefix): rpm_read_header
  // Test-only requests (nsima-parse-test; never in the installed nsima-parse).
  kTestAbort = 0xf0,   // abort()
  kTestLoop = 0xf1,    // spin forever
  kTestOpen = 0xf2,    // open("/etc/passwd")
  kTestSocket = 0xf3,  // socket(AF_INET)
  kTestExecve = 0xf4,  // execve("/bin/true")
  kTestReply = 0xf5,   // answer the input bytes verbatim as the reply frame's body
  kTestHuge = 0xf6,    // answer a frame header announcing more than kMaxFrame
};

enum class Status : uint8_t {
  kParsed = 0,    // payload: the canonical parse
  kRefused = 1,   // payload: the parser's error (the input is malformed)
  kUnknownOp = 2,
};

inline constexpr char kHelloMagic[] = "nsima-parse/1";

// ---- worker side: the reply body for one request (status byte first).
std::vector<uint8_t> serve(Op op, std::span<const uint8_t> input);

// ---- daemon side: request bodies and strict reply decoding. An error string is a bad reply.
std::vector<uint8_t> manifest_request(std::string_view text, std::string_view filename);
std::vector<uint8_t> rpm_header_request(std::span<const std::vector<uint8_t>> keys,
                                        std::span<const uint8_t> package);

tl::expected<appraise::XattrResult, std::string> decode_ima_xattr(
    std::span<const uint8_t> reply, std::span<const uint8_t> input);
tl::expected<Result<appraise::Manifest>, std::string> decode_manifest(
    std::span<const uint8_t> reply);
tl::expected<Result<hook::OciState>, std::string> decode_oci_state(std::span<const uint8_t> reply);
// A control request as nsimad's handlers see it: every member of the top-level object, with its
// value where the request schema (control/schema.h) takes one (a string, a bool, an unsigned
// integer, an array of strings) and otherwise a stand-in of the same JSON type (schema checks
// refuse it all the same: a nested object's members, an array's non-string elements, a
// non-object request's content are not carried). Refused: not JSON.
tl::expected<Result<nlohmann::json>, std::string> decode_control_request(
    std::span<const uint8_t> reply);
// An rpm package's files (appraise::rpm_read_header in the worker): sha256 digests of 32 bytes,
// non-empty paths without NUL, problems with one-line reasons, counts bounded by the frame; or
// the one-line reason it was refused.
tl::expected<appraise::RpmHeaderResult, std::string> decode_rpm_header(
    std::span<const uint8_t> reply);

}  // namespace nsima::confine
