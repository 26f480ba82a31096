// SPDX-License-Identifier: Apache-2.0
// Expected failures as values: Result<T> = tl::expected<T, Error>. An Error names the place
// (policy file:line:column, a path, a TPM command) so that the message alone tells what to fix.
#pragma once

#include <string>
#include <utility>

#include <tl/expected.hpp>

namespace nsima {

struct Error {
  int code = 0;         // errno-style code when there is one (EINVAL for bad input), else 0
  std::string message;  // what went wrong, one sentence
  std::string where;    // place: "file:line:col", a path, "Esys_PCR_Extend", ...

  std::string to_string() const { return where.empty() ? message : where + ": " + message; }
};

template <class T>
using Result = tl::expected<T, Error>;

inline tl::unexpected<Error> make_error(int code, std::string message, std::string where = {}) {
  return tl::unexpected<Error>(Error{code, std::move(message), std::move(where)});
}

}  // namespace nsima
