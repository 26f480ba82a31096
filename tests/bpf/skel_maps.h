// SPDX-License-Identifier: Apache-2.0
// The capture::MapFds of a self-test skeleton (nsima_selftest, nsima_protect_selftest: both carry
// the access hooks' maps), for the host tests and benchmarks that drive BpfMaps over them.
#pragma once

#include <bpf/libbpf.h>

#include "capture/bpf_maps.h"

namespace nsima::testing {

template <class Skel>
capture::MapFds selftest_map_fds(const Skel* s) {
  capture::MapFds fds;
  fds.cgroups = bpf_map__fd(s->maps.cgroups);
  fds.verdicts = bpf_map__fd(s->maps.verdicts);
  fds.stats = bpf_map__fd(s->maps.stats);
  fds.ns_drops = bpf_map__fd(s->maps.ns_drops);
  fds.self_opens = bpf_map__fd(s->maps.self_opens);
  fds.cg_cache = bpf_map__fd(s->maps.cg_cache);
  fds.ctl = bpf_map__fd(s->maps.ctl);
  fds.trusted = bpf_map__fd(s->maps.trusted);
  fds.model_untrusted = bpf_map__fd(s->maps.model_untrusted);
  fds.model_quiet = bpf_map__fd(s->maps.model_quiet);
  return fds;
}

}  // namespace nsima::testing
