// SPDX-License-Identifier: GPL-2.0
/* The license of every nsima BPF object (bpf_d_path and friends are GPL-only helpers). */
#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

char LICENSE[] SEC("license") = "GPL";
