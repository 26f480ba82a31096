// SPDX-License-Identifier: Apache-2.0
// libFuzzer target for control requests as nsimad's control server reads them
// (daemon/control: Connection::read_line framing, JSON parsing as Server::serve does it,
// validate_request's schema, and handle_request's answer to a request the schema refuses). Any
// byte string is sent through a socketpair and read back line by line. Invariants: the lines
// are the input's lines; a request the schema accepts has every required field and every field
// readable as its declared type (what the handlers rely on: nlohmann::json would throw
// otherwise); a refused one is answered {"ok":false,"error":<the schema's sentence>} without
// reaching the (absent) pipeline. The confined parser's form of each line (confine/protocol:
// what nsima-parse answers for a read-only group member's line) always decodes, and the schema
// says of it what it says of the line parsed in process; any bytes as such a reply never crash
// the decoder. Invariant violations trap so that libFuzzer records the input.
// Run by run_fuzz.sh (ctest fuzz.control).
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <span>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/log.h"
#include "confine/protocol.h"
#include "control/connection.h"
#include "control/handlers.h"
#include "control/schema.h"
#include "nsima/control_protocol.h"

namespace {

using nlohmann::json;
using namespace nsima::control;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

std::pair<Connection, Connection> pair() {
  int sv[2];
  check(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
  return {Connection(nsima::UniqueFd(sv[0])), Connection(nsima::UniqueFd(sv[1]))};
}

void accepted(const json& req) {
  const CommandSpec* spec = find_command(req.at(kFieldCmd).get_ref<const std::string&>());
  check(spec != nullptr);
  for (const auto& f : spec->fields) {
    auto it = req.find(std::string(f.name));
    if (it == req.end()) {
      check(!f.required);
      continue;
    }
    try {
      switch (f.type) {
        case FieldType::kString: {
          const auto& s = it->get_ref<const std::string&>();
          check(f.may_be_empty || !s.empty());
          break;
        }
        case FieldType::kBool:
          (void)it->get<bool>();
          break;
        case FieldType::kUint:
          (void)it->get<uint64_t>();
          check(!it->is_number_float());
          break;
      }
    } catch (const json::exception&) {
      check(false);
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  nsima::set_log_level("off");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // -max_len keeps the input below the socket buffer, so writing it all first cannot block.
  if (size > 65536) return 0;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto [writer, reader] = pair();
  check(writer.send_line(std::string(in)));  // as nsimactl would: the bytes, then a newline
  ::shutdown(writer.fd(), SHUT_WR);

  auto [server_end, client_end] = pair();
  DaemonContext ctx;  // no pipeline: only refused requests may be handled
  ctx.stopping = [] { return false; };
  std::string expected = std::string(in) + "\n";
  size_t lines = 0;
  while (auto line = reader.read_line(kMaxRequestBytes, std::chrono::seconds(5))) {
    ++lines;
    check(line->find('\n') == std::string::npos);
    const size_t nl = expected.find('\n');
    check(nl != std::string::npos && expected.compare(0, nl, *line) == 0);
    expected.erase(0, nl + 1);
    if (line->empty()) continue;
    auto req = json::parse(*line, nullptr, /*allow_exceptions=*/false);
    const auto bytes = std::span<const uint8_t>(
        reinterpret_cast<const uint8_t*>(line->data()), line->size());
    auto confined = nsima::confine::decode_control_request(
        nsima::confine::serve(nsima::confine::Op::kControlRequest, bytes));
    check(confined.has_value());
    (void)nsima::confine::decode_control_request(bytes);  // a lying worker's reply
    if (req.is_discarded()) {
      check(!*confined);
      continue;
    }
    check(confined->has_value());
    auto ok = validate_request(req);
    auto ok_confined = validate_request(**confined);
    check(ok.has_value() == ok_confined.has_value());
    if (!ok) check(ok.error().message == ok_confined.error().message);
    if (ok) {
      accepted(req);
      continue;
    }
    check(!ok.error().message.empty() && ok.error().code == EINVAL);
    handle_request(ctx, req, server_end);
    auto answer = client_end.read_line(1 << 20, std::chrono::seconds(5));
    check(answer.has_value());
    auto a = json::parse(*answer, nullptr, false);
    check(a == json({{kFieldOk, false}, {kFieldError, ok.error().message}}));
  }
  check(reader.error() == "connection closed" && expected.empty() && lines >= 1);
  return 0;
}
