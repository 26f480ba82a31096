// SPDX-License-Identifier: Apache-2.0
// nsimactl verify and nsimactl vtpm (see verify.h for the checks).
#include "cli/verify.h"

#include <openssl/rand.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <sstream>
#include <vector>

#include "common/hex.h"
#include "control/base64.h"
#include "measure/hasher.h"
#include "measure/list_format.h"
#include "measure/template.h"
#include "nsima/control_protocol.h"
#include "tpm/attestation_key.h"
#include "tpm/credential.h"

namespace nsima::cli {

namespace {

using nlohmann::json;
namespace ctl = nsima::control;
namespace fs = std::filesystem;
using Bytes = std::vector<uint8_t>;

struct Check {
  std::string kind;
  bool ok = false;
  std::string detail;
};

struct Report {
  std::string ns;
  std::vector<Check> checks;
  std::map<std::string, uint64_t> list_violations;  // the list's own violation entries, by name
  uint64_t entries = 0;   // in the list handed over
  uint64_t attested = 0;  // of those, covered by the PCR value
  std::vector<std::string> notes;

  void add(std::string kind, bool ok, std::string detail) {
    checks.push_back({std::move(kind), ok, std::move(detail)});
  }
  bool ok() const {
    if (checks.empty()) return false;
    for (auto& c : checks)
      if (!c.ok) return false;
    return true;
  }
};

std::optional<Bytes> read_bytes(const std::string& path, std::string* err) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    *err = path + ": " + std::strerror(errno);
    return std::nullopt;
  }
  return Bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}
std::string as_text(const Bytes& b) { return std::string(b.begin(), b.end()); }

bool write_bytes(const std::string& path, const Bytes& b) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
  out.close();
  if (!out) std::fprintf(stderr, "nsimactl: %s: cannot write: %s\n", path.c_str(), std::strerror(errno));
  return static_cast<bool>(out);
}

std::optional<Bytes> b64(const json& r, const char* field) {
  auto d = ctl::base64_decode(r.value(field, ""));
  if (!d) return std::nullopt;
  return Bytes(d->begin(), d->end());
}

// The files of `nsimactl vtpm identity --out DIR` (tpm2-tools formats where they exist).
struct Identity {
  Bytes ek_public, ek_cert, ak_public;
  std::string chain_pem;
};
constexpr const char* kEkPubFile = "ek.pub";          // TPM2B_PUBLIC (tpm2_readpublic -o)
constexpr const char* kEkCertFile = "ek.crt";         // DER (tpm2_nvread 0x1c00002)
constexpr const char* kEkChainFile = "ek-chain.pem";  // the CA's issuer certificate
constexpr const char* kAkPubFile = "ak.pub";          // TPM2B_PUBLIC
constexpr const char* kAkNameFile = "ak.name";        // the name's bytes (tpm2_createak -n)

bool save_identity(const Identity& id, const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) {
    std::fprintf(stderr, "nsimactl: %s: %s\n", dir.c_str(), ec.message().c_str());
    return false;
  }
  auto name = tpm::public_name(id.ak_public);
  return write_bytes(dir + "/" + kEkPubFile, id.ek_public) &&
         write_bytes(dir + "/" + kEkCertFile, id.ek_cert) &&
         write_bytes(dir + "/" + kEkChainFile, Bytes(id.chain_pem.begin(), id.chain_pem.end())) &&
         write_bytes(dir + "/" + kAkPubFile, id.ak_public) &&
         write_bytes(dir + "/" + kAkNameFile, name ? *name : Bytes{});
}

std::optional<Identity> load_identity(const std::string& dir, std::string* err) {
  Identity id;
  auto ek = read_bytes(dir + "/" + kEkPubFile, err);
  if (!ek) return std::nullopt;
  auto cert = read_bytes(dir + "/" + kEkCertFile, err);
  if (!cert) return std::nullopt;
  auto ak = read_bytes(dir + "/" + kAkPubFile, err);
  if (!ak) return std::nullopt;
  std::string ignore;
  auto chain = read_bytes(dir + "/" + kEkChainFile, &ignore);
  id.ek_public = std::move(*ek);
  id.ek_cert = std::move(*cert);
  id.ak_public = std::move(*ak);
  if (chain) id.chain_pem = as_text(*chain);
  return id;
}

