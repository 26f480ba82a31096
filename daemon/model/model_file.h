// SPDX-License-Identifier: Apache-2.0
// Model files (docs/model-encoding.md "Model file"): a line-based text format holding a
// model's base, aggregate and known coefficients in trajectory order, optionally signed by a
// namespace key with the signature openssl dgst -sign makes. Every refusal names FILE:LINE.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "appraise/keyring.h"
#include "common/result.h"
#include "measure/hash_algo.h"
#include "model/model.h"

namespace nsima::model {

inline constexpr std::string_view kModelMagic = "nsima-model 1";
inline constexpr size_t kMaxDescription = 1024;

struct FilePoint {
  Digest coefficient{};
  EventType event = EventType::kFileOpen;
  std::string description;
};

struct ModelSignature {
  measure::HashAlgo algo = measure::HashAlgo::kSha256;
  std::vector<uint8_t> signature;
  size_t signed_size = 0;  // the signature covers text[0, signed_size)
  size_t line = 0;
};

struct ModelFile {
  Digest base{};
  Digest aggregate{};
  std::vector<FilePoint> points;
  // `exec <sha256>` lines: the contents the model's execs ran (Model::executables).
  std::vector<Digest> executables;
  std::optional<ModelSignature> signature;
};

// Parses without checking the signature. `source` names the file in errors ("m.model:7").
Result<ModelFile> parse_model(std::string_view text, std::string_view source);
// Parses and checks the signature against `keys`: a signed file must verify with one of them;
// an unsigned file is refused (EKEYREJECTED-style EPERM) when `keys` is not empty.
Result<ModelFile> load_model(std::string_view text, std::string_view source,
                             const appraise::Keyring& keys);
Result<ModelFile> read_model_file(const std::filesystem::path& path,
                                  const appraise::Keyring& keys);

// A model with `file`'s points, known, in file order, in `mode`.
Result<Model> model_from_file(const ModelFile& file, Mode mode);

// The file text of `model`'s known points (forensic points are not part of a model).
std::string serialize_model(const Model& model);
// `text` (unsigned) with a sig line appended: a detached signature over it by the private key
// in `key_pem` (PEM, RSA or EC).
Result<std::string> sign_model(std::string_view text, const std::filesystem::path& key_pem,
                               measure::HashAlgo algo = measure::HashAlgo::kSha256);
Result<void> write_model_file(const std::filesystem::path& path, std::string_view text);

// What `nsimactl model state --offline FILE` prints: the state and the measurement of the
// file's points (with the file's aggregate, or `aggregate` instead).
struct OfflineValues {
  Digest state{};
  Digest measurement{};
  size_t points = 0;
};
OfflineValues offline_values(const ModelFile& file,
                             const std::optional<Digest>& aggregate = std::nullopt);

}  // namespace nsima::model
