// SPDX-License-Identifier: Apache-2.0
// --log-format json: every line is one JSON object whose "msg" is the message, escaped.
#include "common/log.h"

#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>

namespace nsima {
namespace {

TEST(LogFormat, JsonLinesParseBack) {
  ASSERT_FALSE(set_log_format("xml"));
  ASSERT_TRUE(set_log_format("json"));
  testing::internal::CaptureStderr();
  logger("logtest")->warn("a \"quoted\" path\\with\ttab and {}", "\x01newline\n");
  std::string out = testing::internal::GetCapturedStderr();
  ASSERT_TRUE(set_log_format("text"));
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out.back(), '\n');
  std::istringstream lines(out);
  std::string line;
  int n = 0;
  while (std::getline(lines, line)) {
    ++n;
    auto j = nlohmann::json::parse(line, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << line;
    EXPECT_EQ(j["level"], "warning");
    EXPECT_EQ(j["logger"], "logtest");
    EXPECT_EQ(j["msg"], "a \"quoted\" path\\with\ttab and \x01newline\n");
    // RFC 3339 with milliseconds and the UTC offset: 2026-12-01T12:00:00.000+00:00
    EXPECT_TRUE(std::regex_match(j["time"].get<std::string>(),
                                 std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}[+-]\d\d:\d\d)")))
        << j["time"];
  }
  EXPECT_EQ(n, 1) << out;
}

}  // namespace
}  // namespace nsima
