// SPDX-License-Identifier: Apache-2.0
// Small state files (namespace configs, the id mark, operator overrides) are replaced whole:
// written to PATH.tmp, fsync'ed, renamed over PATH. A crash leaves the old or the new file,
// never half of one.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>

#include "common/result.h"

namespace nsima {

Result<void> write_file_atomic(const std::string& path, std::string_view body, mode_t mode = 0600);

}  // namespace nsima