// ek-cert and ak-attributes.
void check_identity(Report& rep, const Identity& id, const std::string& ca_pem) {
  if (id.ek_cert.empty()) {
    rep.add("ek-cert", false,
            "the TPM holds no EK certificate (a vTPM created before nsima gave vTPMs one): its "
            "EK cannot be tied to the CA");
  } else if (auto c = tpm::check_ek_certificate(id.ek_cert, id.chain_pem, ca_pem, id.ek_public);
             !c) {
    rep.add("ek-cert", false, c.error().message);
  } else {
    auto d = tpm::spki_digest(id.ek_public);
    rep.add("ek-cert", true,
            "the EK certificate chains to the CA (EK public sha256 " + (d ? to_hex(*d) : "?") +
                ")");
  }
  if (auto a = tpm::check_ak_attributes(id.ak_public); !a)
    rep.add("ak-attributes", false, a.error().message);
  else
    rep.add("ak-attributes", true, "restricted signing key, fixedTPM");
}

struct QuoteFiles {
  Bytes msg, sig, pcrs;
};

// quote-signature, nonce, pcr-digest; returns the quoted PCR values (empty on failure).
std::map<tpm::Bank, std::map<int, Bytes>> check_quote(Report& rep, const QuoteFiles& q,
                                                      const Bytes& ak_public,
                                                      const Bytes& nonce) {
  auto claims = tpm::check_quote_signature(q.msg, q.sig, ak_public, nonce);
  if (!claims) {
    const std::string kind = claims.error().where == "nonce" ? "nonce" : "quote-signature";
    rep.add(kind, false, claims.error().message);
    if (kind == "nonce") rep.add("quote-signature", true, "signed by the AK");
    return {};
  }
  rep.add("quote-signature", true, "a TPM quote signed by the AK");
  rep.add("nonce", true, "qualifying data is the nonce " + to_hex(nonce));
  auto values = tpm::parse_pcrs_file(q.pcrs);
  if (!values) {
    rep.add("pcr-digest", false, values.error().message);
    return {};
  }
  std::vector<Bytes> flat;
  bool same_selection = values->size() == claims->selection.size();
  for (auto& s : claims->selection) {
    auto it = values->find(s.bank);
    if (it == values->end() || it->second.size() != s.pcrs.size()) {
      same_selection = false;
      break;
    }
    for (int p : s.pcrs) {
      auto v = it->second.find(p);
      if (v == it->second.end()) {
        same_selection = false;
        break;
      }
      flat.push_back(v->second);
    }
  }
  if (!same_selection) {
    rep.add("pcr-digest", false, "the PCR file selects other PCRs than the quote");
    return {};
  }
  auto composite = tpm::pcr_composite_digest(tpm::Bank::kSha256, flat);
  if (!composite || *composite != claims->pcr_digest) {
    rep.add("pcr-digest", false, "the PCR values do not hash to the quote's signed PCR digest");
    return {};
  }
  rep.add("pcr-digest", true, "the PCR values are those the quote signs");
  return *values;
}

struct ParsedList {
  std::vector<measure::Record> records;
  std::vector<Bytes> raw;  // each record's bytes (owner-copy compares them)
};

std::optional<ParsedList> parse_list(const Bytes& bytes, std::string* err) {
  ParsedList out;
  size_t off = 0;
  while (off < bytes.size()) {
    measure::Record r;
    auto n = measure::parse_record(std::span<const uint8_t>(bytes).subspan(off), off, r);
    if (!n) {
      *err = "the list is malformed at byte " + std::to_string(off) + ": " + n.error().to_string();
      return std::nullopt;
    }
    out.raw.emplace_back(bytes.begin() + static_cast<long>(off),
                         bytes.begin() + static_cast<long>(off + *n));
    out.records.push_back(std::move(r));
    off += *n;
  }
  return out;
}

