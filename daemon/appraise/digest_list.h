// SPDX-License-Identifier: Apache-2.0
// Digest lists: trust by content, for images whose files carry no security.ima (unprivileged
// builds cannot set it; see README.md for overlayfs).
//
//   manifest   `sha256sum` output (sha384sum/sha512sum lengths too): "<hex>  name" or
//              "<hex> *name"; a line starting with '\' has its name escaped as coreutils writes
//              it (\\ \n \r). Optional detached signature FILE.sig made by
//              `openssl dgst -sha256 -sign key.pem -out FILE.sig FILE`, checked against a
//              namespace keyring (any key: RSA PKCS#1 v1.5 or ECDSA over sha256(FILE)).
//   store      per namespace: listed digests (each remembers whether a signed manifest listed
//              it) and revoked digests, persisted under `<state>/ns/<id>/digests/`, looked up in
//              O(log n) with no allocation (the pipeline asks per file).
//   generators manifest_from_rootfs (a container rootfs), manifest_from_dpkg (installed Debian
//              packages, md5sums checked first), manifest_from_rpm (rpm headers whose signature
//              verifies against an rpm keyring; rpm.cpp, librpm).
#pragma once

#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <utility>
#include <array>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "appraise/keyring.h"
#include "common/result.h"
#include "measure/hash_algo.h"

namespace nsima::appraise {

struct ManifestEntry {
  measure::Digest digest;
  std::string path;     // unescaped, as written (the container's view for generated manifests)
  bool binary = false;  // the '*' marker
};

struct Manifest {
  std::vector<ManifestEntry> entries;
};

// Parses sha256sum/sha384sum/sha512sum output. Errors are EINVAL with where = "FILE:LINE" and a
// message naming what is wrong. Blank lines are skipped; anything else that is not an entry
// (BSD --tag lines, comments, other digest lengths, bad escapes) is an error.
Result<Manifest> parse_manifest(std::string_view text, std::string_view filename);
// The same text sha256sum would print: "<hex>  name\n" (or " *name"), escaped names prefixed '\'.
std::string format_manifest(const Manifest& m);

// Checks `signature` (raw PKCS#1 v1.5 or DER ECDSA, as openssl dgst -sha256 -sign writes it) over
// sha256(data) against every key of the ring. EKEYREJECTED when none verifies.
Result<KeyInfo> verify_manifest_signature(std::span<const uint8_t> data,
                                          std::span<const uint8_t> signature,
                                          const Keyring& keys);

enum class SignaturePolicy {
  kIfPresent,  // FILE.sig is checked when it exists (and must then verify); else unsigned
  kRequired,   // FILE.sig must exist and verify
  kIgnore,     // never look at FILE.sig: the manifest counts as unsigned
};

struct LoadedManifest {
  Manifest manifest;
  bool is_signed = false;
  std::optional<KeyInfo> signer;
};

// Reads FILE (and FILE.sig per `policy`). A signature that exists but does not verify is an
// error, never a silent fallback to "unsigned".
Result<LoadedManifest> load_manifest(const std::filesystem::path& file, const Keyring* keys,
                                     SignaturePolicy policy = SignaturePolicy::kIfPresent);

// ------------------------------------------------------------------ store

struct DigestLookup {
  bool listed = false;         // in some loaded manifest
  bool signed_listed = false;  // in some manifest whose signature verified
  bool revoked = false;
  std::optional<measure::Digest> digest;  // the digest that matched (listed or revoked)
};

// A set of digests of mixed algorithms, each with a flag byte; sorted flat arrays per algorithm,
// binary search, no allocation on lookup.
class DigestSet {
 public:
  // Returns the previous flags (0 = not present) and ORs `flags` in.
  uint8_t insert(const measure::Digest& d, uint8_t flags);
  // Many at once (a manifest): one sort and merge per algorithm instead of n inserts.
  void insert_batch(std::span<const std::pair<measure::Digest, uint8_t>> items);
  bool erase(const measure::Digest& d);
  uint8_t flags(const measure::Digest& d) const;  // 0 = absent
  size_t size() const;
  template <class Fn>
  void for_each(Fn&& fn) const;  // fn(const Digest&, uint8_t flags), sorted per algorithm

 private:
  struct Table {
    std::vector<uint8_t> bytes;  // size() * digest_size, sorted
    std::vector<uint8_t> flags;
  };
  std::array<Table, measure::kHashAlgoCount> tables_;
};

class DigestStore {
 public:
  static constexpr uint8_t kListed = 1, kSigned = 2;

  // Loads (or starts, if absent) the store kept in `dir`: `listed` and `revoked` text files,
  // each replaced atomically on change. A corrupt file fails naming FILE:LINE.
  static Result<DigestStore> open(const std::filesystem::path& dir);
  // A store that is never written to disk (tests, `policy explain`-style dry runs).
  static DigestStore in_memory();

  struct AddOutcome {
    size_t added = 0;     // new digests
    size_t upgraded = 0;  // already listed unsigned, now also from a signed manifest
    size_t already = 0;   // nothing changed
  };
  Result<AddOutcome> add(const Manifest& m, bool from_signed_manifest);
  Result<AddOutcome> add(const LoadedManifest& m) { return add(m.manifest, m.is_signed); }
  // Revoking is independent of listing: a revoked digest fails appraisal whatever lists or signs
  // it. Return false when nothing changed.
  Result<bool> revoke(const measure::Digest& d);
  Result<bool> unrevoke(const measure::Digest& d);

  DigestLookup lookup(const measure::Digest& d) const;
  // Any of the file's digests: revoked if one is revoked; listed/signed if one is.
  DigestLookup lookup(std::span<const measure::Digest> digests) const;

