// SPDX-License-Identifier: Apache-2.0
// manifest_from_rpm(): rpm package headers through librpm (Debian's librpm-dev, rpm 4.18).
//
// Each package is read with rpmReadPackageFile() on a transaction set whose rpm database is
// RpmOptions::dbpath (where `rpmkeys --dbpath DIR --import` put the trusted OpenPGP keys) and
// whose verify level is RPMSIG_SIGNATURE_TYPE, so librpm itself refuses a package without a
// valid signature (and, because rpm 4.18 does not enforce that level in rpmReadPackageFile, a
// package without a header signature tag is refused here); anything but RPMRC_OK (NOKEY: signed
// by a key not in the database, NOTTRUSTED, FAIL: bad signature or header digest, NOTFOUND: not
// an rpm) is a problem and gives no entries. Only the header is read: its signature covers the
// file digests taken from it, whatever the payload holds (a corrupted payload changes nothing
// that is trusted). librpm keeps global state (macros, config), so calls are serialised.
#include <fcntl.h>
#include <rpm/header.h>
#include <rpm/rpmfiles.h>
#include <rpm/rpmio.h>
#include <rpm/rpmlib.h>
#include <rpm/rpmlog.h>
#include <rpm/rpmmacro.h>
#include <rpm/rpmpgp.h>
#include <rpm/rpmts.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <memory>
#include <mutex>

#include "appraise/digest_list.h"

namespace nsima::appraise {

using measure::Digest;
using measure::HashAlgo;

namespace {

struct TsDeleter {
  void operator()(rpmts ts) const noexcept { rpmtsFree(ts); }
};
struct HeaderDeleter {
  void operator()(Header h) const noexcept { headerFree(h); }
};
struct FdDeleter {
  void operator()(FD_t fd) const noexcept { Fclose(fd); }
};
struct FilesDeleter {
  void operator()(rpmfiles f) const noexcept { rpmfilesFree(f); }
};
using TsPtr = std::unique_ptr<std::remove_pointer_t<rpmts>, TsDeleter>;
using HeaderPtr = std::unique_ptr<std::remove_pointer_t<Header>, HeaderDeleter>;
using FdPtr = std::unique_ptr<std::remove_pointer_t<FD_t>, FdDeleter>;
using FilesPtr = std::unique_ptr<std::remove_pointer_t<rpmfiles>, FilesDeleter>;

std::mutex& rpm_mutex() {
  static std::mutex m;
  return m;
}

std::string_view pgp_hash_name(int algo) {
  switch (algo) {
    case PGPHASHALGO_MD5: return "md5";
    case PGPHASHALGO_SHA1: return "sha1";
    case PGPHASHALGO_SHA224: return "sha224";
    case PGPHASHALGO_SHA256: return "sha256";
    case PGPHASHALGO_SHA384: return "sha384";
    case PGPHASHALGO_SHA512: return "sha512";
    default: return "unknown";
  }
}

std::string_view rc_meaning(rpmRC rc) {
  switch (rc) {
    case RPMRC_NOTFOUND: return "not an rpm package";
    case RPMRC_FAIL: return "signature or digest check failed (unsigned, tampered or bad signature)";
    case RPMRC_NOTTRUSTED: return "signed by a key that is not trusted";
    case RPMRC_NOKEY: return "signed by a key that is not in the rpm keyring";
    default: return "unexpected result";
  }
}

// Keeps the `_dbpath` macro for the lifetime of one call.
class MacroScope {
 public:
  MacroScope(const char* name, const std::string& value) : name_(name) {
    rpmPushMacro(nullptr, name_, nullptr, value.c_str(), RMIL_GLOBAL);
  }
  ~MacroScope() { rpmPopMacro(nullptr, name_); }
  MacroScope(const MacroScope&) = delete;
  MacroScope& operator=(const MacroScope&) = delete;

