// SPDX-License-Identifier: Apache-2.0
// Logging: one named spdlog logger per component (capture, ns, policy, measure, appraise, tpm,
// control, libbpf). Log once where an error is handled; never per event on the hot path.
#pragma once

#include <spdlog/spdlog.h>

#include <memory>
#include <string>

namespace nsima {

// Sets the level of every nsima logger ("trace", "debug", "info", "warn", "error", "off").
// Returns false for an unknown level name.
bool set_log_level(const std::string& level);

// "text" (default) or "json": one JSON object per line {"time","level","logger","msg"}.
// Returns false for another name.
bool set_log_format(const std::string& format);

// The logger of a component, created on first use (stderr sink).
std::shared_ptr<spdlog::logger> logger(const std::string& component);

}  // namespace nsima
