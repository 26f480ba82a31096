// SPDX-License-Identifier: Apache-2.0
// Bank names and sizes, violation digests, and writing a quote as the files tpm2_checkquote reads.
#include "tpm/tpm.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstring>

#include "common/hex.h"
#include "common/unique_fd.h"

namespace nsima::tpm {

namespace {

struct BankInfo {
  Bank bank;
  std::string_view name;
  size_t size;
  bool supported;  // tpm2-tss 3.2's TPMU_HA can carry it
};

// Sizes from the TCG Algorithm Registry; names as tpm2-tools prints them.
constexpr BankInfo kBanks[] = {
    {Bank::kSha1, "sha1", 20, true},          {Bank::kSha256, "sha256", 32, true},
    {Bank::kSha384, "sha384", 48, true},      {Bank::kSha512, "sha512", 64, true},
    {Bank::kSm3_256, "sm3_256", 32, true},    {Bank::kSha3_256, "sha3_256", 32, false},
    {Bank::kSha3_384, "sha3_384", 48, false}, {Bank::kSha3_512, "sha3_512", 64, false},
};

const BankInfo* find(Bank bank) {
  for (const auto& b : kBanks) {
    if (b.bank == bank) return &b;
  }
  return nullptr;
}

// Writes bytes to dir/name through a temporary file + rename.
Result<void> write_file(const std::filesystem::path& dir, std::string_view name, const void* data,
                        size_t len) {
  const std::filesystem::path final_path = dir / name;
  const std::filesystem::path tmp_path = dir / (std::string(".") + std::string(name) + ".tmp");
  UniqueFd fd(::open(tmp_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!fd) return make_error(errno, std::string("open: ") + std::strerror(errno), tmp_path);
  const auto* p = static_cast<const uint8_t*>(data);
  size_t left = len;
  while (left > 0) {
    ssize_t n = ::write(fd.get(), p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      int err = errno;
      ::unlink(tmp_path.c_str());
      return make_error(err, std::string("write: ") + std::strerror(err), tmp_path);
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  if (::close(fd.release()) != 0) {
    int err = errno;
    ::unlink(tmp_path.c_str());
    return make_error(err, std::string("close: ") + std::strerror(err), tmp_path);
  }
  if (::rename(tmp_path.c_str(), final_path.c_str()) != 0) {
    int err = errno;
    ::unlink(tmp_path.c_str());
    return make_error(err, std::string("rename: ") + std::strerror(err), final_path);
  }
  return {};
}

}  // namespace

std::string bank_name(Bank bank) {
  if (const BankInfo* b = find(bank)) return std::string(b->name);
  char buf[16];
  std::snprintf(buf, sizeof(buf), "alg_0x%04x", static_cast<unsigned>(bank));
  return buf;
}

std::optional<Bank> bank_from_name(std::string_view name) {
  std::string lower(name);
  std::transform(lower.begin(), lower.end(), lower.begin(),
                 [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
  for (const auto& b : kBanks) {
    if (b.name == lower) return b.bank;
  }
  return std::nullopt;
}

size_t bank_digest_size(Bank bank) {
  const BankInfo* b = find(bank);
  return b ? b->size : 0;
}

bool bank_supported(Bank bank) {
  const BankInfo* b = find(bank);
  return b && b->supported;
}

Result<std::vector<BankDigest>> violation_digests(const std::vector<Bank>& banks) {
  std::vector<BankDigest> out;
  out.reserve(banks.size());
  for (Bank bank : banks) {
    size_t size = bank_digest_size(bank);
    if (size == 0) {
      return make_error(EINVAL, "no digest size known for PCR bank " + bank_name(bank),
                        "violation_digests");
    }
    out.push_back({bank, std::vector<uint8_t>(size, 0xff)});
  }
  return out;
}

Result<void> write_quote_files(const Quote& quote, const std::filesystem::path& dir) {
  std::error_code ec;
  std::filesystem::create_directories(dir, ec);
  if (ec) return make_error(ec.value(), "create_directories: " + ec.message(), dir);
  if (quote.message.empty() || quote.signature.empty() || quote.pcrs.empty() ||
      quote.ak_public_pem.empty()) {
    return make_error(EINVAL, "incomplete quote (message, signature, pcrs and AK are required)",
                      dir);
  }
  if (auto r = write_file(dir, kQuoteMessageFile, quote.message.data(), quote.message.size()); !r)
    return r;
  if (auto r = write_file(dir, kQuoteSignatureFile, quote.signature.data(), quote.signature.size());
      !r)
    return r;
  if (auto r = write_file(dir, kQuotePcrsFile, quote.pcrs.data(), quote.pcrs.size()); !r) return r;
  if (auto r =
          write_file(dir, kQuoteAkPemFile, quote.ak_public_pem.data(), quote.ak_public_pem.size());
      !r)
    return r;
  const std::string nonce_hex = to_hex(quote.nonce) + "\n";
  return write_file(dir, kQuoteNonceFile, nonce_hex.data(), nonce_hex.size());
}

}  // namespace nsima::tpm
