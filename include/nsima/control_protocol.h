// SPDX-License-Identifier: Apache-2.0
// nsimactl / OCI hook <-> nsimad control protocol, as nsimad speaks it (daemon/control).
//
// Transport, versions (hello), access and limits: docs/control-protocol.md. In short: an AF_UNIX
// stream socket (kDefaultSocket); root may use every command, members of [control] read_group
// the reading commands (control/access.cpp), others are answered "permission denied: ..." and
// closed. Both directions carry JSON lines: one JSON object, UTF-8, terminated by "\n".
// A connection may carry several requests one after the other; each is answered before the next
// is read. Requests longer than kMaxRequestBytes are refused and the connection is closed.
//
// Request:  {"cmd": "<command>", <field>: <value>, ...}
// Answer:   {"ok": true, ...} or {"ok": false, "error": "<one sentence>"}
//
// Every request is checked against its command's schema (daemon/control/schema.cpp) before
// anything else happens. Errors name the field:
//   unknown command "x" (commands: status, watch, ...)
//   unknown field "f" in a "log" request (fields: ns, format, follow, from)
//   field "vtpm" must be a boolean, got string
//   field "from" must be a non-negative integer, got number -1
//   field "format" must be "ascii" or "binary", got "xml"
//   field "ns" must not be empty          missing field "ns" (a string)
//   fields "policy_text" and "builtin" exclude each other
//   missing field "policy_text" or "builtin"
// Errors of the operation itself are one sentence with the place, e.g.
//   "no such namespace (7)", "/tmp/p.policy:2:9: 'template=ima-modsig': nsima cannot produce ...".
//
// Commands (fields: * = required; answers after "ok": true):
//   status                       -> "bpf" {emitted, dropped, denied, quiet, cgroup_uncached,
//                                   unresolved, dropped_unattributed}, "bpf_per_hook"
//                                   {file_open|mmap_file|bprm_check: {...the same}}, "ns_drops"
//                                   {ns id: count}, "consumer" {decoded, errors}, "pipeline"
//                                   {processed, unknown_namespace, map_errors, measured,
//                                   violations, hash_jobs, unreadable, extends,
//                                   extends_failed, overrides}, "access" {submitted,
//                                   cache_hits, coalesced, files_read, bytes_read, timeouts,
//                                   rejected, workers, stuck_workers, queues {ns: {queued,
//                                   running, done, timeouts, rejected}}},
//                                   "namespaces" [NS]  ("bpf*" and "consumer" only with BPF)
//   watch      cgroup*           -> "ns" (number; the cgroup's namespace must exist: watch never
//                                   creates one, see ns_create). STREAM: then one line per event of that
//                                   namespace and its descendants (common/event.cpp
//                                   event_to_json(), plus "nsima": "measured in ..." when
//                                   measured), until the client closes or nsimad stops.
//   verdict    cgroup*, path*, verdict* ("allow"|"deny"), root (directory in nsimad's view)
//                                -> nothing else. path is as the namespace's processes see it:
//                                   resolved in the root of a live process of the cgroup (or in
//                                   root when given; "/" for the host namespace; the cgroup's
//                                   namespace must exist: a verdict never creates one). deny: every
//                                   version of the inode, in the namespace and all below it,
//                                   persisted; allow lifts the namespace's own deny.
//   ns_create  cgroup*, policy_text | builtin, policy_name (file name for messages; needs
//              policy_text), vtpm (bool, default false), template ("ima-ng" | "ima-sig" |
//              "ima"), hash ("sha1" | "sha256" | "sha384" | "sha512"; both default to nsimad's
//              --template/--hash, kept in ns.json)              -> "namespace" NS
//   ns_list                      -> "namespaces" [NS]
//   ns_delete  ns*               -> nothing else (the list is archived)
//   policy_load ns*, policy_text | builtin (one required), policy_name -> "rules" (count)
//   policy_show ns*              -> "policy" (the kernel's read-back text)
//   log        ns*, format ("ascii" default | "binary"), follow (bool, default false),
//              from (entry index, default 0)
//                                -> "ns", "format", "from", "entries" (the list's entry count
//                                   when the request arrived, once every access completed
//                                   before it is measured). STREAM, see below.
//   pcr, quote and log first pass the attestation barrier (daemon/README.md): every access that
//   completed before the request is in the list and extended, or the request fails (ETIMEDOUT)
//   naming what is still pending.
//   pcr        ns*, all (bool)   -> "tpm" (description), "pcr" (number), "values" {bank: hex
//                                   read from the TPM}, "expected" {bank: hex, the replay of
//                                   the list that owns the PCR}; with all: "all" {bank: [24
//                                   hex, PCR 0-23]} (nsimactl pcr --evmctl)
//   quote      ns*, nonce* (hex, 1-64 bytes)
//                                -> "quote_msg", "quote_sig", "quote_pcrs" (base64 of
//                                   tpm2_quote's -m, -s, -o files), "ak_pub_pem" (PEM text),
//                                   "nonce" (hex). nsimactl writes them as tpm2_checkquote's
//                                   files (tpm::write_quote_files); nsimad writes no file.
//   vtpm_ca                      -> "ca_pem": the vTPM CA's root certificate (the trust anchor
//                                   of every vTPM's EK certificate)
//   vtpm_identity ns*            -> "ek_public", "ak_public" (base64 of marshaled TPM2B_PUBLIC),
//                                   "ek_cert" (base64 DER, "" when the vTPM has none),
//                                   "chain_pem" (the CA's issuer certificate), "ak_name" (hex).
//                                   ENODEV for a namespace without a vTPM.
//   vtpm_activate ns*, id_object*, enc_secret* (base64 of TPM2_MakeCredential's marshaled
//              TPM2B_ID_OBJECT and TPM2B_ENCRYPTED_SECRET)
//                                -> "secret" (hex): TPM2_ActivateCredential(AK, EK) in the
//                                   namespace's vTPM
//   model_mode ns*, mode* (learn | seal | enforce)          -> "model" MODEL
//   model_load ns*, model_text*, model_name, mode (seal default | enforce) -> "model" MODEL
//   model_save ns*               -> "model_text" (docs/model-encoding.md; nsimactl writes it)
//   model_state ns*, extend (bool: into PCR 11 of the namespace's vTPM) -> "model" MODEL
//   model_forensics ns*          -> "forensics" [{"seq", "tgid", "event", "coefficient",
//                                   "description", "untrusted"}], "dropped"
//   ns_create also takes model_mode and model_text (+ model_name): modeled from the start, and
//              model_agent (socket of an external agent, docs/model-agent-protocol.md) with
//              model_agent_fail (closed default | open): what a missing verdict means, and
//              model_agent_timeout_ms (1..60000, default 2000): how long a verdict may take.
//   MODEL = {"mode", "state", "measurement", "base", "aggregate", "known", "forensic",
//            "tracked", "untrusted", "mark_errors", "forensics_dropped", "extends", "kernel",
//            ["pcr", "pcr_sha256"]: after an extend}
//   NS = {"id", "ns_id", "cgroup", "cgroup_id", "parent", "vtpm", "owner", "pcr", "tpm",
//         "policy", "policy_rules", "entries", "violations", "list", "template", "hash",
//         ["disabled": why]}
//
// The log stream: after its answer line, nsimad sends the list's entries from "from" on, as
// kernel IMA's ascii_runtime_measurements (sha1 template-hash column) or
// binary_runtime_measurements would show them, in chunk lines
//   {"data": "<base64 (RFC 4648, padded) of the rendered bytes>", "from": i, "next": j}
// each holding entries [i, j) whole (a chunk never splits an entry; the concatenated "data" of
// the chunks is the rendering, byte for byte). Without follow, the stream ends with
//   {"end": true, "next": j}
// once every entry present when the request arrived was sent (j >= "entries"). With follow,
// nsimad keeps sending chunks as entries are added (polling every 200 ms) until the client
// closes the connection; when nsimad stops it sends the "end" line. An error during the stream
// (e.g. the namespace was deleted) is sent as {"ok": false, "error": "..."} and ends it.
// Nothing in the stream depends on the client's mount namespace: nsimactl log works from any.
#pragma once

