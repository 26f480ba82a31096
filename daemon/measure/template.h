// SPDX-License-Identifier: Apache-2.0
// IMA template data: the bytes a measurement-list record carries after its template name, encoded
// exactly as security/integrity/ima/ima_template_lib.c builds them, and the template digest that
// is written to the list and extended into the PCR.
//
// Encodings (ima-facts §2.5): every field is [u32 length][bytes] (little-endian; we only run on
// little-endian hosts, where the kernel's host order and ima_canonical_fmt agree), except the
// legacy `ima` template, whose data in the binary list is d[20] || u32 strlen(n) || n with no
// length word for `d`. The template digest is the hash of exactly those bytes, except for `ima`,
// where it is H(d[20] || n zero-padded to 256 bytes).
//   d-ng    "<algo>:" NUL digest             (violation: zeros of the namespace's hash size)
//   d-ngv2  "<ima|verity>:<algo>:" NUL digest
//   n-ng    name with every ' ' turned into '_', plus a terminating NUL (counted in the length)
//   sig     the whole security.ima value iff its type byte is 0x03 (digsig) or 0x06 (verity sig),
//           else the security.evm value iff its type is 0x05 (portable signature), else empty
//   buf     raw bytes
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.h"
#include "measure/hash_algo.h"

namespace nsima::measure {

// The templates nsima writes. (Reading/rendering also knows ima-modsig and evm-sig.)
enum class TemplateKind : uint8_t { kIma, kImaNg, kImaSig, kImaNgV2, kImaSigV2, kImaBuf };

std::string_view template_name(TemplateKind kind);    // "ima-ng"
std::string_view template_format(TemplateKind kind);  // "d-ng|n-ng"
// Accepts a template name ("ima-sig") or its format string ("d-ng|n-ng|sig").
std::optional<TemplateKind> template_kind(std::string_view name_or_format);

// Template field ids (ima_template.c supported_fields[]).
enum class FieldId : uint8_t {
  kD,
  kN,
  kDNg,
  kNNg,
  kSig,
  kBuf,
  kDModsig,
  kModsig,
  kEvmsig,
  kDNgV2,
  kIuid,
  kIgid,
  kImode,
  kXattrNames,
  kXattrLengths,
  kXattrValues,
};
std::string_view field_name(FieldId id);  // "d-ng"
// Fields of a known template name or of a format string; EINVAL for unknown names/fields.
Result<std::vector<FieldId>> template_fields(std::string_view name_or_format);

// d-ngv2 digest type prefix (IMA_VERITY_REQUIRED selects "verity").
enum class DigestType : uint8_t { kIma, kVerity };

// security.ima / security.evm type bytes that matter for the `sig` field (integrity.h).
inline constexpr uint8_t kXattrTypeDigsig = 0x03;       // EVM_IMA_XATTR_DIGSIG
inline constexpr uint8_t kXattrTypePortableSig = 0x05;  // EVM_XATTR_PORTABLE_DIGSIG
inline constexpr uint8_t kXattrTypeVeritySig = 0x06;    // IMA_VERITY_DIGSIG

inline constexpr size_t kLegacyNameMax = 255;      // IMA_EVENT_NAME_LEN_MAX
inline constexpr size_t kLegacyNameHashLen = 256;  // IMA_EVENT_NAME_LEN_MAX + 1
inline constexpr size_t kLegacyDigestLen = 20;     // `d` is SHA-1 sized
inline constexpr std::string_view kBootAggregateName = "boot_aggregate";

// One measurement as the caller describes it (the kernel's struct ima_event_data).
struct Entry {
  std::optional<TemplateKind> tmpl;  // nullopt: the list's default template
  std::optional<uint32_t> pcr;       // nullopt: the list's default PCR
  // A violation (ToMToU, open_writers, lost event, unverifiable file). The list forces the default
  // template and PCR, records a zero digest and extends 0xFF.. like the kernel.
  bool violation = false;
  // The file (or buffer) digest. The `ima` template needs SHA-1 (the kernel refuses `ima` with
  // any other ima_hash); a violation ignores it.
  Digest digest;
  DigestType digest_type = DigestType::kIma;  // d-ngv2 only
  std::string name;                           // path or event name, as the kernel would print it
  std::vector<uint8_t> ima_xattr;             // security.ima value, if any
  std::vector<uint8_t> evm_xattr;             // security.evm value, if any (sig fallback)
  std::vector<uint8_t> buf;                   // ima-buf payload
};

// IMA's string rule: stop at the first NUL (the kernel uses strlen) and turn ' ' into '_'.
std::string ima_string(std::string_view s);

// The `n` field of the legacy template: paths longer than 255 bytes are replaced by their last
// component (the kernel uses the dentry name when a file is at hand), else cut to 255.
std::string legacy_event_name(std::string_view name);

// Template data bytes for `e` in template `kind`, as they appear in the binary list after the
// data-length word. `ima_hash` is the namespace's hash algorithm (sizes violation digests).
Result<std::vector<uint8_t>> encode_template_data(TemplateKind kind, const Entry& e,
                                                  HashAlgo ima_hash);

// One field of a record's template data.
struct FieldView {
  FieldId id;
  std::span<const uint8_t> data;
};
// Splits template data (as read from a binary list) into fields. EBADMSG when the lengths do not
// add up to the data exactly, EINVAL for an unknown template.
Result<std::vector<FieldView>> split_template_data(std::string_view template_name,
                                                   std::span<const uint8_t> data);

// Appends the kernel's ascii rendering of one field (ima_show_template_* with IMA_SHOW_ASCII).
Result<void> append_field_ascii(const FieldView& field, std::string& out);

// Template digest over template data as written in the binary list, for PCR bank `bank`.
Result<Digest> template_digest(std::string_view template_name, std::span<const uint8_t> data,
                               HashAlgo bank);

// What gets extended into `bank` for an entry: 0xFF.. (bank size) for a violation, else the
// template digest of that bank.
Result<Digest> extend_value(std::string_view template_name, std::span<const uint8_t> data,
                            bool violation, HashAlgo bank);

// An ima-buf entry: digest of `buf` with `algo`, name as given.
Result<Entry> make_buffer_entry(std::string name, std::vector<uint8_t> buf, HashAlgo algo);

}  // namespace nsima::measure
