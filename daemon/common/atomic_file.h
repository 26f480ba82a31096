// SPDX-License-Identifier: Apache-2.0
// Small state files (namespace configs, the id mark, operator overrides) are replaced whole:
// written to PATH.tmp, fsync'ed, renamed over PATH. A crash leaves the old or the new file,
// never half of one.
#pragma once

#include <sys/types.h>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/result.h"

namespace nsima {

Result<void> write_file_atomic(const std::string& path, std::string_view body, mode_t mode = 0600);

// A directory of files made whole: written under DIR.<tmp_tag>, then renamed over DIR (an
// existing DIR is replaced). A reader never sees half of it. Used for archives.
using NamedFile = std::pair<std::string, std::string>;  // file name, content
Result<void> write_dir_atomic(const std::string& dir, const std::vector<NamedFile>& files,
                              const std::string& tmp_tag);

}  // namespace nsima
