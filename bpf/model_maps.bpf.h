/* SPDX-License-Identifier: GPL-2.0 */
/*
 * The maps of the model hooks (model.bpf.c), declared __weak like maps.bpf.h's so that several
 * .bpf.c files can include this header. Namespace resolution uses maps.bpf.h's cgroups,
 * cg_cache and ctl, which nsimad shares with the file hooks' object (bpf_map__reuse_fd).
 */
#ifndef NSIMA_MODEL_MAPS_BPF_H
#define NSIMA_MODEL_MAPS_BPF_H

#include "vmlinux.h"
#include <bpf/bpf_helpers.h>

#include "nsima/bpf_abi.h"
#include "nsima/model_abi.h"

/* namespace id -> struct nsima_model_ns. Written only by nsimad; no entry: not modeled. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, struct nsima_model_ns);
} model_ns SEC(".maps") __weak;

/* Untrusted processes (struct nsima_proc_key -> namespace id that judged it). Written by
 * nsimad when a model says so, and by the fork hook for the children of untrusted parents
 * (untrust is inherited and permanent); the exit hook removes a process that is gone.
 * Pinned (with the model hooks' links): the marks outlive an nsimad restart. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, NSIMA_MAX_UNTRUSTED);
	__type(key, struct nsima_proc_key);
	__type(value, __u32);
} untrusted SEC(".maps") __weak;

/* Model events to nsimad (size set by nsimad before load). */
struct {
	__uint(type, BPF_MAP_TYPE_RINGBUF);
	__uint(max_entries, 1024 * 1024);
} mevents SEC(".maps") __weak;

/* Identity of the loaded model object (struct nsima_tag: sha256 of its bytes, the mevents
 * size and the file hooks' tag), written by nsimad after load; no program reads it. Pinned
 * with the model hooks, it tells a restarted nsimad whether it may resume them. */
struct {
	__uint(type, BPF_MAP_TYPE_ARRAY);
	__uint(max_entries, 1);
	__type(key, __u32);
	__type(value, struct nsima_tag);
} model_tag SEC(".maps") __weak;

/* namespace id -> model events lost in it (ring buffer full), as the file hooks' ns_drops:
 * nsimad turns each increase into the namespace's lost count (model state, audit). Pinned. */
struct {
	__uint(type, BPF_MAP_TYPE_HASH);
	__uint(max_entries, 4096);
	__type(key, __u32);
	__type(value, __u64);
} model_drops SEC(".maps") __weak;

/* Per-CPU counters, NSIMA_MSTAT_* + hook. */
struct {
	__uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
	__uint(max_entries, NSIMA_MSTAT_MAX);
	__type(key, __u32);
	__type(value, __u64);
} mstats SEC(".maps") __weak;

#endif
