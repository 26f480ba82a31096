// SPDX-License-Identifier: Apache-2.0
// Helpers for the appraise tests. Every key, certificate and signature is made at test time by
// openssl or evmctl (validators.md §1.2-§1.3), never by nsima code; a missing tool fails the test.
// Keys are TEST-ONLY and live in a temporary directory removed at exit.
#pragma once

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

namespace nsima::appraise::testing {

namespace fs = std::filesystem;

class TempDir {
 public:
  TempDir() {
    std::string tmpl = (fs::temp_directory_path() / "nsima-appraise-XXXXXX").string();
    if (::mkdtemp(tmpl.data()) == nullptr) ADD_FAILURE() << "mkdtemp failed";
    path_ = tmpl;
  }
  ~TempDir() {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }
  fs::path operator/(std::string_view name) const { return path_ / name; }

 private:
  fs::path path_;
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

// Runs `cmd`; a failure is a test failure that shows the command and its output.
inline std::string must(const std::string& cmd) {
  CommandResult r = run(cmd);
  EXPECT_EQ(r.rc, 0) << cmd << "\n" << r.output;
  return r.output;
}

inline void write_file(const fs::path& p, std::string_view content) {
  std::ofstream out(p, std::ios::binary | std::ios::trunc);
  out.write(content.data(), static_cast<std::streamsize>(content.size()));
}

inline std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::ostringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline std::vector<uint8_t> read_bytes(const fs::path& p) {
  std::string s = read_file(p);
  return {s.begin(), s.end()};
}

inline std::vector<uint8_t> unhex(std::string_view hex) {
  std::vector<uint8_t> out;
  for (size_t i = 0; i + 1 < hex.size(); i += 2)
    out.push_back(static_cast<uint8_t>(std::stoi(std::string(hex.substr(i, 2)), nullptr, 16)));
  return out;
}

inline std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ' || s.back() == '\r')) s.pop_back();
  return s;
}

// security.ima of a file as raw bytes (empty if none).
inline std::vector<uint8_t> get_ima_xattr(const fs::path& p) {
  std::vector<uint8_t> buf(70000);
  ssize_t n = ::getxattr(p.c_str(), "security.ima", buf.data(), buf.size());
  if (n < 0) return {};
  buf.resize(static_cast<size_t>(n));
  return buf;
}

// The x509 config of validators.md §1.2, with the subjectKeyIdentifier line replaceable.
inline std::string x509_cnf(const std::string& cn, const std::string& skid = "hash") {
  std::string s =
      "[ req ]\ndistinguished_name = dn\nprompt = no\nstring_mask = utf8only\n"
      "x509_extensions = v3_ca\n[ dn ]\nO = nsima appraise test\nCN = " + cn +
      "\nemailAddress = test@example.invalid\n[ v3_ca ]\nbasicConstraints=critical,CA:FALSE\n"
      "keyUsage=digitalSignature\n";
  // Always explicit: openssl 3 adds subjectKeyIdentifier=hash to -x509 certs unless told "none".
  s += "subjectKeyIdentifier=" + skid + "\n";
  if (skid == "hash") s += "authorityKeyIdentifier=keyid\n";
  return s;
}

// A TEST-ONLY key pair and self-signed certificate made by openssl.
struct TestKey {
  fs::path key;       // private key, PEM
  fs::path pem;       // certificate, PEM
  fs::path der;       // certificate, DER
  fs::path combined;  // key + certificate (evmctl then takes the key id from the SKID)
  std::string skid_tail;    // last 4 SKID bytes, lower hex ("" without SKID)
};

// `newkey` is an openssl -newkey argument: "rsa:2048", "ec -pkeyopt ec_paramgen_curve:prime256v1".
inline TestKey make_key(const fs::path& dir, const std::string& name, const std::string& newkey,
                        const std::string& skid = "hash") {
  TestKey k;
  k.key = dir / (name + ".key");
  k.pem = dir / (name + ".pem");
  k.der = dir / (name + ".der");
  k.combined = dir / (name + ".combined.pem");
  const fs::path cnf = dir / (name + ".cnf");
  write_file(cnf, x509_cnf("nsima test " + name, skid));
  must("openssl req -new -nodes -utf8 -sha256 -days 3650 -batch -x509 -config " + cnf.string() +
       " -newkey " + newkey + " -keyout " + k.key.string() + " -out " + k.pem.string());
  must("openssl x509 -in " + k.pem.string() + " -outform DER -out " + k.der.string());
  must("cat " + k.key.string() + " " + k.pem.string() + " > " + k.combined.string());
  if (skid != "none") {
    std::string out = must("openssl x509 -in " + k.pem.string() +
                           " -noout -ext subjectKeyIdentifier | tail -1 | tr -d ' :\\n'");
    std::string lower;
    for (char c : out) lower.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(c))));
    k.skid_tail = lower.size() >= 8 ? lower.substr(lower.size() - 8) : lower;
  }
  return k;
}

// `evmctl ima_sign` into security.ima; returns the value.
inline std::vector<uint8_t> evmctl_sign(const fs::path& file, const fs::path& key,
                                        const std::string& algo = "sha256") {
  must("evmctl ima_sign -a " + algo + " --key " + key.string() + " " + file.string());
  return get_ima_xattr(file);
}

// `evmctl ima_hash` into security.ima; returns the value.
inline std::vector<uint8_t> evmctl_hash(const fs::path& file, const std::string& algo) {
  must("evmctl ima_hash -a " + algo + " " + file.string());
  return get_ima_xattr(file);
}

// Digest of a file by the openssl tool (independent of nsima's hasher), lower hex.
inline std::string openssl_digest(const fs::path& file, const std::string& algo) {
  std::string out = must("openssl dgst -" + algo + " -r " + file.string());
  return out.substr(0, out.find(' '));
}

}  // namespace nsima::appraise::testing