void count_violations(Report& rep, const ParsedList& l) {
  for (auto& r : l.records) {
    if (!r.violation()) continue;
    // The name: the last field of the template data (n-ng), up to its second ':' for nsima's.
    std::string name = "violation";
    auto fields = measure::split_template_data(r.template_name, r.data);
    if (fields && !fields->empty()) {
      auto& f = fields->back();
      name.assign(reinterpret_cast<const char*>(f.data.data()), f.data.size());
      while (!name.empty() && name.back() == '\0') name.pop_back();
    }
    if (name.rfind("nsima:", 0) == 0) {
      auto c = name.find(':', 6);
      if (c != std::string::npos) name.resize(c);
    }
    rep.list_violations[name]++;
  }
}

// list-replay: the list's entries for `pcr` replay to the PCR value of each bank given. Entries
// appended after the quote are allowed (the longest prefix that matches is what is attested).
void check_replay(Report& rep, const ParsedList& l, int pcr,
                  const std::map<tpm::Bank, std::map<int, Bytes>>& values) {
  rep.entries = l.records.size();
  bool any = false;
  uint64_t attested = UINT64_MAX;
  for (auto& [bank, pcrs] : values) {
    auto v = pcrs.find(pcr);
    if (v == pcrs.end()) continue;
    auto algo = measure::hash_algo_from_tpm(static_cast<uint16_t>(bank));
    if (!algo) continue;
    any = true;
    measure::Digest acc(*algo);
    std::optional<uint64_t> match;
    if (Bytes(acc.bytes().begin(), acc.bytes().end()) == v->second) match = 0;
    std::string err;
    for (size_t i = 0; i < l.records.size(); ++i) {
      const auto& r = l.records[i];
      if (r.pcr != static_cast<uint32_t>(pcr)) continue;
      auto e = measure::extend_value(r.template_name, r.data, r.violation(), *algo);
      if (!e) {
        err = "entry " + std::to_string(i) + ": " + e.error().to_string();
        break;
      }
      auto next = measure::pcr_extend(acc, *e);
      if (!next) {
        err = next.error().to_string();
        break;
      }
      acc = *next;
      if (Bytes(acc.bytes().begin(), acc.bytes().end()) == v->second) match = i + 1;
    }
    const std::string b = tpm::bank_name(bank);
    if (!err.empty() || !match) {
      rep.add("list-replay", false,
              "the list does not replay to " + b + " PCR " + std::to_string(pcr) + " (" +
                  to_hex(v->second) + (err.empty() ? "" : "; " + err) +
                  "): entries were changed, removed or added");
      return;
    }
    attested = std::min<uint64_t>(attested, *match);
  }
  if (!any) {
    rep.add("list-replay", false,
            "no value of PCR " + std::to_string(pcr) + " was given for any bank the list uses");
    return;
  }
  rep.attested = attested;
  std::string d = std::to_string(attested) + " of " + std::to_string(l.records.size()) +
                  " entries replay to PCR " + std::to_string(pcr);
  if (attested < l.records.size())
    d += " (the rest were appended after the PCR value was read)";
  rep.add("list-replay", true, d);
}

// owner-copy: the child's entries after its first (its boot_aggregate) are in the owner's list
// in the same order.
void check_owner_copy(Report& rep, const ParsedList& child, const ParsedList& owner,
                      const std::string& owner_name) {
  size_t j = 1, last = 0;
  for (size_t i = 0; i < owner.raw.size() && j < child.raw.size(); ++i)
    if (owner.raw[i] == child.raw[j]) {
      ++j;
      last = i;
    }
  (void)last;
  if (j < child.raw.size()) {
    rep.add("owner-copy", false,
            "entry " + std::to_string(j) + " of the namespace's list is not in the list of " +
                owner_name + " (in order): the list was changed, or its owner's copy is missing");
    return;
  }
  rep.add("owner-copy", true,
          std::to_string(child.raw.size() > 0 ? child.raw.size() - 1 : 0) +
              " entries are copied in order into the list of " + owner_name);
}

