// SPDX-License-Identifier: Apache-2.0
#include "model/model_file.h"

#include <openssl/evp.h>
#include <openssl/pem.h>

#include <cerrno>
#include <charconv>
#include <fstream>
#include <memory>
#include <sstream>
#include <unordered_map>

#include "common/atomic_file.h"
#include "common/hex.h"
#include "measure/hasher.h"

namespace nsima::model {
namespace {

constexpr size_t kMaxLine = 4096;
constexpr size_t kMaxSignature = 1024;  // bytes: RSA-8192 is 1024

// What the error shows of an offending token.
std::string shown(std::string_view s) {
  if (s.size() > 72) return "'" + std::string(s.substr(0, 72)) + "...'";
  return "'" + std::string(s) + "'";
}

bool lower_hex(std::string_view s) {
  for (char c : s)
    if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
  return true;
}

struct Line {
  size_t number = 0;
  size_t begin = 0;  // offset of the first byte
  std::string_view text;  // without the newline
};

class Parser {
 public:
  Parser(std::string_view text, std::string_view source) : text_(text), source_(source) {}

  Result<ModelFile> parse();

 private:
  tl::unexpected<Error> fail(size_t line, std::string message) const {
    return make_error(EINVAL, std::move(message),
                      std::string(source_) + ":" + std::to_string(line));
  }
  Result<std::vector<Line>> split() const;
  Result<Digest> digest_field(const Line& l, std::string_view field, std::string_view what) const;
  // "KEY VALUE" with exactly one space.
  Result<std::string_view> keyed(const Line& l, std::string_view key) const;