  size_t listed_count() const { return listed_.size(); }
  // fn(const Digest&, uint8_t flags: kListed | kSigned) for every listed digest.
  template <class Fn>
  void for_each_listed(Fn&& fn) const {
    listed_.for_each(std::forward<Fn>(fn));
  }
  size_t signed_count() const;
  size_t revoked_count() const { return revoked_.size(); }
  std::vector<measure::Digest> revoked() const;
  const std::filesystem::path& dir() const { return dir_; }

 private:
  DigestStore() = default;
  Result<void> persist_listed() const;
  Result<void> persist_revoked() const;
  std::filesystem::path dir_;  // empty: in memory
  DigestSet listed_, revoked_;
};

// `<state>/ns/<id>/digests`.
std::filesystem::path namespace_digests_dir(const std::filesystem::path& state_dir, uint64_t ns_id);

// ------------------------------------------------------------------ generators

struct ManifestProblem {
  std::string where;  // path (or package, or FILE:LINE)
  std::string what;   // "md5 mismatch (md5sums says ..., file has ...)", "missing", ...
};

struct GeneratedManifest {
  Manifest manifest;                      // sorted by path, sha256
  std::vector<ManifestProblem> problems;  // files that could not be trusted, each named
  size_t sources = 0;                     // packages read (dpkg, rpm) or files seen (rootfs)
  bool ok() const { return problems.empty(); }
};

struct RootfsOptions {
  bool one_file_system = true;  // do not descend into other mounts (a live /proc, /sys, ...)
};
// Every regular file under `dir`, named as the container sees it ("/usr/bin/x"), sorted by
// path, sha256. Symlinks are never followed (files and directories are opened O_NOFOLLOW
// relative to their parent's fd), so nothing outside `dir` is read.
Result<GeneratedManifest> manifest_from_rootfs(const std::filesystem::path& dir,
                                               const RootfsOptions& options = {});

// For every `<root>/var/lib/dpkg/info/*.md5sums`: each listed file is opened inside `root`
// (openat2 RESOLVE_IN_ROOT, final component not followed), hashed once with md5 and sha256, and
// its sha256 is emitted only when its md5 equals the md5sums line. Mismatches, missing files and
// malformed lines are problems; md5 alone is never trusted.
Result<GeneratedManifest> manifest_from_dpkg(const std::filesystem::path& root);

// One package's header as rpm_read_header() read it: its regular, non-ghost files' sha256
// digests (paths as the package names them), and the files it could not take (where = the path).
struct RpmFiles {
  std::vector<ManifestEntry> entries;
  std::vector<ManifestProblem> problems;
};
// The files, or why the package gives none ("refused: unsigned package", "file digests are
// sha512 ...", "not read: parser-crashed: ..."): a problem naming the package.
using RpmHeaderResult = tl::expected<RpmFiles, std::string>;
// Reads one package's bytes against the trusted keys (OpenPGP public key packets).
using RpmReader = std::function<RpmHeaderResult(std::span<const std::vector<uint8_t>> keys,
                                                std::span<const uint8_t> package)>;

struct RpmOptions {
  // The rpm database that holds the trusted keys (`rpmkeys --dbpath DIR --import KEY.asc`).
  std::filesystem::path dbpath;
  // Who parses the package bytes: nsimactl sets the confined worker (confine::rpm_reader);
  // unset, rpm_read_header() runs in this process (benchmarks, the worker's own reference).
  RpmReader read;
};
// The first bytes of a package file that are read and handed to the reader: its lead,
// signature header and header must fit in them (the payload is never needed).
inline constexpr size_t kRpmReadMax = 56u << 20;

// For each package file: the header is read with librpm, and its signature must verify against a
// key of `dbpath` (unsigned, unknown key, untrusted or bad signature: a problem, no entries).
// Entries come from RPMTAG_FILEDIGESTS for regular, non-ghost files when RPMTAG_FILEDIGESTALGO
// is sha256; any other algorithm (md5 for rpm < 4.6 packages, sha1, sha512) is a problem naming
// it, because those digests cannot be turned into sha256 without the files.
Result<GeneratedManifest> manifest_from_rpm(std::span<const std::filesystem::path> packages,
                                            const RpmOptions& options);

// The trusted side's part: the OpenPGP public key packets of the gpg-pubkey headers in the rpm
// database `dbpath` (root's own, trusted; read with librpm in process).
Result<std::vector<std::vector<uint8_t>>> rpm_trusted_keys(const std::filesystem::path& dbpath);
// The untrusted part: librpm reads the package from memory (a memfd), no config files, no rpm
// database: a keyring of `keys` only; rpmReadPackageFile checks the header signature and
// digests. Runs in nsima-parse (confine/README.md) after rpm_prepare_confined().
RpmHeaderResult rpm_read_header(std::span<const std::vector<uint8_t>> keys,
                                std::span<const uint8_t> package);
// librpm's and libgcrypt's initialisation that opens files, and rpmlog silenced (nothing may
// reach a descriptor but the worker's socket): before the sandbox is installed.
void rpm_prepare_confined();

// ------------------------------------------------------------------ inline

template <class Fn>
void DigestSet::for_each(Fn&& fn) const {
  for (size_t a = 0; a < tables_.size(); ++a) {
    const auto algo = static_cast<measure::HashAlgo>(a);
    const size_t size = measure::hash_digest_size(algo);
    const Table& t = tables_[a];
    for (size_t i = 0; i < t.flags.size(); ++i) {
      auto d = measure::Digest::from_bytes(algo, {t.bytes.data() + i * size, size});
      if (d) fn(*d, t.flags[i]);
    }
  }
}

}  // namespace nsima::appraise