int finish(const Report& rep, bool as_json) {
  const bool ok = rep.ok();
  if (as_json) {
    json checks = json::array();
    json failed = json::object();
    for (auto& c : rep.checks) {
      checks.push_back({{"kind", c.kind}, {"ok", c.ok}, {"detail", c.detail}});
      if (!c.ok) failed[c.kind] = c.detail;
    }
    std::cout << json{{"ns", rep.ns},
                      {"ok", ok},
                      {"checks", checks},
                      {"failed", failed},
                      {"entries", rep.entries},
                      {"attested", rep.attested},
                      {"list_violations", rep.list_violations},
                      {"notes", rep.notes}}
                     .dump()
              << "\n";
  } else {
    for (auto& c : rep.checks)
      std::cout << (c.ok ? "ok     " : "FAILED ") << c.kind << ": " << c.detail << "\n";
    for (auto& n : rep.notes) std::cout << "note: " << n << "\n";
    if (!rep.list_violations.empty()) {
      std::cout << "violation entries in the list:";
      for (auto& [k, v] : rep.list_violations) std::cout << " " << k << "=" << v;
      std::cout << "\n";
    }
  }
  if (ok) {
    if (!as_json)
      std::cout << "verified: namespace " << rep.ns << " (" << rep.attested
                << " entries attested)\n";
    return 0;
  }
  std::string kinds;
  for (auto& c : rep.checks)
    if (!c.ok) kinds += (kinds.empty() ? "" : ", ") + c.kind;
  if (rep.checks.empty()) kinds = "nothing could be checked";
  std::fprintf(stderr, "nsimactl: verification of namespace %s failed: %s\n", rep.ns.c_str(),
               kinds.c_str());
  return 1;
}

Bytes random_bytes(size_t n) {
  Bytes b(n);
  if (RAND_bytes(b.data(), static_cast<int>(n)) != 1) b.clear();
  return b;
}

// The namespace's row of `ns list`.
std::optional<json> ns_row(const DaemonLink& d, const std::string& ns) {
  auto r = d.request({{ctl::kFieldCmd, ctl::kCmdNsList}});
  if (!r) return std::nullopt;
  for (auto& n : r->value("namespaces", json::array()))
    if (n.value("id", "") == ns || std::to_string(n.value("ns_id", 0u)) == ns) return n;
  std::fprintf(stderr, "nsimactl: no namespace %s\n", ns.c_str());
  return std::nullopt;
}

std::optional<Bytes> fetch_list(const DaemonLink& d, const std::string& ns) {
  Bytes out;
  int rc = d.stream({{ctl::kFieldCmd, ctl::kCmdLog},
                     {ctl::kFieldNs, ns},
                     {ctl::kFieldFormat, ctl::kFormatBinary}},
                    [&](const std::string& b) {
                      out.insert(out.end(), b.begin(), b.end());
                      return true;
                    });
  if (rc != 0) return std::nullopt;
  return out;
}

std::optional<Identity> fetch_identity(const DaemonLink& d, const std::string& ns,
                                       std::string* err) {
  auto r = d.request({{ctl::kFieldCmd, ctl::kCmdVtpmIdentity}, {ctl::kFieldNs, ns}});
  if (!r) {
    *err = "nsimad gave no identity for its TPM (see above)";
    return std::nullopt;
  }
  Identity id;
  auto ek = b64(*r, ctl::kFieldEkPublic), cert = b64(*r, ctl::kFieldEkCert),
       ak = b64(*r, ctl::kFieldAkPublic);
  if (!ek || !cert || !ak) {
    *err = "malformed identity from nsimad";
    return std::nullopt;
  }
  id.ek_public = std::move(*ek);
  id.ek_cert = std::move(*cert);
  id.ak_public = std::move(*ak);
  id.chain_pem = r->value(ctl::kFieldChainPem, "");
  return id;
}

