// SPDX-License-Identifier: Apache-2.0
#include "confine/protocol.h"

#include <cerrno>
#include <cmath>
#include <cstring>
#include <optional>

#include "confine/wire.h"

namespace nsima::confine {

namespace {

using appraise::XattrErrorKind;
using appraise::XattrType;

// Bounds the daemon holds a reply to (the worker's parsers never produce more).
constexpr size_t kMaxReason = 1024;     // one sentence
constexpr size_t kMaxPath = 4096 * 4;   // a manifest name (PATH_MAX; escapes unescaped)
constexpr size_t kMaxOciField = 1u << 20;
constexpr uint32_t kMaxEntries = kMaxFrame / 34;  // every entry is at least 34 bytes of input

std::span<const uint8_t> as_bytes(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}

// One sentence for a log line: printable ASCII and UTF-8 continuation bytes, no control bytes.
bool is_sentence(std::string_view s) {
  for (unsigned char c : s)
    if (c < 0x20 || c == 0x7f) return false;
  return true;
}

bool no_nul(std::string_view s) { return s.find('\0') == std::string_view::npos; }

void put_error(Writer& w, const Error& e) {
  w.u32(static_cast<uint32_t>(e.code));
  w.str(e.message.substr(0, kMaxReason));
  w.str(e.where.substr(0, kMaxReason));
}

tl::expected<Error, std::string> get_error(Reader& r) {
  Error e;
  e.code = static_cast<int>(r.u32());
  e.message = r.str(kMaxReason);
  e.where = r.str(kMaxReason);
  if (!r.done()) return tl::unexpected(std::string("a refusal that does not decode"));
  if (e.code <= 0 || e.code > 4095) return tl::unexpected("a refusal with errno " + std::to_string(e.code));
  if (e.message.empty() || !is_sentence(e.message) || !is_sentence(e.where))
    return tl::unexpected(std::string("a refusal whose message has control bytes or is empty"));
  return e;
}

std::vector<uint8_t> refused(const Error& e) {
  Writer w;
  w.u8(static_cast<uint8_t>(Status::kRefused));
  put_error(w, e);
  return std::move(w.out());
}

std::vector<uint8_t> serve_xattr(std::span<const uint8_t> input) {
  Writer w;
  auto x = appraise::parse_ima_xattr(input);
  if (!x) {
    w.u8(static_cast<uint8_t>(Status::kRefused));
    w.u8(static_cast<uint8_t>(x.error().kind));
    w.str(x.error().reason.substr(0, kMaxReason));
    return std::move(w.out());
  }
  w.u8(static_cast<uint8_t>(Status::kParsed));
  w.u8(static_cast<uint8_t>(x->type));
  w.u8(static_cast<uint8_t>(x->algo));
  w.u8(x->version);
  w.u32(x->keyid);
  w.bytes(x->digest);
  w.bytes(x->signature);
  return std::move(w.out());
}

std::vector<uint8_t> serve_manifest(std::span<const uint8_t> input) {
  Reader r(input);
  std::string filename = r.str(kMaxReason);
  auto text = r.bytes(kMaxFrame);
  if (!r.done()) return refused(Error{EINVAL, "the manifest request does not decode", {}});
  auto m = appraise::parse_manifest(
      std::string_view(reinterpret_cast<const char*>(text.data()), text.size()), filename);
  if (!m) return refused(m.error());
  for (size_t i = 0; i < m->entries.size(); ++i)
    if (!no_nul(m->entries[i].path))
      return refused(Error{EINVAL, "entry " + std::to_string(i + 1) + "'s file name holds a NUL byte",
                           filename});
  Writer w;
  w.u8(static_cast<uint8_t>(Status::kParsed));
  w.u32(static_cast<uint32_t>(m->entries.size()));
  for (const auto& e : m->entries) {
    w.u8(static_cast<uint8_t>(e.digest.algo()));
    w.u8(e.binary ? 1 : 0);
    w.bytes({e.digest.data(), e.digest.size()});
    w.str(e.path);
  }
  return std::move(w.out());
}

std::vector<uint8_t> serve_oci(std::span<const uint8_t> input) {
  auto st = hook::parse_state(
      std::string_view(reinterpret_cast<const char*>(input.data()), input.size()));
  if (!st) return refused(st.error());
  Writer w;
  w.u8(static_cast<uint8_t>(Status::kParsed));
  w.str(st->oci_version);
  w.str(st->id);
  w.str(st->status);
  w.u8(st->pid ? 1 : 0);
  w.u64(st->pid ? static_cast<uint64_t>(*st->pid) : 0);
  w.str(st->bundle);
  w.u32(static_cast<uint32_t>(st->annotations.size()));
  for (const auto& [k, v] : st->annotations) {
    w.str(k);
    w.str(v);
  }
  return std::move(w.out());
}

// kRpmHeader request bounds: the keys of an rpm database, and a package prefix.
constexpr uint32_t kMaxKeys = 1024;
constexpr size_t kMaxKey = 1u << 20;
// A package prefix and a few MiB of keys fit in one frame (more keys: parser-input-too-large).
static_assert(appraise::kRpmReadMax + (8u << 20) <= kMaxFrame);
// Every rpm entry is at least 32 + 8 bytes of reply; a problem at least 8.
constexpr uint32_t kMaxRpmEntries = kMaxFrame / 40;
constexpr uint32_t kMaxRpmProblems = kMaxFrame / 8;

std::vector<uint8_t> serve_rpm_header(std::span<const uint8_t> input) {
  Reader r(input);
  const uint32_t n = r.u32();
  if (!r.ok() || n > kMaxKeys)
    return refused(Error{EBADMSG, "the rpm request does not decode", {}});
  std::vector<std::vector<uint8_t>> keys;
  for (uint32_t i = 0; i < n && r.ok(); ++i) {
    auto k = r.bytes(kMaxKey);
    keys.emplace_back(k.begin(), k.end());
  }
  auto package = r.bytes(kMaxFrame);
  if (!r.done()) return refused(Error{EBADMSG, "the rpm request does not decode", {}});
  auto files = appraise::rpm_read_header(keys, package);
  if (!files) {
    std::string why = files.error().substr(0, kMaxReason);
    if (why.empty() || !is_sentence(why)) why = "refused: librpm gave no one-line reason";
    return refused(Error{EBADMSG, why, {}});
  }
  Writer w;
  w.u8(static_cast<uint8_t>(Status::kParsed));
  w.u32(static_cast<uint32_t>(files->entries.size()));
  for (const auto& e : files->entries) {
    w.bytes({e.digest.data(), e.digest.size()});
    w.str(e.path);
  }
  w.u32(static_cast<uint32_t>(files->problems.size()));
  for (const auto& p : files->problems) {
    w.str(p.where);
    w.str(p.what.substr(0, kMaxReason));
  }
  return std::move(w.out());
}

// Control requests: value tags (serve_control_request, decode_control_request). Scalars are
// carried exactly (the schema's refusals quote numbers); containers inside a member's value
// only as empty stand-ins of their type (the schema names only their type).
enum Tag : uint8_t {
  kTagString = 's',
  kTagBool = 'b',
  kTagUint = 'u',
  kTagInt = 'i',    // a signed integer (i64): negative, or -0
  kTagFloat = 'd',  // f64 bits
  kTagNull = 'n',
  kTagObject = 'o',   // stand-in {}
  kTagEmpty = 'e',    // an array inside a value or as the request: stand-in []
  kTagArray = 'a',    // a member's array: u32 n, then n scalars
};
constexpr uint32_t kMaxMembers = 4096;
constexpr size_t kMaxName = 4096;

void put_scalar(Writer& w, const nlohmann::json& v) {
  if (v.is_string()) {
    w.u8(kTagString);
    w.str(v.get_ref<const std::string&>());
  } else if (v.is_boolean()) {
    w.u8(kTagBool);
    w.u8(v.get<bool>() ? 1 : 0);
  } else if (v.is_number_unsigned()) {
    w.u8(kTagUint);
    w.u64(v.get<uint64_t>());
  } else if (v.is_number_integer()) {
    w.u8(kTagInt);
    w.u64(static_cast<uint64_t>(v.get<int64_t>()));
  } else if (v.is_number_float()) {
    w.u8(kTagFloat);
    const double d = v.get<double>();
    uint64_t bits = 0;
    std::memcpy(&bits, &d, sizeof bits);
    w.u64(bits);
  } else if (v.is_null()) {
    w.u8(kTagNull);
  } else if (v.is_object()) {
    w.u8(kTagObject);
  } else {
    w.u8(kTagEmpty);
  }
}

std::vector<uint8_t> serve_control_request(std::span<const uint8_t> input) {
  auto j = nlohmann::json::parse(input.begin(), input.end(), nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded())
    return refused(Error{EINVAL, "not JSON (expected a JSON object with a \"cmd\" string)", ""});
  Writer w;
  w.u8(static_cast<uint8_t>(Status::kParsed));
  if (!j.is_object()) {
    w.u8(0);  // not an object: the schema refuses it, naming its type
    put_scalar(w, j);
    return std::move(w.out());
  }
  if (j.size() > kMaxMembers)
    return refused(Error{E2BIG, "a request with more than " + std::to_string(kMaxMembers) +
                                    " members", ""});
  w.u8(1);
  w.u32(static_cast<uint32_t>(j.size()));
  for (auto& [k, v] : j.items()) {
    if (k.size() > kMaxName)
      return refused(Error{E2BIG, "a member name longer than " + std::to_string(kMaxName) +
                                      " bytes", ""});
    w.str(k);
    if (v.is_array()) {
      w.u8(kTagArray);
      w.u32(static_cast<uint32_t>(v.size()));
      for (auto& e : v) put_scalar(w, e);
    } else {
      put_scalar(w, v);
    }
  }
  return std::move(w.out());
}

tl::expected<nlohmann::json, std::string> get_scalar(Reader& r, uint8_t tag) {
  switch (tag) {
    case kTagString: return nlohmann::json(r.str(kMaxFrame));
    case kTagBool: {
      const uint8_t b = r.u8();
      if (b > 1) return tl::unexpected("a request reply with a bool of " + std::to_string(b));
      return nlohmann::json(b == 1);
    }
    case kTagUint: return nlohmann::json(r.u64());
    case kTagInt: return nlohmann::json(static_cast<int64_t>(r.u64()));  // also -0
    case kTagFloat: {
      const uint64_t bits = r.u64();
      double d = 0;
      std::memcpy(&d, &bits, sizeof d);
      if (!std::isfinite(d)) return tl::unexpected(std::string("a request reply with a non-finite number"));
      return nlohmann::json(d);
    }
    case kTagNull: return nlohmann::json();
    case kTagObject: return nlohmann::json::object();
    case kTagEmpty: return nlohmann::json::array();
    default: return tl::unexpected(std::string("a request reply with an unknown value tag"));
  }
}

// The status byte, checked: kParsed or kRefused; anything else is a bad reply.
tl::expected<Status, std::string> status_of(Reader& r) {
  const uint8_t s = r.u8();
  if (!r.ok()) return tl::unexpected(std::string("an empty reply"));
  if (s == static_cast<uint8_t>(Status::kUnknownOp))
    return tl::unexpected(std::string("the worker does not know this request"));
  if (s != static_cast<uint8_t>(Status::kParsed) && s != static_cast<uint8_t>(Status::kRefused))
    return tl::unexpected("a reply with status " + std::to_string(s));
  return static_cast<Status>(s);
}

// A reply that refused its input (the parser's error), or nullopt when it parsed; a status
// that is neither, or a refusal that does not decode, is a bad reply.
tl::expected<std::optional<Error>, std::string> refusal_of(Reader& r) {
  auto status = status_of(r);
  if (!status) return tl::unexpected(status.error());
  if (*status != Status::kRefused) return std::nullopt;
  auto e = get_error(r);
  if (!e) return tl::unexpected(e.error());
  return std::optional<Error>(std::move(*e));
}

}  // namespace

std::vector<uint8_t> serve(Op op, std::span<const uint8_t> input) {
  switch (op) {
    case Op::kImaXattr: return serve_xattr(input);
    case Op::kManifest: return serve_manifest(input);
    case Op::kOciState: return serve_oci(input);
    case Op::kControlRequest: return serve_control_request(input);
    case Op::kRpmHeader:
      return serve_rpm_header(input);
    default: return {static_cast<uint8_t>(Status::kUnknownOp)};
  }
}

std::vector<uint8_t> manifest_request(std::string_view text, std::string_view filename) {
  Writer w;
  w.str(filename.substr(0, kMaxReason));
  w.bytes(as_bytes(text));
  return std::move(w.out());
}

std::vector<uint8_t> rpm_header_request(std::span<const std::vector<uint8_t>> keys,
                                        std::span<const uint8_t> package) {
  Writer w;
  w.u32(static_cast<uint32_t>(keys.size()));
  for (const auto& k : keys) w.bytes(k);
  w.bytes(package);
  return std::move(w.out());
}

tl::expected<appraise::XattrResult, std::string> decode_ima_xattr(
    std::span<const uint8_t> reply, std::span<const uint8_t> input) {
  Reader r(reply);
  auto status = status_of(r);
  if (!status) return tl::unexpected(status.error());
  if (*status == Status::kRefused) {
    const uint8_t kind = r.u8();
    std::string reason = r.str(kMaxReason);
    if (!r.done() || kind > static_cast<uint8_t>(XattrErrorKind::kUnsupportedVersion))
      return tl::unexpected(std::string("a security.ima refusal that does not decode"));
    if (reason.empty() || !is_sentence(reason))
      return tl::unexpected(std::string("a security.ima refusal without a one-line reason"));
    return appraise::XattrResult(tl::unexpected(
        appraise::XattrError{static_cast<XattrErrorKind>(kind), std::move(reason)}));
  }
  appraise::ImaXattr x;
  const uint8_t type = r.u8(), algo = r.u8();
  x.version = r.u8();
  x.keyid = r.u32();
  auto digest = r.bytes(64);
  auto sig = r.bytes(appraise::kXattrSizeMax);
  if (!r.done()) return tl::unexpected(std::string("a parsed security.ima that does not decode"));
  // What a well-formed value of that type can be, and it must agree with the input's own bytes.
  if (input.empty() || type != input[0])
    return tl::unexpected("a parsed security.ima of type " + std::to_string(type) +
                          " for a value whose first byte differs");
  if (algo >= measure::kHashAlgoCount)
    return tl::unexpected("a parsed security.ima with algorithm " + std::to_string(algo));
  x.type = static_cast<XattrType>(type);
  x.algo = static_cast<measure::HashAlgo>(algo);
  const size_t dsize = measure::hash_digest_size(x.algo);
  switch (x.type) {
    case XattrType::kDigest:
    case XattrType::kDigestNg:
      if (digest.size() != dsize || !sig.empty() || x.version != 0 || x.keyid != 0 ||
          input.size() < 1 + digest.size())
        return tl::unexpected(std::string("a parsed security.ima digest of the wrong shape"));
      break;
    case XattrType::kDigsig:
    case XattrType::kVerityDigsig:
      if (!digest.empty() || sig.empty() ||
          x.version != (x.type == XattrType::kDigsig ? 2 : 3) ||
          input.size() != appraise::kSignatureHeaderSize + sig.size())
        return tl::unexpected(std::string("a parsed security.ima signature of the wrong shape"));
      break;
    default:
      return tl::unexpected("a parsed security.ima of type " + std::to_string(type));
  }
  x.digest.assign(digest.begin(), digest.end());
  x.signature.assign(sig.begin(), sig.end());
  x.raw.assign(input.begin(), input.end());
  return appraise::XattrResult(std::move(x));
}

tl::expected<Result<appraise::Manifest>, std::string> decode_manifest(
    std::span<const uint8_t> reply) {
  Reader r(reply);
  auto refused = refusal_of(r);
  if (!refused) return tl::unexpected(refused.error());
  if (*refused) return Result<appraise::Manifest>(tl::unexpected(std::move(**refused)));
  const uint32_t n = r.u32();
  if (!r.ok() || n > kMaxEntries)
    return tl::unexpected("a manifest of " + std::to_string(n) + " entries");
  appraise::Manifest m;
  m.entries.reserve(n);
  for (uint32_t i = 0; i < n; ++i) {
    const uint8_t algo = r.u8(), binary = r.u8();
    auto digest = r.bytes(64);
    std::string path = r.str(kMaxPath);
    if (!r.ok()) return tl::unexpected("manifest entry " + std::to_string(i) + " does not decode");
    const auto a = static_cast<measure::HashAlgo>(algo);
    if (a != measure::HashAlgo::kSha256 && a != measure::HashAlgo::kSha384 &&
        a != measure::HashAlgo::kSha512)
      return tl::unexpected("manifest entry " + std::to_string(i) + " has algorithm " +
                            std::to_string(algo));
    if (binary > 1 || path.empty() || !no_nul(path))
      return tl::unexpected("manifest entry " + std::to_string(i) + " has a bad name or marker");
    auto d = measure::Digest::from_bytes(a, digest);
    if (!d) return tl::unexpected("manifest entry " + std::to_string(i) + ": " + d.error().message);
    m.entries.push_back({*d, std::move(path), binary == 1});
  }
  if (!r.done()) return tl::unexpected(std::string("a manifest with trailing bytes"));
  return Result<appraise::Manifest>(std::move(m));
}

tl::expected<Result<hook::OciState>, std::string> decode_oci_state(std::span<const uint8_t> reply) {
  Reader r(reply);
  auto refused = refusal_of(r);
  if (!refused) return tl::unexpected(refused.error());
  if (*refused) return Result<hook::OciState>(tl::unexpected(std::move(**refused)));
  hook::OciState st;
  st.oci_version = r.str(kMaxOciField);
  st.id = r.str(kMaxOciField);
  st.status = r.str(kMaxOciField);
  const uint8_t has_pid = r.u8();
  const uint64_t pid = r.u64();
  st.bundle = r.str(kMaxOciField);
  const uint32_t n = r.u32();
  if (!r.ok() || has_pid > 1 || pid > static_cast<uint64_t>(INT64_MAX) || n > kMaxFrame / 8)
    return tl::unexpected(std::string("an OCI state that does not decode"));
  if (has_pid) st.pid = static_cast<int64_t>(pid);
  for (uint32_t i = 0; i < n; ++i) {
    std::string k = r.str(kMaxOciField), v = r.str(kMaxOciField);
    if (!r.ok() || !st.annotations.emplace(std::move(k), std::move(v)).second)
      return tl::unexpected("OCI state annotation " + std::to_string(i) + " does not decode");
  }
  if (!r.done()) return tl::unexpected(std::string("an OCI state with trailing bytes"));
  // The same checks the in-process parser made, made again on what came back.
  if (auto c = hook::check_container_id(st.id); !c)
    return tl::unexpected("an OCI state whose id is refused: " + c.error().message);
  for (const std::string* s : {&st.oci_version, &st.status, &st.bundle})
    if (!no_nul(*s)) return tl::unexpected(std::string("an OCI state field holding a NUL"));
  return Result<hook::OciState>(std::move(st));
}

tl::expected<Result<nlohmann::json>, std::string> decode_control_request(
    std::span<const uint8_t> reply) {
  Reader r(reply);
  auto refused = refusal_of(r);
  if (!refused) return tl::unexpected(refused.error());
  if (*refused) return Result<nlohmann::json>(tl::unexpected(std::move(**refused)));
  const uint8_t object = r.u8();
  if (!r.ok() || object > 1) return tl::unexpected(std::string("a request reply without its kind"));
  nlohmann::json j;
  if (object == 0) {
    auto v = get_scalar(r, r.u8());
    if (!v) return tl::unexpected(v.error());
    if (v->is_object()) return tl::unexpected(std::string("a non-object request that is an object"));
    j = std::move(*v);
  } else {
    const uint32_t n = r.u32();
    if (!r.ok() || n > kMaxMembers)
      return tl::unexpected("a request reply of " + std::to_string(n) + " members");
    j = nlohmann::json::object();
    for (uint32_t i = 0; i < n && r.ok(); ++i) {
      std::string name = r.str(kMaxName);
      const uint8_t tag = r.u8();
      nlohmann::json v;
      if (tag == kTagArray) {
        const uint32_t m = r.u32();
        if (!r.ok() || m > kMaxFrame)
          return tl::unexpected(std::string("a request reply with an array too long"));
        v = nlohmann::json::array();
        for (uint32_t k = 0; k < m && r.ok(); ++k) {
          auto e = get_scalar(r, r.u8());
          if (!e) return tl::unexpected(e.error());
          v.push_back(std::move(*e));
        }
      } else {
        auto e = get_scalar(r, tag);
        if (!e) return tl::unexpected(e.error());
        v = std::move(*e);
      }
      if (!r.ok()) break;
      if (j.contains(name))
        return tl::unexpected("a request reply naming \"" + name.substr(0, 64) + "\" twice");
      j[std::move(name)] = std::move(v);
    }
  }
  if (!r.done()) return tl::unexpected(std::string("a request reply that does not decode"));
  try {
    (void)j.dump();  // its strings are valid UTF-8, as the worker's parse required
  } catch (const nlohmann::json::exception&) {
    return tl::unexpected(std::string("a request reply with a string that is not UTF-8"));
  }
  return Result<nlohmann::json>(std::move(j));
}

tl::expected<appraise::RpmHeaderResult, std::string> decode_rpm_header(
    std::span<const uint8_t> reply) {
  Reader r(reply);
  auto refused = refusal_of(r);
  if (!refused) return tl::unexpected(refused.error());
  if (*refused) {
    if ((*refused)->code != EBADMSG || !(*refused)->where.empty())
      return tl::unexpected(std::string("an rpm refusal that is not the header's"));
    return appraise::RpmHeaderResult(tl::unexpected(std::move((*refused)->message)));
  }
  appraise::RpmFiles files;
  const uint32_t n = r.u32();
  if (!r.ok() || n > kMaxRpmEntries)
    return tl::unexpected("an rpm package of " + std::to_string(n) + " entries");
  files.entries.reserve(n);
  for (uint32_t i = 0; i < n; ++i) {
    auto digest = r.bytes(64);
    std::string path = r.str(kMaxPath);
    if (!r.ok()) return tl::unexpected("rpm entry " + std::to_string(i) + " does not decode");
    if (path.empty() || !no_nul(path))
      return tl::unexpected("rpm entry " + std::to_string(i) + " has a bad name");
    auto d = measure::Digest::from_bytes(measure::HashAlgo::kSha256, digest);
    if (!d || digest.size() != 32)
      return tl::unexpected("rpm entry " + std::to_string(i) + " is not a sha256 digest");
    files.entries.push_back({*d, std::move(path), false});
  }
  const uint32_t m = r.u32();
  if (!r.ok() || m > kMaxRpmProblems)
    return tl::unexpected("an rpm package of " + std::to_string(m) + " problems");
  for (uint32_t i = 0; i < m; ++i) {
    std::string where = r.str(kMaxPath), what = r.str(kMaxReason);
    if (!r.ok()) return tl::unexpected("rpm problem " + std::to_string(i) + " does not decode");
    if (!no_nul(where) || !is_sentence(where) || what.empty() || !is_sentence(what))
      return tl::unexpected("rpm problem " + std::to_string(i) + " is not one line");
    files.problems.push_back({std::move(where), std::move(what)});
  }
  if (!r.done()) return tl::unexpected(std::string("an rpm reply with trailing bytes"));
  return appraise::RpmHeaderResult(std::move(files));
}

}  // namespace nsima::confine
