// SPDX-License-Identifier: Apache-2.0
// The few /proc facts the root cache checks a process by: its start time (field 22 of
// /proc/PID/stat, clock ticks since boot; Event::start_boottime_ns is the same value in ns) and
// its mount namespace inode.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/result.h"

namespace nsima::access {

// Field 22 (starttime) of a /proc/PID/stat line. The comm field (2) may hold spaces and ')', so
// fields are counted after the last ')'. nullopt when the line is malformed.
std::optional<uint64_t> parse_stat_start_ticks(std::string_view stat);

// What /proc/PID/stat shows for a process that started at `boottime_ns` (the kernel's
// nsec_to_clock_t: floor division by NSEC_PER_SEC / USER_HZ).
uint64_t boottime_ns_to_ticks(uint64_t boottime_ns);

// `dir` is "/proc/PID" or "/proc/PID/task/TID".
Result<uint64_t> read_start_ticks(const std::string& dir);
Result<uint64_t> read_mnt_ns_inode(const std::string& dir);

}  // namespace nsima::access
