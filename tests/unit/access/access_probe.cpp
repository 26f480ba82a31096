// SPDX-License-Identifier: Apache-2.0
// access_probe: the root cache and file accessor fed with real events, for the VM test
// tests/vm/e2e/access_roots_test.sh. Reads `nsimactl watch` JSON lines on stdin, captures each
// event's root at once (as nsimad's intake thread will) and measures the file it names through
// the accessor (queue = the event's namespace). Prints one line per event:
//   <seq> <hook> mnt_ns=<inode> root=<ino> <path> ok <sha256 hex> [cached]
//   <seq> <hook> mnt_ns=<inode> root=<ino> <path> <error kind> <message>
// and, at EOF, "stats captured=N hits=N vanished=N handle_opens=N".
#include <nlohmann/json.hpp>

#include <cstdio>
#include <iostream>
#include <mutex>
#include <string>

#include "access/file_accessor.h"
#include "common/event.h"

using namespace nsima;

namespace {

std::mutex out_mu;

void print(const std::string& s) {
  std::lock_guard lock(out_mu);
  std::fwrite(s.data(), 1, s.size(), stdout);
  std::fflush(stdout);
}

bool to_event(const std::string& line, uint64_t seq, Event& ev) {
  auto j = nlohmann::json::parse(line, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("path")) return false;
  auto u = [&](const char* k) { return j.value(k, uint64_t{0}); };
  ev.seq = seq;
  ev.pid = static_cast<uint32_t>(u("pid"));
  ev.tgid = static_cast<uint32_t>(u("tgid"));
  ev.ns_id = static_cast<uint32_t>(u("ns_id"));
  ev.mnt_ns = static_cast<uint32_t>(u("mnt_ns"));
  ev.kdev = dev_to_kdev(static_cast<dev_t>(u("dev")));
  ev.ino = u("ino");
  ev.generation = static_cast<uint32_t>(u("generation"));
  ev.i_mode = static_cast<uint32_t>(u("mode"));
  ev.stamp.ctime_sec = j.value("ctime_sec", int64_t{0});
  ev.stamp.ctime_nsec = static_cast<uint32_t>(u("ctime_nsec"));
  ev.stamp.i_version = u("i_version");
  ev.stamp.size = u("size");
  ev.root_kdev = dev_to_kdev(static_cast<dev_t>(u("root_dev")));
  ev.root_ino = u("root_ino");
  ev.start_boottime_ns = u("start_boottime");
  ev.path = j.value("path", std::string());
  ev.comm = j.value("hook", std::string());  // only printed
  return true;
}

}  // namespace

int main() {
  access::RootCache roots({});
  measure::DigestCache digests(4096);
  access::FileAccessor::Options o;
  o.timeout = std::chrono::milliseconds(10000);
  access::FileAccessor acc(o, &roots, &digests);
  std::string line;
  uint64_t seq = 0;
  while (std::getline(std::cin, line)) {
    Event ev;
    if (!to_event(line, ++seq, ev)) continue;
    roots.capture(ev);  // at intake, while the process may still be alive
    access::FileAccessor::Request r;
    r.seq = seq;
    r.queue = ev.ns_id;
    r.algos = {measure::HashAlgo::kSha256};
    std::string head = std::to_string(seq) + " " + ev.comm + " mnt_ns=" +
                       std::to_string(ev.mnt_ns) + " root=" + std::to_string(ev.root_ino) + " " +
                       ev.path + " ";
    r.ev = std::move(ev);
    r.done = [head](const access::AccessResult& res) {
      if (res)
        print(head + "ok " + res->digests[0].hex() + (res->from_cache ? " cached" : "") + "\n");
      else
        print(head + std::string(access::access_error_kind_name(res.error().kind)) + " " +
              res.error().error.to_string() + "\n");
    };
    acc.submit(std::move(r));
  }
  acc.drain();
  auto rs = roots.stats();
  auto as = acc.stats();
  print("stats captured=" + std::to_string(rs.captured) + " hits=" + std::to_string(rs.hits) +
        " vanished=" + std::to_string(rs.vanished) +
        " handle_opens=" + std::to_string(as.handle_opens) + "\n");
  return 0;
}
