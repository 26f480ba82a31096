// SPDX-License-Identifier: Apache-2.0
// Template field encoding/decoding and template digests (see template.h for the byte rules and
// ima-facts §2.4-2.6 for their sources).
#include "measure/template.h"

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstring>

#include "common/hex.h"
#include "measure/bytes.h"
#include "measure/hasher.h"

namespace nsima::measure {

namespace {

struct TemplateDesc {
  std::string_view name;
  std::string_view format;
};

// ima_template.c builtin_templates[] (6.12 and mainline 2026).
constexpr std::array<TemplateDesc, 8> kTemplates = {{
    {"ima", "d|n"},
    {"ima-ng", "d-ng|n-ng"},
    {"ima-sig", "d-ng|n-ng|sig"},
    {"ima-ngv2", "d-ngv2|n-ng"},
    {"ima-sigv2", "d-ngv2|n-ng|sig"},
    {"ima-buf", "d-ng|n-ng|buf"},
    {"ima-modsig", "d-ng|n-ng|sig|d-modsig|modsig"},
    {"evm-sig", "d-ng|n-ng|evmsig|xattrnames|xattrlengths|xattrvalues|iuid|igid|imode"},
}};

// Indexed by FieldId.
constexpr std::array<std::string_view, 16> kFieldNames = {
    "d",      "n",      "d-ng", "n-ng", "sig",   "buf",        "d-modsig",     "modsig",
    "evmsig", "d-ngv2", "iuid", "igid", "imode", "xattrnames", "xattrlengths", "xattrvalues",
};

constexpr std::string_view kDigestTypeNames[] = {"ima", "verity"};

Error bad(std::string msg) { return Error{EBADMSG, std::move(msg), {}}; }

void put_field(std::vector<uint8_t>& out, std::span<const uint8_t> bytes) {
  put_u32le(out, static_cast<uint32_t>(bytes.size()));
  put_bytes(out, bytes);
}

// "<prefix><algo>:" NUL digest; a violation gets zeros of `ima_hash` (ima_eventdigest_init_common).
std::vector<uint8_t> digest_field(std::string_view prefix, const Entry& e, HashAlgo ima_hash) {
  Digest d = e.violation ? Digest(ima_hash) : e.digest;
  std::string head(prefix);
  head += hash_algo_name(d.algo());
  head += ':';
  std::vector<uint8_t> out(head.begin(), head.end());
  out.push_back(0);
  put_bytes(out, d.bytes());
  return out;
}

std::vector<uint8_t> name_ng_field(const Entry& e) {
  std::string n = ima_string(e.name);
  std::vector<uint8_t> out(n.begin(), n.end());
  out.push_back(0);  // n-ng counts the terminating NUL
  return out;
}

std::span<const uint8_t> sig_field(const Entry& e) {
  // A violation has no xattr_value in the kernel, so only the EVM fallback can apply.
  if (!e.violation && !e.ima_xattr.empty() &&
      (e.ima_xattr[0] == kXattrTypeDigsig || e.ima_xattr[0] == kXattrTypeVeritySig))
    return e.ima_xattr;
  if (!e.evm_xattr.empty() && e.evm_xattr[0] == kXattrTypePortableSig) return e.evm_xattr;
  return {};
}

bool is_legacy(std::string_view template_name) { return template_name == "ima"; }

}  // namespace

std::string_view template_name(TemplateKind kind) {
  return kTemplates[static_cast<size_t>(kind)].name;
}

std::string_view template_format(TemplateKind kind) {
  return kTemplates[static_cast<size_t>(kind)].format;
}

std::optional<TemplateKind> template_kind(std::string_view name_or_format) {
  constexpr size_t kWritable = static_cast<size_t>(TemplateKind::kImaBuf) + 1;
  for (size_t i = 0; i < kWritable; ++i)
    if (kTemplates[i].name == name_or_format || kTemplates[i].format == name_or_format)
      return static_cast<TemplateKind>(i);
  return std::nullopt;
}

std::string_view field_name(FieldId id) { return kFieldNames[static_cast<size_t>(id)]; }

Result<std::vector<FieldId>> template_fields(std::string_view name_or_format) {
  std::string_view fmt = name_or_format;
  for (const auto& t : kTemplates)
    if (t.name == name_or_format) fmt = t.format;
  if (fmt.empty()) return make_error(EINVAL, "empty template name");
  std::vector<FieldId> out;
  size_t pos = 0;
  for (;;) {
    size_t bar = fmt.find('|', pos);
    std::string_view f = fmt.substr(pos, bar == std::string_view::npos ? fmt.npos : bar - pos);
    auto it = std::find(kFieldNames.begin(), kFieldNames.end(), f);
    if (it == kFieldNames.end())
      return make_error(EINVAL, "unknown template '" + std::string(name_or_format) + "' (field '" +
                                    std::string(f) + "')");
    out.push_back(static_cast<FieldId>(it - kFieldNames.begin()));
    if (bar == std::string_view::npos) break;
    pos = bar + 1;
  }
  return out;
}

std::string ima_string(std::string_view s) {
  std::string out(s.substr(0, std::min(s.find('\0'), s.size())));
  std::replace(out.begin(), out.end(), ' ', '_');
  return out;
}

std::string legacy_event_name(std::string_view name) {
  std::string n = ima_string(name);
  if (n.size() <= kLegacyNameMax) return n;
  size_t slash = n.rfind('/');
  if (slash != std::string::npos && n.size() - slash - 1 <= kLegacyNameMax && slash + 1 < n.size())
    return n.substr(slash + 1);
  n.resize(kLegacyNameMax);
  return n;
}

Result<std::vector<uint8_t>> encode_template_data(TemplateKind kind, const Entry& e,
                                                  HashAlgo ima_hash) {
  std::vector<uint8_t> out;
  out.reserve(64 + e.name.size() + e.ima_xattr.size() + e.buf.size());
  switch (kind) {
    case TemplateKind::kIma: {
      // `d`: SHA-1 sized, no length word in the binary list.
      if (e.violation) {
        out.resize(kLegacyDigestLen, 0);
      } else {
        if (e.digest.algo() != HashAlgo::kSha1)
          return make_error(EINVAL,
                            "the 'ima' template records SHA-1 digests, got " +
                                std::string(hash_algo_name(e.digest.algo())),
                            e.name);
        put_bytes(out, e.digest.bytes());
      }
      // `n`: u32 strlen + name without NUL (IMA_SHOW_BINARY_OLD_STRING_FMT).
      std::string n = legacy_event_name(e.name);
      put_u32le(out, static_cast<uint32_t>(n.size()));
      put_bytes(out, as_bytes(n));
      return out;
    }
    case TemplateKind::kImaNg:
    case TemplateKind::kImaSig:
    case TemplateKind::kImaBuf:
      put_field(out, digest_field("", e, ima_hash));
      break;
    case TemplateKind::kImaNgV2:
    case TemplateKind::kImaSigV2: {
      DigestType t = e.violation ? DigestType::kIma : e.digest_type;
      std::string prefix(kDigestTypeNames[static_cast<size_t>(t)]);
      prefix += ':';
      put_field(out, digest_field(prefix, e, ima_hash));
      break;
    }
  }
  put_field(out, name_ng_field(e));
  if (kind == TemplateKind::kImaSig || kind == TemplateKind::kImaSigV2)
    put_field(out, sig_field(e));
  if (kind == TemplateKind::kImaBuf)
    put_field(out, e.violation ? std::span<const uint8_t>{} : e.buf);
  return out;
}

namespace {

bool is_digest_field(FieldId id) {
  return id == FieldId::kDNg || id == FieldId::kDModsig || id == FieldId::kDNgV2;
}

// A d-ng style field is "<prefix>:" NUL digest (or empty). Where the prefix ends; 0 if malformed.
size_t digest_prefix_len(std::span<const uint8_t> d) {
  auto nul = std::find(d.begin(), d.end(), uint8_t{0});
  size_t plen = static_cast<size_t>(nul - d.begin());
  if (nul == d.end() || plen == 0 || d[plen - 1] != ':') return 0;
  return plen;
}

}  // namespace

Result<std::vector<FieldView>> split_template_data(std::string_view template_name,
                                                   std::span<const uint8_t> data) {
  std::vector<FieldView> out;
  if (is_legacy(template_name)) {
    if (data.size() < kLegacyDigestLen + 4)
      return tl::unexpected(bad("'ima' template data of " + std::to_string(data.size()) +
                                " bytes is shorter than d[20] + name length"));
    uint32_t len = get_u32le(data.data() + kLegacyDigestLen);
    if (len != data.size() - kLegacyDigestLen - 4)
      return tl::unexpected(
          bad("'ima' name length " + std::to_string(len) + " does not match the record"));
    if (len > kLegacyNameMax)
      return tl::unexpected(bad("'ima' name of " + std::to_string(len) + " bytes exceeds 255"));
    out.push_back({FieldId::kD, data.subspan(0, kLegacyDigestLen)});
    out.push_back({FieldId::kN, data.subspan(kLegacyDigestLen + 4)});
    return out;
  }
  auto fields = template_fields(template_name);
  if (!fields) return tl::unexpected(fields.error());
  size_t pos = 0;
  for (FieldId id : *fields) {
    if (data.size() - pos < 4)
      return tl::unexpected(bad("template data ends inside the length of field '" +
                                std::string(field_name(id)) + "'"));
    uint32_t len = get_u32le(data.data() + pos);
    pos += 4;
    if (len > data.size() - pos)
      return tl::unexpected(bad("field '" + std::string(field_name(id)) + "' length " +
                                std::to_string(len) + " exceeds the template data"));
    out.push_back({id, data.subspan(pos, len)});
    pos += len;
    // What the ascii rendering needs: a list that replays must also render.
    if (is_digest_field(id) && len != 0 && digest_prefix_len(out.back().data) == 0)
      return tl::unexpected(
          bad("field '" + std::string(field_name(id)) + "' lacks the '<algo>:' NUL prefix"));
  }
  if (pos != data.size())
    return tl::unexpected(
        bad(std::to_string(data.size() - pos) + " bytes of template data follow the last field"));
  return out;
}

Result<void> append_field_ascii(const FieldView& field, std::string& out) {
  auto d = field.data;
  if (d.empty()) return {};  // the kernel prints nothing for an empty field
  switch (field.id) {
    case FieldId::kD:
    case FieldId::kSig:
    case FieldId::kBuf:
    case FieldId::kModsig:
    case FieldId::kEvmsig:
    case FieldId::kXattrLengths:
    case FieldId::kXattrValues:
      out += to_hex(d.data(), d.size());
      return {};
    case FieldId::kDNg:
    case FieldId::kDModsig:
    case FieldId::kDNgV2: {
      // "<prefix>:" NUL digest: the prefix is printed as a string, the digest in hex.
      const size_t plen = digest_prefix_len(d);
      if (plen == 0)
        return tl::unexpected(bad("field '" + std::string(field_name(field.id)) +
                                  "' lacks the '<algo>:' NUL prefix"));
      out.append(reinterpret_cast<const char*>(d.data()), plen);
      out += to_hex(d.data() + plen + 1, d.size() - plen - 1);
      return {};
    }
    case FieldId::kN:
    case FieldId::kNNg:
    case FieldId::kXattrNames: {
      auto nul = std::find(d.begin(), d.end(), uint8_t{0});
      out.append(reinterpret_cast<const char*>(d.data()), static_cast<size_t>(nul - d.begin()));
      return {};
    }
    case FieldId::kIuid:
    case FieldId::kIgid:
    case FieldId::kImode: {
      uint64_t v = 0;
      if (d.size() != 1 && d.size() != 2 && d.size() != 4 && d.size() != 8) return {};
      std::memcpy(&v, d.data(), d.size());  // little-endian host
      out += std::to_string(v);
      return {};
    }
  }
  return {};
}

Result<Digest> template_digest(std::string_view template_name, std::span<const uint8_t> data,
                               HashAlgo bank) {
  if (!is_legacy(template_name)) return hash_bytes(bank, data);
  auto fields = split_template_data(template_name, data);
  if (!fields) return tl::unexpected(fields.error());
  std::array<uint8_t, kLegacyNameHashLen> name{};
  auto n = (*fields)[1].data;
  std::copy(n.begin(), n.end(), name.begin());
  return hash_parts(bank, {(*fields)[0].data, name});
}

Result<Digest> extend_value(std::string_view template_name, std::span<const uint8_t> data,
                            bool violation, HashAlgo bank) {
  if (violation) return Digest::filled(bank, 0xff);
  return template_digest(template_name, data, bank);
}

Result<Entry> make_buffer_entry(std::string name, std::vector<uint8_t> buf, HashAlgo algo) {
  auto d = hash_bytes(algo, buf);
  if (!d) return tl::unexpected(d.error());
  Entry e;
  e.tmpl = TemplateKind::kImaBuf;
  e.digest = *d;
  e.name = std::move(name);
  e.buf = std::move(buf);
  return e;
}

}  // namespace nsima::measure