#include <cstddef>

namespace nsima::control {

inline constexpr const char* kDefaultSocket = "/run/nsima/nsimad.sock";

// The protocol version (docs/control-protocol.md, "Versions"): a client says which it speaks in
// {"cmd": "hello", "version": N}; nsimad refuses another and closes the connection.
inline constexpr unsigned kProtocolVersion = 1;

// Commands
inline constexpr const char* kCmdHello = "hello";  // version*, client -> version, server, access,
                                                    // commands (answered by control/server.cpp)
inline constexpr const char* kCmdStatus = "status";
inline constexpr const char* kCmdWatch = "watch";
inline constexpr const char* kCmdVerdict = "verdict";
inline constexpr const char* kCmdNsCreate = "ns_create";
inline constexpr const char* kCmdNsList = "ns_list";
inline constexpr const char* kCmdNsDelete = "ns_delete";
inline constexpr const char* kCmdPolicyLoad = "policy_load";
inline constexpr const char* kCmdPolicyShow = "policy_show";
inline constexpr const char* kCmdLog = "log";
inline constexpr const char* kCmdPcr = "pcr";
inline constexpr const char* kCmdQuote = "quote";
inline constexpr const char* kCmdVtpmCa = "vtpm_ca";
inline constexpr const char* kCmdVtpmIdentity = "vtpm_identity";
inline constexpr const char* kCmdVtpmActivate = "vtpm_activate";
// appraisal (daemon/appraise/, ns/pipeline_appraise.cpp)
inline constexpr const char* kCmdKeysAdd = "keys_add";        // ns, certs
inline constexpr const char* kCmdKeysList = "keys_list";      // ns
inline constexpr const char* kCmdKeysRemove = "keys_remove";  // ns, keyid
inline constexpr const char* kCmdDigestsLoad = "digests_load";      // ns, manifest[, name, sig]
inline constexpr const char* kCmdDigestsRevoke = "digests_revoke";  // ns, digest
inline constexpr const char* kCmdAppraiseMode = "appraise_mode";    // ns, mode
inline constexpr const char* kCmdAppraise = "appraise";  // ns, root: pre-appraise a directory
inline constexpr const char* kCmdAudit = "audit";        // ns[, follow, from]: streamed
// workload models (daemon/model/, ns/pipeline_model.cpp)
inline constexpr const char* kCmdModelMode = "model_mode";    // ns, mode: learn | seal | enforce
inline constexpr const char* kCmdModelLoad = "model_load";    // ns, model_text[, model_name, mode]
inline constexpr const char* kCmdModelSave = "model_save";    // ns -> "model" (file text)
inline constexpr const char* kCmdModelState = "model_state";  // ns[, extend] -> MODEL
inline constexpr const char* kCmdModelForensics = "model_forensics";  // ns -> "forensics" [...]

// Request fields
inline constexpr const char* kFieldCmd = "cmd";
inline constexpr const char* kFieldVersion = "version";  // hello
inline constexpr const char* kFieldClient = "client";    // hello: the client's name, for logs
inline constexpr const char* kFieldCgroup = "cgroup";
inline constexpr const char* kFieldNs = "ns";
inline constexpr const char* kFieldPath = "path";
inline constexpr const char* kFieldVerdict = "verdict";
inline constexpr const char* kFieldPolicyText = "policy_text";
inline constexpr const char* kFieldPolicyName = "policy_name";
inline constexpr const char* kFieldBuiltin = "builtin";
inline constexpr const char* kFieldVtpm = "vtpm";
inline constexpr const char* kFieldFormat = "format";
inline constexpr const char* kFieldFollow = "follow";
inline constexpr const char* kFieldFrom = "from";
inline constexpr const char* kFieldNonce = "nonce";
inline constexpr const char* kFieldAll = "all";  // pcr: every PCR 0-23 of each bank too
inline constexpr const char* kFieldRoot = "root";
inline constexpr const char* kFieldAppraise = "appraise";  // ns_create: enforce | log | off
inline constexpr const char* kFieldCerts = "certs";        // base64 DER/PEM certificates
inline constexpr const char* kFieldKeys = "keys";          // ns_create: a directory nsimad reads
inline constexpr const char* kFieldRootfs = "rootfs";      // ns_create: pre-appraised first
inline constexpr const char* kFieldContainer = "container";  // ns_create: OCI container id
inline constexpr const char* kFieldTemplate = "template";  // ns_create: ima-ng | ima-sig | ima
inline constexpr const char* kFieldHash = "hash";          // ns_create: sha1|sha256|sha384|sha512
inline constexpr const char* kFieldKeyid = "keyid";
inline constexpr const char* kFieldManifest = "manifest";  // sha256sum text
inline constexpr const char* kFieldName = "name";
inline constexpr const char* kFieldSig = "sig";            // base64 of FILE.sig
inline constexpr const char* kFieldDigest = "digest";      // sha256 hex
inline constexpr const char* kFieldMode = "mode";
inline constexpr const char* kFieldModelText = "model_text";  // a model file's text
inline constexpr const char* kFieldModelName = "model_name";  // its name, for messages
inline constexpr const char* kFieldModelMode = "model_mode";  // ns_create: learn | seal | enforce
inline constexpr const char* kFieldModelAgent = "model_agent";  // ns_create: agent socket
inline constexpr const char* kFieldModelAgentFail = "model_agent_fail";  // closed | open
inline constexpr const char* kFieldModelAgentTimeout = "model_agent_timeout_ms";  // ns_create
inline constexpr const char* kFieldExtend = "extend";         // model_state: into PCR 11 of the vTPM

// Answer fields
inline constexpr const char* kFieldOk = "ok";
inline constexpr const char* kFieldError = "error";
inline constexpr const char* kFieldEvent = "event";
inline constexpr const char* kFieldEntries = "entries";
inline constexpr const char* kFieldData = "data";  // log stream chunk
inline constexpr const char* kFieldNext = "next";  // log stream: index after the chunk
inline constexpr const char* kFieldEnd = "end";    // log stream: last line
inline constexpr const char* kFieldQuoteMsg = "quote_msg";
inline constexpr const char* kFieldQuoteSig = "quote_sig";
inline constexpr const char* kFieldQuotePcrs = "quote_pcrs";
inline constexpr const char* kFieldAkPubPem = "ak_pub_pem";
inline constexpr const char* kFieldCaPem = "ca_pem";
inline constexpr const char* kFieldEkPublic = "ek_public";
inline constexpr const char* kFieldEkCert = "ek_cert";
inline constexpr const char* kFieldChainPem = "chain_pem";
inline constexpr const char* kFieldAkPublic = "ak_public";
inline constexpr const char* kFieldAkName = "ak_name";
inline constexpr const char* kFieldIdObject = "id_object";
inline constexpr const char* kFieldEncSecret = "enc_secret";
inline constexpr const char* kFieldSecret = "secret";

// Values
inline constexpr const char* kFormatAscii = "ascii";
inline constexpr const char* kFormatBinary = "binary";

// Largest request line nsimad accepts (a policy travels inline), and largest answer line
// nsimactl accepts.
inline constexpr size_t kMaxRequestBytes = 16u << 20;
// Entries per log chunk: bounds a chunk line (a path is at most PATH_MAX bytes).
inline constexpr unsigned kLogChunkEntries = 256;

}  // namespace nsima::control