 private:
  const char* name_;
};

}  // namespace

Result<GeneratedManifest> manifest_from_rpm(std::span<const std::filesystem::path> packages,
                                            const RpmOptions& options) {
  if (options.dbpath.empty())
    return make_error(EINVAL, "an rpm database holding the trusted keys is required (dbpath)");
  std::error_code ec;
  if (!std::filesystem::is_directory(options.dbpath, ec))
    return make_error(ENOENT, "rpm database directory does not exist", options.dbpath.string());

  std::lock_guard lock(rpm_mutex());
  static const int config = [] {
    rpmlogSetMask(RPMLOG_UPTO(RPMLOG_CRIT));  // results are reported as values, not on stderr
    return rpmReadConfigFiles(nullptr, nullptr);
  }();
  if (config != 0) return make_error(EIO, "rpmReadConfigFiles failed");

  MacroScope dbpath("_dbpath", std::filesystem::absolute(options.dbpath).string());
  TsPtr ts(rpmtsCreate());
  if (!ts) return make_error(ENOMEM, "rpmtsCreate failed");
  rpmtsSetRootDir(ts.get(), "/");
  rpmtsSetVSFlags(ts.get(), RPMVSF_DEFAULT);
  rpmtsSetVfyLevel(ts.get(), RPMSIG_SIGNATURE_TYPE | RPMSIG_DIGEST_TYPE);

  GeneratedManifest out;
  for (const auto& pkg : packages) {
    ++out.sources;
    const std::string name = pkg.string();
    FdPtr fd(Fopen(name.c_str(), "r.ufdio"));
    if (!fd || Ferror(fd.get())) {
      out.problems.push_back({name, std::string("cannot open: ") + (fd ? Fstrerror(fd.get()) : "Fopen failed")});
      continue;
    }
    Header raw = nullptr;
    const rpmRC rc = rpmReadPackageFile(ts.get(), fd.get(), name.c_str(), &raw);
    HeaderPtr h(raw);
    if (rc != RPMRC_OK) {
      out.problems.push_back({name, "refused: " + std::string(rc_meaning(rc))});
      continue;
    }
    if (!h) {
      out.problems.push_back({name, "refused: no header"});
      continue;
    }
    // librpm 4.18 returns RPMRC_OK for a package that carries no signature at all (the verify
    // level is not enforced by rpmReadPackageFile), so require one: a present signature was
    // verified above (a missing key is NOKEY, a bad one FAIL).
    if (!headerIsEntry(h.get(), RPMTAG_RSAHEADER) && !headerIsEntry(h.get(), RPMTAG_DSAHEADER) &&
        !headerIsEntry(h.get(), RPMTAG_SIGPGP) && !headerIsEntry(h.get(), RPMTAG_SIGGPG)) {
      out.problems.push_back({name, "refused: unsigned package"});
      continue;
    }
    FilesPtr files(rpmfilesNew(nullptr, h.get(), RPMTAG_BASENAMES, RPMFI_FLAGS_QUERY));
    const int count = files ? static_cast<int>(rpmfilesFC(files.get())) : 0;
    if (count == 0) continue;  // a package without files lists nothing
    const int algo = rpmfilesDigestAlgo(files.get());
    if (algo != PGPHASHALGO_SHA256) {
      out.problems.push_back(
          {name, "file digests are " + std::string(pgp_hash_name(algo)) +
                     " (RPMTAG_FILEDIGESTALGO " + std::to_string(algo) +
                     "), not sha256: no entries; install the package and use from-rootfs"});
      continue;
    }
    for (int i = 0; i < count; ++i) {
      if (!S_ISREG(rpmfilesFMode(files.get(), i))) continue;
      if (rpmfilesFFlags(files.get(), i) & RPMFILE_GHOST) continue;  // not in the payload
      int falgo = 0;
      size_t len = 0;
      const unsigned char* d = rpmfilesFDigest(files.get(), i, &falgo, &len);
      char* fn = rpmfilesFN(files.get(), i);
      std::string path = fn ? fn : "";
      free(fn);
      if (!d || falgo != PGPHASHALGO_SHA256) {
        out.problems.push_back({name + ":" + path, "regular file without a sha256 digest"});
        continue;
      }
      auto digest = Digest::from_bytes(HashAlgo::kSha256, {d, len});
      if (!digest) {
        out.problems.push_back({name + ":" + path, digest.error().message});
        continue;
      }
      out.manifest.entries.push_back({*digest, std::move(path), false});
    }
  }
  std::sort(out.manifest.entries.begin(), out.manifest.entries.end(),
            [](const ManifestEntry& a, const ManifestEntry& b) { return a.path < b.path; });
  return out;
}

}  // namespace nsima::appraise