  std::string_view text_, source_;
};

Result<std::vector<Line>> Parser::split() const {
  std::vector<Line> lines;
  if (text_.empty()) return fail(1, "empty file: expected '" + std::string(kModelMagic) + "'");
  size_t pos = 0, n = 1;
  while (pos < text_.size()) {
    size_t nl = text_.find('\n', pos);
    if (nl == std::string_view::npos) return fail(n, "the last line has no newline");
    std::string_view t = text_.substr(pos, nl - pos);
    if (t.size() > kMaxLine)
      return fail(n, "line of " + std::to_string(t.size()) + " bytes (at most " +
                         std::to_string(kMaxLine) + ")");
    for (size_t i = 0; i < t.size(); ++i) {
      unsigned char c = static_cast<unsigned char>(t[i]);
      if (c < 0x20 || c > 0x7e)
        return fail(n, "byte 0x" + to_hex(&c, 1) + " at column " + std::to_string(i + 1) +
                           " (only printable ASCII; lines end in \\n alone)");
    }
    if (t.empty()) return fail(n, "empty line");
    if (t.back() == ' ') return fail(n, "trailing space");
    lines.push_back(Line{n, pos, t});
    pos = nl + 1;
    ++n;
  }
  return lines;
}

Result<Digest> Parser::digest_field(const Line& l, std::string_view field,
                                    std::string_view what) const {
  if (field.size() != 2 * kDigestSize || !lower_hex(field))
    return fail(l.number, std::string(what) + ": expected " + std::to_string(2 * kDigestSize) +
                              " lower-case hex digits, got " + shown(field));
  auto bytes = from_hex(field);
  Digest d{};
  std::copy(bytes->begin(), bytes->end(), d.begin());
  return d;
}

Result<std::string_view> Parser::keyed(const Line& l, std::string_view key) const {
  std::string prefix = std::string(key) + " ";
  if (l.text.substr(0, prefix.size()) != prefix)
    return fail(l.number, "expected '" + std::string(key) + " ...', got " + shown(l.text));
  std::string_view v = l.text.substr(prefix.size());
  if (v.empty() || v.find(' ') != std::string_view::npos)
    return fail(l.number, "'" + std::string(key) + "' takes one value, got " + shown(v));
  return v;
}

Result<ModelFile> Parser::parse() {
  auto lines = split();
  if (!lines) return tl::unexpected(lines.error());
  const auto& ls = *lines;
  ModelFile f;

  if (ls[0].text != kModelMagic) {
    if (ls[0].text.substr(0, 12) == "nsima-model ")
      return fail(1, "unsupported model version " + shown(ls[0].text.substr(12)) +
                         " (this nsima reads version 1)");
    return fail(1, "not a model file: expected '" + std::string(kModelMagic) + "', got " +
                       shown(ls[0].text));
  }
  auto need = [&](size_t i, std::string_view key) -> Result<std::string_view> {
    if (i >= ls.size())
      return fail(ls.back().number + 1, "the file ends before '" + std::string(key) + "'");
    return keyed(ls[i], key);
  };
  auto dg = need(1, "digest");
  if (!dg) return tl::unexpected(dg.error());
  if (*dg != "sha256")
    return fail(2, "digest " + shown(*dg) + ": version 1 models use sha256 only");
  auto base = need(2, "base");
  if (!base) return tl::unexpected(base.error());
  auto b = digest_field(ls[2], *base, "base");
  if (!b) return tl::unexpected(b.error());
  f.base = *b;
  auto agg = need(3, "aggregate");
  if (!agg) return tl::unexpected(agg.error());
  auto a = digest_field(ls[3], *agg, "aggregate");
  if (!a) return tl::unexpected(a.error());
  f.aggregate = *a;

  std::unordered_map<Digest, size_t, DigestHash> seen, execs;
  size_t i = 4;
  for (; i < ls.size(); ++i) {
    const Line& l = ls[i];
    if (l.text.substr(0, 4) == "end " || l.text == "end") break;
    if (l.text.substr(0, 5) == "exec ") {
      auto v = keyed(l, "exec");
      if (!v) return tl::unexpected(v.error());
      auto d = digest_field(l, *v, "exec");
      if (!d) return tl::unexpected(d.error());
      auto [it, fresh] = execs.emplace(*d, l.number);
      if (!fresh)
        return fail(l.number, "executable " + to_hex(*d).substr(0, 16) +
                                  "... is already on line " + std::to_string(it->second));
      f.executables.push_back(*d);
      continue;
    }
    if (l.text.substr(0, 6) != "point ")
      return fail(l.number, "expected 'point <coefficient> <event> [description]', "
                            "'exec <sha256>' or 'end <n>', got " + shown(l.text));
    std::string_view rest = l.text.substr(6);
    size_t sp = rest.find(' ');
    if (sp == std::string_view::npos)
      return fail(l.number, "point without an event name: " + shown(l.text));
    auto c = digest_field(l, rest.substr(0, sp), "point");
    if (!c) return tl::unexpected(c.error());
    rest = rest.substr(sp + 1);
    sp = rest.find(' ');
    std::string_view ev = rest.substr(0, sp);
    std::string_view desc = sp == std::string_view::npos ? std::string_view{} : rest.substr(sp + 1);
    auto type = event_from_name(ev);
    if (!type) return fail(l.number, "unknown event " + shown(ev));
    if (sp != std::string_view::npos && (desc.empty() || desc.front() == ' '))
      return fail(l.number, "two spaces before the description");
    if (desc.size() > kMaxDescription)
      return fail(l.number, "description of " + std::to_string(desc.size()) +
                                " bytes (at most " + std::to_string(kMaxDescription) + ")");
    auto [it, fresh] = seen.emplace(*c, l.number);
    if (!fresh)
      return fail(l.number, "coefficient " + to_hex(*c).substr(0, 16) +
                                "... is already on line " + std::to_string(it->second));
    f.points.push_back(FilePoint{*c, *type, std::string(desc)});
  }
  if (i >= ls.size())
    return fail(ls.back().number + 1, "the file ends without 'end <number of points>'");
  auto cnt = keyed(ls[i], "end");
  if (!cnt) return tl::unexpected(cnt.error());
  size_t n = 0;
  auto [p, ec] = std::from_chars(cnt->data(), cnt->data() + cnt->size(), n);
  if (ec != std::errc() || p != cnt->data() + cnt->size() || (cnt->size() > 1 && (*cnt)[0] == '0'))
    return fail(ls[i].number, "end: expected the number of points, got " + shown(*cnt));
  if (n != f.points.size())
    return fail(ls[i].number, "end says " + std::to_string(n) + " points, the file has " +
                                  std::to_string(f.points.size()));
  ++i;
  if (i < ls.size()) {
    const Line& l = ls[i];
    if (l.text.substr(0, 4) != "sig ")
      return fail(l.number, "only a 'sig' line may follow 'end', got " + shown(l.text));
    std::string_view rest = l.text.substr(4);
    size_t sp = rest.find(' ');
    if (sp == std::string_view::npos) return fail(l.number, "sig: expected 'sig <algo> <hex>'");
    std::string_view algo = rest.substr(0, sp), hex = rest.substr(sp + 1);
    auto alg = measure::hash_algo_from_name(algo);
    if (!alg || (*alg != measure::HashAlgo::kSha256 && *alg != measure::HashAlgo::kSha384 &&
                 *alg != measure::HashAlgo::kSha512))
      return fail(l.number, "sig: unsupported algorithm " + shown(algo) +
                                " (sha256, sha384 or sha512)");
    if (hex.empty() || hex.size() % 2 || !lower_hex(hex) || hex.size() > 2 * kMaxSignature)
      return fail(l.number, "sig: expected the signature as lower-case hex (at most " +
                                std::to_string(kMaxSignature) + " bytes), got " + shown(hex));
    f.signature = ModelSignature{*alg, *from_hex(hex), l.begin, l.number};
    ++i;
  }
  if (i < ls.size())
    return fail(ls[i].number, "nothing may follow the 'sig' line, got " + shown(ls[i].text));
  return f;
}

struct BioDeleter {
  void operator()(BIO* b) const noexcept { BIO_free(b); }
};
struct MdCtxDeleter {
  void operator()(EVP_MD_CTX* c) const noexcept { EVP_MD_CTX_free(c); }
};

Result<std::string> read_all(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(errno ? errno : ENOENT, "cannot open", path.string());
  std::ostringstream ss;
  ss << in.rdbuf();
  if (in.bad()) return make_error(EIO, "read error", path.string());
  return ss.str();
}

}  // namespace

Result<ModelFile> parse_model(std::string_view text, std::string_view source) {
  return Parser(text, source).parse();
}

Result<ModelFile> load_model(std::string_view text, std::string_view source,
                             const appraise::Keyring& keys) {
  auto f = parse_model(text, source);
  if (!f) return f;
  const std::string src(source);
  if (!f->signature) {
    if (!keys.empty())
      return make_error(EPERM,
                        "unsigned model: the namespace has " + std::to_string(keys.size()) +
                            " key(s), so a model must be signed by one of them",
                        src);
    return f;
  }
  const ModelSignature& s = *f->signature;
  const std::string where = src + ":" + std::to_string(s.line);
  if (keys.empty())
    return make_error(EPERM,
                      "signed model, but the namespace has no key to check the signature with "
                      "(nsimactl keys add)",
                      where);
  auto digest = measure::hash_bytes(
      s.algo, {reinterpret_cast<const uint8_t*>(text.data()), s.signed_size});
  if (!digest) return tl::unexpected(digest.error());
  auto check = keys.verify_any(s.algo, digest->bytes(), s.signature);
  if (!check.ok()) return make_error(EPERM, "bad signature: " + check.reason, where);
  return f;
}

Result<ModelFile> read_model_file(const std::filesystem::path& path,
                                  const appraise::Keyring& keys) {
  auto text = read_all(path);
  if (!text) return tl::unexpected(text.error());
  return load_model(*text, path.string(), keys);
}

Result<Model> model_from_file(const ModelFile& file, Mode mode) {
  Model m(file.base, file.aggregate);
  for (const auto& p : file.points)
    if (auto r = m.add_known(p.coefficient, p.event, p.description); !r)
      return tl::unexpected(r.error());  // a parsed file has no duplicates
  for (const auto& d : file.executables) m.add_executable(d);
  if (auto r = m.set_mode(mode); !r) return tl::unexpected(r.error());
  return m;
}

std::string serialize_model(const Model& model) {
  std::string out;
  out += kModelMagic;
  out += "\ndigest sha256\nbase " + to_hex(model.base()) + "\naggregate " +
         to_hex(model.aggregate()) + "\n";
  size_t n = 0;
  for (const auto& p : model.points()) {
    if (!p.known) continue;
    out += "point " + to_hex(p.coefficient) + " " + std::string(event_name(p.event));
    // descriptions are for people: keep what the format can carry
    std::string d;
    for (char c : p.description)
      d += (c >= 0x20 && c <= 0x7e) ? c : '?';
    while (!d.empty() && d.back() == ' ') d.pop_back();
    size_t lead = d.find_first_not_of(' ');
    d = lead == std::string::npos ? std::string() : d.substr(lead);
    if (d.size() > kMaxDescription) d.resize(kMaxDescription);
    while (!d.empty() && d.back() == ' ') d.pop_back();
    if (!d.empty()) out += " " + d;
    out += "\n";
    ++n;
  }
  for (const auto& d : model.executables()) out += "exec " + to_hex(d) + "\n";
  out += "end " + std::to_string(n) + "\n";
  return out;
}

Result<std::string> sign_model(std::string_view text, const std::filesystem::path& key_pem,
                               measure::HashAlgo algo) {
  auto parsed = parse_model(text, "(model to sign)");
  if (!parsed) return tl::unexpected(parsed.error());
  if (parsed->signature) return make_error(EINVAL, "the model is already signed");
  auto pem = read_all(key_pem);
  if (!pem) return tl::unexpected(pem.error());
  std::unique_ptr<BIO, BioDeleter> bio(BIO_new_mem_buf(pem->data(), static_cast<int>(pem->size())));
  appraise::EvpPkeyPtr key(
      bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, nullptr, nullptr) : nullptr);
  if (!key) return make_error(EINVAL, "not a PEM private key", key_pem.string());
  const EVP_MD* md = measure::evp_md(algo);
  std::unique_ptr<EVP_MD_CTX, MdCtxDeleter> ctx(EVP_MD_CTX_new());
  size_t len = 0;
  if (!md || !ctx || EVP_DigestSignInit(ctx.get(), nullptr, md, nullptr, key.get()) != 1 ||
      EVP_DigestSign(ctx.get(), nullptr, &len,
                     reinterpret_cast<const unsigned char*>(text.data()), text.size()) != 1)
    return make_error(EINVAL, "cannot sign with this key", key_pem.string());
  std::vector<uint8_t> sig(len);
  if (EVP_DigestSign(ctx.get(), sig.data(), &len,
                     reinterpret_cast<const unsigned char*>(text.data()), text.size()) != 1)
    return make_error(EINVAL, "signing failed", key_pem.string());
  sig.resize(len);
  return std::string(text) + "sig " + std::string(measure::hash_algo_name(algo)) + " " +
         to_hex(sig) + "\n";
}

Result<void> write_model_file(const std::filesystem::path& path, std::string_view text) {
  return write_file_atomic(path.string(), text, 0644);
}

OfflineValues offline_values(const ModelFile& file, const std::optional<Digest>& aggregate) {
  std::vector<Digest> pts;
  pts.reserve(file.points.size());
  for (const auto& p : file.points) pts.push_back(p.coefficient);
  const Digest& agg = aggregate ? *aggregate : file.aggregate;
  return OfflineValues{compute_state(file.base, agg, pts), compute_measurement(file.base, agg, pts),
                       pts.size()};
}

}  // namespace nsima::model