// Online: everything about the TPM-owning namespace `owner`: identity, activation, quote,
// replay of its list. Returns its parsed list (for the owner-copy check).
std::optional<ParsedList> verify_owner_online(Report& rep, const DaemonLink& d,
                                              const std::string& owner, int pcr,
                                              const std::string& ca_pem,
                                              const std::string& save_dir) {
  std::string err;
  auto id = fetch_identity(d, owner, &err);
  if (!id) {
    rep.add("ek-cert", false, "namespace " + owner + ": " + err);
    rep.add("ak-binding", false, "no EK to bind the AK to");
    rep.add("list-replay", false, "not checked: no quote from a trusted AK");
    // The list still serves the owner-copy check.
    auto bytes = fetch_list(d, owner);
    if (!bytes) return std::nullopt;
    auto list = parse_list(*bytes, &err);
    if (list) count_violations(rep, *list);
    return list;
  }
  check_identity(rep, *id, ca_pem);
  // ak-binding: the challenge only the TPM holding that EK and that AK can answer.
  auto name = tpm::public_name(id->ak_public);
  Bytes secret = random_bytes(32);
  auto cred = name ? tpm::make_credential(id->ek_public, *name, secret)
                   : Result<tpm::Credential>(tl::unexpected(name.error()));
  bool bound = false;
  if (!cred) {
    rep.add("ak-binding", false, "cannot make the credential: " + cred.error().message);
  } else {
    auto a = d.request({{ctl::kFieldCmd, ctl::kCmdVtpmActivate},
                        {ctl::kFieldNs, owner},
                        {ctl::kFieldIdObject, ctl::base64_encode(std::string_view(
                                                  reinterpret_cast<const char*>(cred->id_object.data()),
                                                  cred->id_object.size()))},
                        {ctl::kFieldEncSecret,
                         ctl::base64_encode(std::string_view(
                             reinterpret_cast<const char*>(cred->enc_secret.data()),
                             cred->enc_secret.size()))}});
    auto answer = a ? from_hex(a->value(ctl::kFieldSecret, "")) : std::nullopt;
    bound = answer && *answer == secret;
    rep.add("ak-binding", bound,
            bound ? "the vTPM activated a credential made for its EK and this AK"
                  : !a ? "the vTPM did not activate the credential (see above): the AK is not "
                         "bound to the certified EK"
                       : "the vTPM returned another secret: the AK is not bound to the EK");
  }
  if (bound && !save_dir.empty() && !save_identity(*id, save_dir)) return std::nullopt;
  // The quote, with a fresh nonce.
  Bytes nonce = random_bytes(32);
  auto q = d.request(
      {{ctl::kFieldCmd, ctl::kCmdQuote}, {ctl::kFieldNs, owner}, {ctl::kFieldNonce, to_hex(nonce)}});
  if (!q) {
    rep.add("quote-signature", false, "nsimad gave no quote (see above)");
    return std::nullopt;
  }
  QuoteFiles qf;
  auto msg = b64(*q, ctl::kFieldQuoteMsg), sig = b64(*q, ctl::kFieldQuoteSig),
       pcrs = b64(*q, ctl::kFieldQuotePcrs);
  if (!msg || !sig || !pcrs) {
    rep.add("quote-signature", false, "malformed quote from nsimad");
    return std::nullopt;
  }
  qf.msg = std::move(*msg);
  qf.sig = std::move(*sig);
  qf.pcrs = std::move(*pcrs);
  auto values = check_quote(rep, qf, id->ak_public, nonce);
  auto bytes = fetch_list(d, owner);
  if (!bytes) {
    rep.add("list-replay", false, "nsimad did not send the list of " + owner);
    return std::nullopt;
  }
  auto list = parse_list(*bytes, &err);
  if (!list) {
    rep.add("list-replay", false, err);
    return std::nullopt;
  }
  if (!values.empty()) check_replay(rep, *list, pcr, values);
  else rep.add("list-replay", false, "no quoted PCR value to replay against");
  count_violations(rep, *list);
  if (!save_dir.empty()) {
    write_bytes(save_dir + "/quote.msg", qf.msg);
    write_bytes(save_dir + "/quote.sig", qf.sig);
    write_bytes(save_dir + "/quote.pcrs", qf.pcrs);
    std::string nh = to_hex(nonce);
    write_bytes(save_dir + "/nonce.hex", Bytes(nh.begin(), nh.end()));
    write_bytes(save_dir + "/binary_runtime_measurements", *bytes);
  }
  return list;
}

// evmctl's PCR file: lines "PCR-NN: <hex>".
std::optional<std::map<int, Bytes>> read_pcr_file(const std::string& path, std::string* err) {
  std::ifstream in(path);
  if (!in) {
    *err = path + ": " + std::strerror(errno);
    return std::nullopt;
  }
  std::map<int, Bytes> out;
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.empty()) continue;
    int idx = -1;
    char hex[200] = "";
    if (std::sscanf(line.c_str(), "PCR-%d: %199s", &idx, hex) != 2 || idx < 0 || idx > 31) {
      *err = path + ":" + std::to_string(n) + ": not a \"PCR-NN: <hex>\" line";
      return std::nullopt;
    }
    auto v = from_hex(hex);
    if (!v) {
      *err = path + ":" + std::to_string(n) + ": the value is not hex";
      return std::nullopt;
    }
    out[idx] = std::move(*v);
  }
  return out;
}

}  // namespace

