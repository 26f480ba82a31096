// SPDX-License-Identifier: Apache-2.0
// libFuzzer target for the model file parser (daemon/model/model_file): any byte string is
// (1) parsed; an accepted file must (2) become a model whose serialization parses again to the
// same base, aggregate and points in the same order, with the same state, and serialize to
// the same text again; (3) it is loaded against an empty keyring and against the fixed key
// named by NSIMA_MODEL_FUZZ_CERT (made by openssl in run_model_fuzz.sh), so that fuzzed sig
// lines reach OpenSSL's verifier: a verified load must agree with the plain parse.
// Invariant violations trap so that libFuzzer records the input. Built and run by
// run_model_fuzz.sh (ctest fuzz.model).
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#include "appraise/keyring.h"
#include "model/model_file.h"

namespace {

using namespace nsima::model;

void check(bool ok) {
  if (!ok) __builtin_trap();
}

nsima::appraise::Keyring* keys = nullptr;

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  keys = new nsima::appraise::Keyring();
  const char* cert = std::getenv("NSIMA_MODEL_FUZZ_CERT");
  if (!cert) {
    std::fprintf(stderr, "NSIMA_MODEL_FUZZ_CERT must name a DER certificate\n");
    std::abort();
  }
  auto key = nsima::appraise::Key::from_file(cert);
  if (!key || !keys->add(*key)) {
    std::fprintf(stderr, "cannot load %s\n", cert);
    std::abort();
  }
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view text(reinterpret_cast<const char*>(data), size);
  auto f = parse_model(text, "fuzz");
  if (!f) {
    check(!f.error().message.empty());
    check(f.error().where.rfind("fuzz:", 0) == 0);
    return 0;
  }
  auto m = model_from_file(*f, Mode::kEnforce);
  check(m.has_value());
  check(m->known_count() == f->points.size());
  std::string saved = serialize_model(*m);
  auto again = parse_model(saved, "saved");
  check(again.has_value());
  check(again->base == f->base && again->aggregate == f->aggregate);
  check(again->points.size() == f->points.size());
  for (size_t i = 0; i < f->points.size(); ++i) {
    check(again->points[i].coefficient == f->points[i].coefficient);
    check(again->points[i].event == f->points[i].event);
    check(again->points[i].description == f->points[i].description);
  }
  check(offline_values(*again).state == m->state());
  check(offline_values(*again).measurement == m->measurement());
  auto m2 = model_from_file(*again, Mode::kLearn);
  check(m2.has_value() && serialize_model(*m2) == saved);

  auto unsigned_load = load_model(text, "fuzz", nsima::appraise::Keyring{});
  check(unsigned_load.has_value() == !f->signature.has_value());
  auto verified = load_model(text, "fuzz", *keys);
  if (verified) {
    check(f->signature.has_value());
    check(verified->points.size() == f->points.size());
  }
  return 0;
}
