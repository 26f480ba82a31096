// SPDX-License-Identifier: Apache-2.0
// Helpers shared by the measure unit tests: a temporary directory that removes itself, running a
// real tool (evmctl, openssl, sha256sum) and capturing its combined output, file I/O, and an
// independent little-endian byte builder so expected list bytes are not produced by the code under
// test. A missing tool is a test failure, never a skip.
#pragma once

#include <fcntl.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace nsima::measure::testing {

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "nsima-measure-XXXXXX").string();
    char* p = ::mkdtemp(tmpl.data());
    if (p == nullptr) ADD_FAILURE() << "mkdtemp failed";
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(std::string_view name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

struct CommandResult {
  int rc = -1;
  std::string output;  // stdout and stderr together (evmctl logs to stderr)
};

inline CommandResult run(const std::string& cmd) {
  CommandResult r;
  FILE* f = ::popen(("(" + cmd + ") 2>&1").c_str(), "r");
  if (!f) return r;
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) r.output.append(buf, n);
  int status = ::pclose(f);
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

inline bool have_tool(const std::string& name) { return run("command -v " + name).rc == 0; }

inline void write_file(const std::filesystem::path& p, std::string_view content) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
}

inline std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline std::vector<uint8_t> bytes_of(std::string_view s) { return {s.begin(), s.end()}; }

inline std::vector<uint8_t> unhex(std::string_view hex) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2)
    out.push_back(static_cast<uint8_t>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  return out;
}

// Independent builder for expected bytes (written from ima-facts §2.2/2.5, not from the library).
class Bytes {
 public:
  Bytes& u32(uint32_t v) {
    for (int i = 0; i < 4; ++i) b_.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
    return *this;
  }
  Bytes& str(std::string_view s) {
    b_.append(s);
    return *this;
  }
  Bytes& raw(const std::vector<uint8_t>& v) {
    b_.append(v.begin(), v.end());
    return *this;
  }
  Bytes& zeros(size_t n) {
    b_.append(n, '\0');
    return *this;
  }
  Bytes& field(const std::string& s) {  // [u32 len][bytes]
    u32(static_cast<uint32_t>(s.size()));
    return str(s);
  }
  const std::string& str() const { return b_; }
  std::vector<uint8_t> vec() const { return {b_.begin(), b_.end()}; }
  size_t size() const { return b_.size(); }

 private:
  std::string b_;
};

inline std::string to_s(const std::vector<uint8_t>& v) { return {v.begin(), v.end()}; }

}  // namespace nsima::measure::testing