void add_attest_commands(CLI::App& app, const DaemonLink& link, int& rc, bool& as_json) {
  // ---- nsimactl vtpm
  auto* vtpm = app.add_subcommand("vtpm", "vTPM identity: the CA, EK certificates, the AK");
  vtpm->require_subcommand(1);
  auto* ca = vtpm->add_subcommand("ca-cert", "print the vTPM CA's certificate (PEM): the "
                                             "verifier's trust anchor for EK certificates");
  ca->add_flag("--json", as_json, "{\"ca_pem\": ...}");
  ca->callback([&] {
    auto r = link.request({{ctl::kFieldCmd, ctl::kCmdVtpmCa}});
    if (!r) return void(rc = 1);
    if (as_json) {
      std::cout << json{{"ca_pem", r->value(ctl::kFieldCaPem, "")}}.dump() << "\n";
      return;
    }
    std::cout << r->value(ctl::kFieldCaPem, "");
  });

  static std::string id_ns, id_out;
  auto* idc = vtpm->add_subcommand(
      "identity", "write a vTPM's ek.pub ek.crt ek-chain.pem ak.pub ak.name (tpm2-tools formats)");
  idc->add_option("--ns", id_ns, "namespace id (with its own vTPM)")->required();
  idc->add_option("--out", id_out, "directory")->required();
  idc->add_flag("--json", as_json, "the files written and the AK name as JSON");
  idc->callback([&] {
    std::string err;
    auto id = fetch_identity(link, id_ns, &err);
    if (!id) {
      std::fprintf(stderr, "nsimactl: %s\n", err.c_str());
      return void(rc = 1);
    }
    if (!save_identity(*id, id_out)) return void(rc = 1);
    auto name = tpm::public_name(id->ak_public);
    if (as_json) {
      std::cout << json{{"dir", id_out},
                        {"ak_name", name ? to_hex(*name) : ""},
                        {"ek_cert", !id->ek_cert.empty()}}
                       .dump()
                << "\n";
      return;
    }
    std::cout << "wrote " << id_out << "/{ek.pub,ek.crt,ek-chain.pem,ak.pub,ak.name}\n";
    if (id->ek_cert.empty())
      std::cout << "this vTPM has no EK certificate (made before nsima gave vTPMs one)\n";
  });

  static std::string ac_ns, ac_file;
  auto* act = vtpm->add_subcommand(
      "activate", "TPM2_ActivateCredential in a vTPM (a tpm2_makecredential -o file); prints the "
                  "secret in hex");
  act->add_option("--ns", ac_ns, "namespace id (with its own vTPM)")->required();
  act->add_option("--credential", ac_file, "tpm2_makecredential output file")->required();
  act->callback([&] {
    std::string err;
    auto bytes = read_bytes(ac_file, &err);
    if (!bytes) {
      std::fprintf(stderr, "nsimactl: %s\n", err.c_str());
      return void(rc = 1);
    }
    auto c = tpm::credential_from_tools_file(*bytes);
    if (!c) {
      std::fprintf(stderr, "nsimactl: %s: %s\n", ac_file.c_str(), c.error().message.c_str());
      return void(rc = 1);
    }
    auto enc = [](const Bytes& b) {
      return ctl::base64_encode(std::string_view(reinterpret_cast<const char*>(b.data()), b.size()));
    };
    auto r = link.request({{ctl::kFieldCmd, ctl::kCmdVtpmActivate},
                           {ctl::kFieldNs, ac_ns},
                           {ctl::kFieldIdObject, enc(c->id_object)},
                           {ctl::kFieldEncSecret, enc(c->enc_secret)}});
    if (!r) return void(rc = 1);
    std::cout << r->value(ctl::kFieldSecret, "") << "\n";
  });

  // ---- nsimactl verify
  static std::string v_ns, v_ca, v_save, v_list, v_quote, v_identity, v_nonce, v_trusted_ak,
      v_owner_list;
  static std::vector<std::string> v_pcrs;
  static int v_pcr = -1;
  auto* v = app.add_subcommand(
      "verify",
      "verify a namespace's attestation: EK certificate to the CA, AK bound to the EK by "
      "credential activation, quote (signature, nonce, PCR digest), list replay, owner copy");
  v->add_option("--ns", v_ns, "online: the namespace (asks nsimad)");
  v->add_option("--ca", v_ca, "the vTPM CA certificate (PEM, from nsimactl vtpm ca-cert)");
  v->add_option("--save", v_save, "online: also write the checked evidence into this directory");
  v->add_option("--list", v_list, "offline: binary measurement list file");
  v->add_option("--quote", v_quote, "offline: directory of nsimactl quote --out");
  v->add_option("--identity", v_identity,
                "offline: directory of nsimactl vtpm identity --out (or verify --save)");
  v->add_option("--nonce", v_nonce, "offline: the nonce the quote must carry (hex)");
  v->add_option("--trusted-ak", v_trusted_ak,
                "offline: ak.pub an earlier online verify bound (verify --save DIR)");
  v->add_option("--pcrs", v_pcrs,
                "offline: BANK,FILE of PCR values (nsimactl pcr --evmctl); unsigned, so only the "
                "replay is checked")
      ->take_all();
  v->add_option("--pcr", v_pcr, "offline: the list's PCR (default: the first entry's)");
  v->add_option("--owner-list", v_owner_list,
                "offline: the owner's binary list; --list is then a namespace without a vTPM");
  v->add_flag("--json", as_json, "the report as one JSON object");
  v->callback([&] {
    Report rep;
    std::string err;
    std::string ca_pem;
    const bool online = !v_ns.empty();
    const bool offline = !v_list.empty();
    if (online == offline) {
      std::fprintf(stderr, "nsimactl: verify needs --ns ID (online) or --list FILE (offline)\n");
      return void(rc = 2);
    }
    if (!v_ca.empty()) {
      auto b = read_bytes(v_ca, &err);
      if (!b) {
        std::fprintf(stderr, "nsimactl: --ca: %s\n", err.c_str());
        return void(rc = 2);
      }
      ca_pem = as_text(*b);
    }
    if (online) {
      if (ca_pem.empty()) {
        std::fprintf(stderr, "nsimactl: verify --ns needs --ca FILE (nsimactl vtpm ca-cert)\n");
        return void(rc = 2);
      }
      auto row = ns_row(link, v_ns);
      if (!row) return void(rc = 1);
      rep.ns = row->value("id", v_ns);
      const std::string owner = row->value("owner", rep.ns);
      const int pcr = row->value("pcr", 10);
      if (owner == rep.ns) {
        verify_owner_online(rep, link, owner, pcr, ca_pem, v_save);
      } else {
        // Without a vTPM: its list first (the owner's copy can only be newer), then the owner.
        auto child_bytes = fetch_list(link, rep.ns);
        auto child = child_bytes ? parse_list(*child_bytes, &err) : std::nullopt;
        rep.notes.push_back("namespace " + rep.ns + " has no vTPM: its entries are attested "
                            "through the list and TPM of namespace " + owner);
        auto owner_list = verify_owner_online(rep, link, owner, pcr, ca_pem, v_save);
        if (!child)
          rep.add("owner-copy", false,
                  child_bytes ? err : "nsimad did not send the list of " + rep.ns);
        else if (!owner_list)
          rep.add("owner-copy", false, "the owner's list could not be checked");
        else
          check_owner_copy(rep, *child, *owner_list, owner);
      }
      rc = finish(rep, as_json);
      return;
    }
    // offline
    rep.ns = v_list;
    auto bytes = read_bytes(v_list, &err);
    auto list = bytes ? parse_list(*bytes, &err) : std::nullopt;
    if (!list) {
      rep.add("list-replay", false, err);
      rc = finish(rep, as_json);
      return;
    }
    count_violations(rep, *list);
    const ParsedList* replayed = &*list;
    std::optional<ParsedList> owner;
    if (!v_owner_list.empty()) {
      auto ob = read_bytes(v_owner_list, &err);
      owner = ob ? parse_list(*ob, &err) : std::nullopt;
      if (!owner) {
        rep.add("owner-copy", false, err);
      } else {
        check_owner_copy(rep, *list, *owner, v_owner_list);
        replayed = &*owner;
      }
    }
    int pcr = v_pcr >= 0 ? v_pcr
              : !replayed->records.empty() ? static_cast<int>(replayed->records[0].pcr)
                                           : 10;
    std::map<tpm::Bank, std::map<int, Bytes>> values;
    if (!v_quote.empty()) {
      if (v_identity.empty() || ca_pem.empty()) {
        std::fprintf(stderr, "nsimactl: verify --quote needs --identity DIR and --ca FILE\n");
        return void(rc = 2);
      }
      auto id = load_identity(v_identity, &err);
      if (!id) {
        rep.add("ek-cert", false, err);
        rc = finish(rep, as_json);
        return;
      }
      check_identity(rep, *id, ca_pem);
      // Activation needs the TPM: offline, the AK must be one an online verify bound.
      if (v_trusted_ak.empty()) {
        rep.add("ak-binding", false,
                "not checked: credential activation needs the vTPM (run nsimactl verify --ns ID "
                "online, or pass --trusted-ak with the ak.pub an online verify --save wrote)");
      } else if (auto t = read_bytes(v_trusted_ak, &err); !t) {
        rep.add("ak-binding", false, err);
      } else {
        const bool same = *t == id->ak_public;
        rep.add("ak-binding", same,
                same ? "the AK is the one an earlier online verify bound to the EK"
                     : "the AK is not the one an earlier online verify bound to the EK");
      }
      QuoteFiles qf;
      auto m = read_bytes(v_quote + "/quote.msg", &err);
      auto s = m ? read_bytes(v_quote + "/quote.sig", &err) : std::nullopt;
      auto p = s ? read_bytes(v_quote + "/quote.pcrs", &err) : std::nullopt;
      if (!p) {
        rep.add("quote-signature", false, err);
        rc = finish(rep, as_json);
        return;
      }
      qf.msg = std::move(*m);
      qf.sig = std::move(*s);
      qf.pcrs = std::move(*p);
      std::string nonce_hex = v_nonce;
      if (nonce_hex.empty()) {
        auto nb = read_bytes(v_quote + "/nonce.hex", &err);
        if (nb) nonce_hex = as_text(*nb);
        while (!nonce_hex.empty() && (nonce_hex.back() == '\n' || nonce_hex.back() == ' '))
          nonce_hex.pop_back();
        rep.notes.push_back("no --nonce: the quote's freshness rests on " + v_quote +
                            "/nonce.hex");
      }
      auto nonce = from_hex(nonce_hex);
      if (!nonce || nonce->empty()) {
        std::fprintf(stderr, "nsimactl: --nonce: not hex\n");
        return void(rc = 2);
      }
      values = check_quote(rep, qf, id->ak_public, *nonce);
      if (values.empty()) {
        rep.add("list-replay", false, "no quoted PCR value to replay against");
        rc = finish(rep, as_json);
        return;
      }
    } else if (!v_pcrs.empty()) {
      for (auto& bf : v_pcrs) {
        auto comma = bf.find(',');
        auto bank = comma == std::string::npos ? std::nullopt
                                               : tpm::bank_from_name(bf.substr(0, comma));
        if (!bank) {
          std::fprintf(stderr, "nsimactl: --pcrs %s: expected BANK,FILE (sha256,pcrs.txt)\n",
                       bf.c_str());
          return void(rc = 2);
        }
        auto f = read_pcr_file(bf.substr(comma + 1), &err);
        if (!f) {
          rep.add("list-replay", false, err);
          rc = finish(rep, as_json);
          return;
        }
        values[*bank] = std::move(*f);
      }
      rep.notes.push_back("PCR values from files are not signed: only the replay is checked");
    } else {
      std::fprintf(stderr, "nsimactl: verify --list needs --quote DIR or --pcrs BANK,FILE\n");
      return void(rc = 2);
    }
    check_replay(rep, *replayed, pcr, values);
    rc = finish(rep, as_json);
  });
}

}  // namespace nsima::cli
