// SPDX-License-Identifier: Apache-2.0
// nsimactl's verifier: `nsimactl verify` (online through nsimad, or offline over files) and the
// `nsimactl vtpm` commands (ca-cert, identity, activate). What is checked, by kind:
//   ek-cert         the EK certificate chains to the CA the verifier holds, for the TPM's EK
//   ak-attributes   the AK is a restricted signing key fixed to its TPM
//   ak-binding      the AK is in the TPM of that EK: TPM2_MakeCredential here, with the EK's
//                   public key and the AK's name, TPM2_ActivateCredential in the vTPM (online),
//                   or the AK is one an earlier online verify bound (--trusted-ak, offline)
//   quote-signature the quote is a TPM quote signed by that AK
//   nonce           its qualifying data is the verifier's nonce
//   pcr-digest      the PCR values handed over are those the quote's PCR digest signs
//   list-replay     the measurement list replays to the quoted (or given) PCR value
//   owner-copy      a namespace without a vTPM: every entry of its list after the first is in its
//                   owner's list, in order, byte for byte
// No check is skipped silently: one that cannot be made is a failure naming why.
#pragma once

#include <CLI/CLI.hpp>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>

namespace nsima::cli {

// How the verifier reaches nsimad (nsimactl's request() and its list stream).
struct DaemonLink {
  std::function<std::optional<nlohmann::json>(const nlohmann::json&)> request;
  // Streams a `log --format binary` (or any streamed request) into `sink`; 0 on success.
  std::function<int(const nlohmann::json&, const std::function<bool(const std::string&)>&)> stream;
};

// Adds `verify` and `vtpm {ca-cert,identity,activate}` to nsimactl. `rc`: nsimactl's exit code;
// `json`: its --json flag (shared by every subcommand).
// `link` must outlive app.parse(): the subcommands' callbacks refer to it.
void add_attest_commands(CLI::App& app, const DaemonLink& link, int& rc, bool& json);

}  // namespace nsima::cli
