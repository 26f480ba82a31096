// SPDX-License-Identifier: Apache-2.0
// MeasurementList: kernel-format appends, duplicate suppression (kernel rules), replay after
// reopen, torn-record recovery, corruption refusal, exclusive writer, short-write rollback, a
// writer SIGKILLed in the middle of appends, streaming renderers and the follow reader. PCR values are recomputed
// here with OpenSSL's one-shot EVP_Digest, not with the library's hasher.
#include "measure/measurement_list.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <signal.h>
#include <spdlog/sinks/ostream_sink.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <random>
#include <sstream>
#include <thread>

#include "common/log.h"
#include "measure/hasher.h"
#include "test_util.h"

namespace nsima::measure {
namespace {

using testing::TempDir;

std::vector<uint8_t> evp(const char* md, const std::string& data) {
  std::vector<uint8_t> out(EVP_MAX_MD_SIZE);
  unsigned int len = 0;
  EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_get_digestbyname(md), nullptr);
  out.resize(len);
  return out;
}

// Independent parse + replay of an ima-ng/ima-sig binary list (sha1 column) for one PCR.
struct Replayed {
  size_t entries = 0;
  std::vector<uint8_t> sha1 = std::vector<uint8_t>(20, 0);
  std::vector<uint8_t> sha256 = std::vector<uint8_t>(32, 0);
};
Replayed independent_replay(const std::string& bin, uint32_t pcr) {
  Replayed r;
  size_t pos = 0;
  auto u32 = [&](size_t at) {
    return static_cast<uint32_t>(static_cast<uint8_t>(bin[at])) |
           static_cast<uint32_t>(static_cast<uint8_t>(bin[at + 1])) << 8 |
           static_cast<uint32_t>(static_cast<uint8_t>(bin[at + 2])) << 16 |
           static_cast<uint32_t>(static_cast<uint8_t>(bin[at + 3])) << 24;
  };
  while (pos < bin.size()) {
    uint32_t p = u32(pos);
    std::string col = bin.substr(pos + 4, 20);
    uint32_t nlen = u32(pos + 24);
    uint32_t dlen = u32(pos + 28 + nlen);
    std::string data = bin.substr(pos + 32 + nlen, dlen);
    pos += 32 + nlen + dlen;
    ++r.entries;
    if (p != pcr) continue;
    bool viol = col == std::string(20, '\0');
    auto v1 = viol ? std::vector<uint8_t>(20, 0xff) : evp("SHA1", data);
    auto v256 = viol ? std::vector<uint8_t>(32, 0xff) : evp("SHA256", data);
    r.sha1 = evp("SHA1", testing::to_s(r.sha1) + testing::to_s(v1));
    r.sha256 = evp("SHA256", testing::to_s(r.sha256) + testing::to_s(v256));
  }
  return r;
}

Entry file_entry(const std::string& name, const std::string& content) {
  Entry e;
  e.digest = *hash_bytes(HashAlgo::kSha256, testing::bytes_of(content));
  e.name = name;
  return e;
}

ListConfig test_config() {
  ListConfig c;
  c.sync_every = 16;
  return c;
}

// Collects the "measure" logger's output during a test.
class LogCapture {
 public:
  LogCapture() : sink_(std::make_shared<spdlog::sinks::ostream_sink_mt>(out_)) {
    logger("measure")->sinks().push_back(sink_);
  }
  ~LogCapture() {
    auto& sinks = logger("measure")->sinks();
    sinks.erase(std::remove(sinks.begin(), sinks.end(), sink_), sinks.end());
  }
  std::string text() const { return out_.str(); }

 private:
  std::ostringstream out_;
  std::shared_ptr<spdlog::sinks::ostream_sink_mt> sink_;
};

TEST(MeasurementList, AppendsKernelFormatAndReturnsExtendValues) {
  TempDir dir;
  auto list = MeasurementList::open(dir.path(), test_config());
  ASSERT_TRUE(list) << list.error().to_string();
  auto ba = list->append_boot_aggregate({});  // no TPM: zero digest
  ASSERT_TRUE(ba) << ba.error().to_string();
  EXPECT_TRUE(ba->added);
  EXPECT_EQ(ba->index, 0u);
  auto f = list->append(file_entry("/bin/a", "A"));
  ASSERT_TRUE(f);
  EXPECT_EQ(f->index, 1u);
  EXPECT_EQ(f->pcr, 10u);
  ASSERT_EQ(f->extend.size(), 2u);
  EXPECT_EQ(list->count(), 2u);
  EXPECT_FALSE(list->append_boot_aggregate({}));  // only as the first entry

  const std::string bin = testing::read_file(list->path());
  EXPECT_EQ(list->path(), dir / "binary_runtime_measurements");
  EXPECT_EQ(bin.size(), list->size_bytes());
  // Entry 0: boot_aggregate, sha256 zeros (ima-facts §2.7), checked byte for byte.
  testing::Bytes data0;
  data0.u32(40).str("sha256:").zeros(33).u32(15).str("boot_aggregate").zeros(1);
  testing::Bytes rec0;
  rec0.u32(10).raw(testing::unhex("0adefe762c149c7cec19da62f0da1297fcfbffff"));
  rec0.u32(6).str("ima-ng").u32(static_cast<uint32_t>(data0.size())).str(data0.str());
  EXPECT_EQ(bin.substr(0, rec0.size()), rec0.str());
  EXPECT_EQ(ba->extend[0].hex(), "0adefe762c149c7cec19da62f0da1297fcfbffff");
  EXPECT_EQ(ba->extend[1].hex(),
            "36f1cd67a730bc4137870c4d00dbc7430b51b1ebdaa130744297cf65339078a0");
  // Entry 1's extend values are the per-bank digests of its template data.
  std::string data1 = bin.substr(rec0.size() + 32 + 6);
  EXPECT_EQ(
      testing::to_s(std::vector<uint8_t>(f->extend[0].bytes().begin(), f->extend[0].bytes().end())),
      testing::to_s(evp("SHA1", data1)));
  EXPECT_EQ(
      testing::to_s(std::vector<uint8_t>(f->extend[1].bytes().begin(), f->extend[1].bytes().end())),
      testing::to_s(evp("SHA256", data1)));
}

TEST(MeasurementList, DuplicateSuppressionFollowsTheKernel) {
  TempDir dir;
  auto list = MeasurementList::open(dir.path(), test_config());
  ASSERT_TRUE(list);
  auto first = list->append(file_entry("/bin/a", "A"));
  ASSERT_TRUE(first && first->added);
  const uint64_t size = list->size_bytes();

  // Same template digest, same PCR: not added, not extended, points at the original.
  auto dup = list->append(file_entry("/bin/a", "A"));
  ASSERT_TRUE(dup);
  EXPECT_FALSE(dup->added);
  EXPECT_EQ(dup->index, first->index);
  EXPECT_TRUE(dup->extend.empty());
  EXPECT_EQ(list->size_bytes(), size);
  EXPECT_EQ(list->count(), 1u);

  // Other PCR, other path, other content: all new entries.
  Entry other_pcr = file_entry("/bin/a", "A");
  other_pcr.pcr = 11;
  EXPECT_TRUE(list->append(other_pcr)->added);
  EXPECT_TRUE(list->append(file_entry("/bin/b", "A"))->added);
  EXPECT_TRUE(list->append(file_entry("/bin/a", "A2"))->added);
  // Change and revert: the reverted content is a duplicate of the first entry.
  EXPECT_FALSE(list->append(file_entry("/bin/a", "A"))->added);
  // Another template is another template digest.
  Entry sig = file_entry("/bin/a", "A");
  sig.tmpl = TemplateKind::kImaSig;
  EXPECT_TRUE(list->append(sig)->added);
  // Violations bypass the check.
  auto v1 = list->append_violation("/tmp/x");
  auto v2 = list->append_violation("/tmp/x");
  ASSERT_TRUE(v1 && v2);
  EXPECT_TRUE(v1->added && v2->added);
  EXPECT_TRUE(v1->violation);
  EXPECT_EQ(v1->extend[0].hex(), std::string(40, 'f'));
  EXPECT_EQ(v1->extend[1].hex(), std::string(64, 'f'));
  EXPECT_EQ(list->count(), 7u);
  EXPECT_EQ(list->violations(), 2u);

  // The index survives a reopen.
  ASSERT_TRUE(list->close());
  auto again = MeasurementList::open(dir.path(), test_config());
  ASSERT_TRUE(again);
  EXPECT_EQ(again->count(), 7u);
  EXPECT_EQ(again->violations(), 2u);
  EXPECT_FALSE(again->append(file_entry("/bin/b", "A"))->added);
  EXPECT_FALSE(again->append(other_pcr)->added);
  EXPECT_EQ(again->append(file_entry("/bin/c", "C"))->index, 7u);
}

TEST(MeasurementList, DuplicateIndexUsesTheNamespaceHashAlgorithm) {
  // A sha1 namespace keys its index on sha1 template digests; behaviour is the same.
  TempDir dir;
  ListConfig c = test_config();
  c.hash_algo = HashAlgo::kSha1;
  auto list = MeasurementList::open(dir.path(), c);
  ASSERT_TRUE(list);
  Entry e;
  e.digest = *hash_bytes(HashAlgo::kSha1, testing::bytes_of("x"));
  e.name = "/x";
  EXPECT_TRUE(list->append(e)->added);
  EXPECT_FALSE(list->append(e)->added);
  // The sha1 namespace's violation d-ng has 20 zero bytes.
  auto v = list->append_violation("/v");
  ASSERT_TRUE(v);
  std::string bin = testing::read_file(list->path());
  EXPECT_NE(bin.find(std::string("sha1:\0", 6) + std::string(20, '\0') +
                     std::string("\x03\0\0\0/v\0", 7)),
            std::string::npos);
}

TEST(MeasurementList, ReplayMatchesIndependentComputation) {
  TempDir dir;
  std::vector<std::vector<Digest>> tpm;  // simulated TPM: what the caller extends
  Digest pcr1(HashAlgo::kSha1), pcr256(HashAlgo::kSha256);
  {
    auto list = MeasurementList::open(dir.path(), test_config());
    ASSERT_TRUE(list);
    auto apply = [&](const Result<AppendOutcome>& o) {
      ASSERT_TRUE(o) << o.error().to_string();
      if (!o->added || o->pcr != 10) return;
      pcr1 = *pcr_extend(pcr1, o->extend[0]);
      pcr256 = *pcr_extend(pcr256, o->extend[1]);
    };
    apply(list->append_boot_aggregate({}));
    for (int i = 0; i < 50; ++i) apply(list->append(file_entry("/f" + std::to_string(i), "c")));
    apply(list->append_violation("/v"));
    Entry elsewhere = file_entry("/other-pcr", "z");
    elsewhere.pcr = 11;
    apply(list->append(elsewhere));
    apply(list->append(file_entry("/f0", "c")));  // duplicate: not extended
    EXPECT_EQ(list->count(), 53u);
  }
  auto list = MeasurementList::open(dir.path(), test_config());
  ASSERT_TRUE(list);
  EXPECT_EQ(list->count(), 53u);
  EXPECT_EQ(list->violations(), 1u);
  auto ind = independent_replay(testing::read_file(list->path()), 10);
  EXPECT_EQ(ind.entries, 53u);
  EXPECT_EQ(pcr1, *Digest::from_bytes(HashAlgo::kSha1, ind.sha1));
  EXPECT_EQ(pcr256, *Digest::from_bytes(HashAlgo::kSha256, ind.sha256));
  EXPECT_EQ(*list->replay(10, HashAlgo::kSha1, list->count()), pcr1);
  EXPECT_EQ(*list->replay(10, HashAlgo::kSha256, UINT64_MAX), pcr256);
  EXPECT_EQ(*list->replay(10, HashAlgo::kSha256, 0), Digest(HashAlgo::kSha256));
  // PCR 11 holds one entry.
  auto p11 = list->replay(11, HashAlgo::kSha256, UINT64_MAX);
  ASSERT_TRUE(p11);
  EXPECT_FALSE(p11->is_zero());

  // Crash recovery: which prefix does a PCR value cover?
  auto after10 = *list->replay(10, HashAlgo::kSha256, 10);
  EXPECT_EQ(*list->extended_prefix(10, HashAlgo::kSha256, after10), 10u);
  EXPECT_EQ(*list->extended_prefix(10, HashAlgo::kSha256, pcr256), 53u);
  // Entry 51 (the violation) targets PCR 10, so the value after 51 entries is matched at 51.
  auto after51 = *list->replay(10, HashAlgo::kSha256, 51);
  EXPECT_EQ(*list->extended_prefix(10, HashAlgo::kSha256, after51), 51u);
  // Entry 52 targets PCR 11: the PCR-10 value after 52 entries still holds after 53, so the
  // largest matching prefix is the whole list (nothing left to extend into PCR 10).
  auto after52 = *list->replay(10, HashAlgo::kSha256, 52);
  EXPECT_EQ(after52, pcr256);
  EXPECT_EQ(*list->extended_prefix(10, HashAlgo::kSha256, after52), 53u);
  EXPECT_FALSE(*list->extended_prefix(10, HashAlgo::kSha256, Digest::filled(HashAlgo::kSha256, 1)));
}

TEST(MeasurementList, TornRecordIsTruncatedOnOpenWithAWarning) {
  TempDir dir;
  uint64_t good_size = 0;
  {
    auto list = MeasurementList::open(dir.path(), test_config());
    ASSERT_TRUE(list);
    ASSERT_TRUE(list->append_boot_aggregate({}));
    ASSERT_TRUE(list->append(file_entry("/a", "a")));
    good_size = list->size_bytes();
    ASSERT_TRUE(list->append(file_entry("/b", "b")));
  }
  auto path = dir / "binary_runtime_measurements";
  const auto full = std::filesystem::file_size(path);
  std::filesystem::resize_file(path, full - 10);  // crash in the middle of the third record

  LogCapture log;
  auto list = MeasurementList::open(dir.path(), test_config());
  ASSERT_TRUE(list) << list.error().to_string();
  EXPECT_EQ(list->count(), 2u);
  EXPECT_EQ(list->size_bytes(), good_size);
  EXPECT_EQ(std::filesystem::file_size(path), good_size);
  EXPECT_NE(log.text().find("torn record at offset " + std::to_string(good_size)),
            std::string::npos)
      << log.text();
  EXPECT_NE(log.text().find("truncating to 2 entries"), std::string::npos) << log.text();
  // The list is usable and the lost entry can be appended again.
  auto b = list->append(file_entry("/b", "b"));
  ASSERT_TRUE(b);
  EXPECT_TRUE(b->added);
  EXPECT_EQ(b->index, 2u);
}

TEST(MeasurementList, ZeroFilledTailIsTornButOtherDamageIsRefused) {
  TempDir dir;
  auto path = dir / "binary_runtime_measurements";
  {
    auto list = MeasurementList::open(dir.path(), test_config());
    ASSERT_TRUE(list);
    ASSERT_TRUE(list->append(file_entry("/a", "a")));
    ASSERT_TRUE(list->append(file_entry("/b", "b")));
  }
  const std::string good = testing::read_file(path);
  // Blocks allocated but never written (power loss on some filesystems): truncated.
  testing::write_file(path, good + std::string(4096, '\0'));
  {
    auto list = MeasurementList::open(dir.path(), test_config());
    ASSERT_TRUE(list) << list.error().to_string();
    EXPECT_EQ(list->count(), 2u);
    EXPECT_EQ(std::filesystem::file_size(path), good.size());
  }
  // A flipped byte in the first record's path: its digest no longer matches. Refused, named,
  // and the file is left as it was.
  std::string bad = good;
  bad[good.find("/a")] = '/';
  bad[good.find("/a") + 1] = 'x';
  testing::write_file(path, bad);
  auto list = MeasurementList::open(dir.path(), test_config());
  ASSERT_FALSE(list);
  EXPECT_EQ(list.error().code, EBADMSG);
  EXPECT_NE(list.error().where.find("offset 0"), std::string::npos) << list.error().to_string();
  EXPECT_EQ(testing::read_file(path), bad);
  // Garbage (non-zero) after the last record is corruption too.
  testing::write_file(path, good + std::string(40, 'G'));
  auto g = MeasurementList::open(dir.path(), test_config());
  ASSERT_FALSE(g);
  EXPECT_EQ(g.error().code, EBADMSG);
}

// A record whose template digest matches its data, but whose d-ng field lacks the "<algo>:" NUL
// prefix, cannot be rendered: it is refused at open like any other damage, instead of opening a
// list that `nsimactl log` can then never show. (Found by fuzz.list.)
TEST(MeasurementList, RecordThatCannotBeRenderedIsRefusedAtOpen) {
  TempDir dir;
  auto path = dir / "binary_runtime_measurements";
  {
    auto list = MeasurementList::open(dir.path(), test_config());
    ASSERT_TRUE(list);
    ASSERT_TRUE(list->append(file_entry("/a", "a")));
  }
  std::string bad = testing::read_file(path);
  const size_t data_at = 4 + 20 + 4 + 6 + 4;  // pcr, digest, name length, "ima-ng", data length
  ASSERT_EQ(bad.compare(data_at + 4, 7, "sha256:"), 0);
  bad[data_at + 4 + 6] = 'X';  // "sha256X" NUL digest
  auto sha1 = evp("sha1", bad.substr(data_at));
  std::copy(sha1.begin(), sha1.end(), bad.begin() + 4);
  testing::write_file(path, bad);
  auto list = MeasurementList::open(dir.path(), test_config());
  ASSERT_FALSE(list) << "opened a list whose record cannot be rendered";
  EXPECT_EQ(list.error().code, EBADMSG);
  EXPECT_NE(list.error().where.find("offset 0"), std::string::npos) << list.error().to_string();
  EXPECT_EQ(testing::read_file(path), bad);
}

TEST(MeasurementList, OneWriterAtATime) {
  TempDir dir;
  auto a = MeasurementList::open(dir.path(), test_config());
  ASSERT_TRUE(a);
  auto b = MeasurementList::open(dir.path(), test_config());
  ASSERT_FALSE(b);
  EXPECT_EQ(b.error().code, EBUSY);
  ASSERT_TRUE(a->close());
  EXPECT_EQ(a->append(file_entry("/a", "a")).error().code, EBADF);
  EXPECT_TRUE(MeasurementList::open(dir.path(), test_config()));
}

TEST(MeasurementList, ConfigurationAndTemplateMixingErrors) {
  TempDir dir;
  ListConfig c = test_config();
  c.default_template = TemplateKind::kIma;  // needs sha1
  EXPECT_EQ(MeasurementList::open(dir.path(), c).error().code, EINVAL);
  c = test_config();
  c.hash_algo = HashAlgo::kStreebog256;
  EXPECT_EQ(MeasurementList::open(dir.path(), c).error().code, EINVAL);
  EXPECT_FALSE(MeasurementList::open(dir / "missing", test_config()));

  auto list = MeasurementList::open(dir.path(), test_config());
  ASSERT_TRUE(list);
  ASSERT_TRUE(list->append(file_entry("/a", "a")));
  Entry legacy;
  legacy.tmpl = TemplateKind::kIma;
  legacy.digest = *hash_bytes(HashAlgo::kSha1, testing::bytes_of("a"));
  legacy.name = "/a";
  auto r = list->append(legacy);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, EINVAL);
  EXPECT_EQ(list->count(), 1u);
}

TEST(MeasurementList, ShortWriteIsRolledBack) {
  TempDir dir;
  auto list = MeasurementList::open(dir.path(), test_config());
  ASSERT_TRUE(list);
  ASSERT_TRUE(list->append(file_entry("/a", "a")));
  const uint64_t size = list->size_bytes();

  // A file-size limit 30 bytes past the end makes the next write(2) come back short (the same
  // path as a full disk), and SIG_IGN turns SIGXFSZ into EFBIG for later writes.
  struct rlimit old {};
  ASSERT_EQ(::getrlimit(RLIMIT_FSIZE, &old), 0);
  auto old_handler = ::signal(SIGXFSZ, SIG_IGN);
  struct rlimit lim = old;
  lim.rlim_cur = size + 30;
  ASSERT_EQ(::setrlimit(RLIMIT_FSIZE, &lim), 0);
  auto r = list->append(file_entry("/b-with-a-longer-name", "b"));
  ::setrlimit(RLIMIT_FSIZE, &old);
  ::signal(SIGXFSZ, old_handler);

  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message.find("short write"), std::string::npos) << r.error().to_string();
  EXPECT_EQ(std::filesystem::file_size(dir / "binary_runtime_measurements"), size);
  EXPECT_EQ(list->count(), 1u);
  // Nothing half-written remains: the next append and a reopen both work.
  ASSERT_TRUE(list->append(file_entry("/b-with-a-longer-name", "b")));
  ASSERT_TRUE(list->close());
  auto again = MeasurementList::open(dir.path(), test_config());
  ASSERT_TRUE(again) << again.error().to_string();
  EXPECT_EQ(again->count(), 2u);
}

// Entry `i` of the killed-writer test: large (4 KiB to 1 MiB of path), so that one record's
// write(2) copies hundreds of pages and a SIGKILL can land inside it (the kernel stops copying
// at the next page once a fatal signal is pending, leaving half a record in the file).
Entry big_entry(uint64_t i) {
  size_t len = 4096 * (1 + (i * 7919) % 256);
  std::string name = "/f" + std::to_string(i) + "-";
  name.resize(len, static_cast<char>('a' + i % 26));
  return file_entry(name, "content " + std::to_string(i));
}

// A writer is SIGKILLed at random moments while it appends in a loop, often in the middle of a
// record's write(2). After each kill the list reopens as an exact prefix of what the writer
// appended: every append that returned is there, at most the one in flight besides, every record
// byte-identical to an undisturbed writer's, and a torn tail is truncated (with its warning) so
// the next append starts on a record boundary. The test insists on having seen both kinds of
// kill (inside a write, and between writes) so that it cannot pass without exercising recovery.
TEST(MeasurementList, WriterKilledMidAppendLeavesAValidPrefix) {
  // The undisturbed writer: the same entries, appended by this process. ref_end[i] is the file
  // size after entry i.
  TempDir ref_dir;
  ListConfig c = test_config();
  c.sync_every = 0;  // never fdatasync: only the write(2) guarantee is tested
  c.sync_interval = std::chrono::milliseconds(0);
  auto ref = MeasurementList::open(ref_dir.path(), c);
  ASSERT_TRUE(ref) << ref.error().to_string();
  std::vector<uint64_t> ref_end;
  std::string ref_bytes;
  auto ref_prefix = [&](uint64_t n) -> std::string {
    while (ref_end.size() < n) {
      auto r = ref->append(big_entry(ref_end.size()));
      EXPECT_TRUE(r && r->added);
      ref_end.push_back(ref->size_bytes());
    }
    if (ref_bytes.size() < (n ? ref_end[n - 1] : 0)) ref_bytes = testing::read_file(ref->path());
    return ref_bytes.substr(0, n ? ref_end[n - 1] : 0);
  };

  const unsigned seed = std::random_device{}();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  int torn_kills = 0, clean_kills = 0, rounds = 0;
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while ((torn_kills < 3 || clean_kills < 3) && std::chrono::steady_clock::now() < deadline) {
    ++rounds;
    TempDir dir;
    int acks[2];
    ASSERT_EQ(::pipe(acks), 0);
    pid_t child = ::fork();
    ASSERT_GE(child, 0);
    if (child == 0) {
      ::close(acks[0]);
      auto list = MeasurementList::open(dir.path(), c);
      if (!list) ::_exit(2);
      uint32_t ready = UINT32_MAX;
      if (::write(acks[1], &ready, 4) != 4) ::_exit(3);
      for (uint32_t i = 0; i < 10000; ++i) {
        if (!list->append(big_entry(i))) ::_exit(4);
        if (::write(acks[1], &i, 4) != 4) ::_exit(5);  // "append i returned"
      }
      ::pause();
      ::_exit(6);
    }
    ::close(acks[1]);
    uint32_t first = 0;
    ASSERT_EQ(::read(acks[0], &first, 4), 4);
    ASSERT_EQ(first, UINT32_MAX);
    std::this_thread::sleep_for(std::chrono::microseconds(rng() % 40000));
    ::kill(child, SIGKILL);
    int status = 0;
    ASSERT_EQ(::waitpid(child, &status, 0), child);
    ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL)
        << "writer ended by itself (status " << status << ")";
    uint64_t acked = 0;
    for (uint32_t v; ::read(acks[0], &v, 4) == 4;) {
      ASSERT_EQ(v, acked) << "acks out of order";
      ++acked;
    }
    ::close(acks[0]);

    const auto path = dir / "binary_runtime_measurements";
    const uint64_t raw_size = std::filesystem::file_size(path);
    LogCapture log;
    auto list = MeasurementList::open(dir.path(), c);
    ASSERT_TRUE(list) << "round " << rounds << ": " << list.error().to_string();
    const uint64_t n = list->count();
    // Nothing that was acknowledged is lost; at most the append in flight is there besides.
    ASSERT_GE(n, acked) << "round " << rounds;
    ASSERT_LE(n, acked + 1) << "round " << rounds;
    // Exactly the undisturbed writer's first n records, byte for byte, and nothing after them.
    const std::string want = ref_prefix(n);
    const std::string got = testing::read_file(path);
    ASSERT_EQ(got.size(), want.size()) << "round " << rounds << ": " << n << " entries";
    ASSERT_TRUE(got == want) << "round " << rounds << ": records differ";
    EXPECT_EQ(list->size_bytes(), want.size());
    EXPECT_EQ(independent_replay(got, 10).entries, n);
    uint64_t seen = 0;
    ASSERT_TRUE(list->for_each(0, [&](uint64_t i, const Record& r) -> Result<void> {
      EXPECT_EQ(i, seen++);
      EXPECT_EQ(r.template_name, "ima-ng");
      return {};
    }));
    EXPECT_EQ(seen, n);
    if (raw_size > want.size()) {  // the kill tore a record: open() cut it off and said so
      ++torn_kills;
      EXPECT_NE(log.text().find("torn record at offset " + std::to_string(want.size())),
                std::string::npos)
          << log.text();
    } else {
      ++clean_kills;
      EXPECT_EQ(log.text().find("torn record"), std::string::npos) << log.text();
    }
    // The list goes on from a record boundary.
    auto next = list->append(big_entry(n));
    ASSERT_TRUE(next) << next.error().to_string();
    EXPECT_EQ(next->index, n);
    ASSERT_TRUE(list->close());
    ASSERT_TRUE(testing::read_file(path) == ref_prefix(n + 1)) << "round " << rounds;
  }
  EXPECT_GE(torn_kills, 3) << "only " << torn_kills << " of " << rounds
                           << " kills landed inside a record's write(2)";
  EXPECT_GE(clean_kills, 3) << "only " << clean_kills << " of " << rounds
                            << " kills landed between records";
  std::printf("killed-writer: %d rounds, %d torn records truncated, %d kills between records\n",
              rounds, torn_kills, clean_kills);
}

TEST(MeasurementList, ConcurrentAppendersKeepTheFileConsistent) {
  TempDir dir;
  auto list = MeasurementList::open(dir.path(), test_config());
  ASSERT_TRUE(list);
  std::vector<std::thread> threads;
  std::atomic<int> added{0}, dups{0};
  for (int t = 0; t < 4; ++t)
    threads.emplace_back([&, t] {
      for (int i = 0; i < 500; ++i) {
        // Half the names are shared by all threads: exactly one of each is added.
        std::string name = (i % 2) ? "/shared" + std::to_string(i)
                                   : "/t" + std::to_string(t) + "-" + std::to_string(i);
        auto r = list->append(file_entry(name, "x"));
        ASSERT_TRUE(r);
        (r->added ? added : dups)++;
      }
    });
  for (auto& th : threads) th.join();
  EXPECT_EQ(added.load(), 4 * 250 + 250);
  EXPECT_EQ(dups.load(), 3 * 250);
  EXPECT_EQ(list->count(), static_cast<uint64_t>(added.load()));
  ASSERT_TRUE(list->close());
  auto again = MeasurementList::open(dir.path(), test_config());
  ASSERT_TRUE(again) << again.error().to_string();
  EXPECT_EQ(again->count(), static_cast<uint64_t>(added.load()));
}

TEST(MeasurementList, RenderersForEachAndFollow) {
  TempDir dir;
  auto list = MeasurementList::open(dir.path(), test_config());
  ASSERT_TRUE(list);
  ASSERT_TRUE(list->append_boot_aggregate({}));
  for (int i = 0; i < 2500; ++i)
    ASSERT_TRUE(list->append(file_entry("/f" + std::to_string(i), "x")));
  ASSERT_TRUE(list->append_violation("/v"));

  // Binary (sha1) rendering is the file itself.
  std::ostringstream bin;
  ASSERT_TRUE(list->render_binary(bin));
  EXPECT_EQ(bin.str(), testing::read_file(list->path()));

  // Ascii and the sha256 variants agree with the per-record functions, line by line.
  std::ostringstream ascii, ascii256, bin256;
  ASSERT_TRUE(list->render_ascii(ascii));
  ASSERT_TRUE(list->render_ascii(ascii256, HashAlgo::kSha256));
  ASSERT_TRUE(list->render_binary(bin256, HashAlgo::kSha256));
  std::string want, want256, wantbin256;
  ASSERT_TRUE(list->for_each(0, [&](uint64_t, const Record& r) -> Result<void> {
    EXPECT_TRUE(append_ascii(r, HashAlgo::kSha1, want));
    EXPECT_TRUE(append_ascii(r, HashAlgo::kSha256, want256));
    EXPECT_TRUE(append_binary(r, HashAlgo::kSha256, wantbin256));
    return {};
  }));
  EXPECT_EQ(ascii.str(), want);
  EXPECT_EQ(ascii256.str(), want256);
  EXPECT_EQ(bin256.str(), wantbin256);
  EXPECT_EQ(std::count(want.begin(), want.end(), '\n'), 2502);
  EXPECT_TRUE(want.ends_with(" ima-ng sha256:" + std::string(64, '0') + " /v\n"));  // violation

  // for_each from an index beyond a checkpoint yields exactly the tail.
  uint64_t first = 0, n = 0;
  ASSERT_TRUE(list->for_each(2100, [&](uint64_t i, const Record&) -> Result<void> {
    if (n++ == 0) first = i;
    return {};
  }));
  EXPECT_EQ(first, 2100u);
  EXPECT_EQ(n, 402u);

  // Follow: read_at never returns past the committed end and picks up new records.
  std::vector<uint8_t> buf(1 << 16);
  uint64_t off = 0;
  std::string followed;
  for (;;) {
    auto got = list->read_at(off, buf);
    ASSERT_TRUE(got);
    if (*got == 0) break;
    followed.append(buf.begin(), buf.begin() + static_cast<long>(*got));
    off += *got;
  }
  EXPECT_EQ(followed, bin.str());
  ASSERT_TRUE(list->append(file_entry("/late", "x")));
  auto got = list->read_at(off, buf);
  ASSERT_TRUE(got);
  EXPECT_EQ(off + *got, list->size_bytes());
}

}  // namespace
}  // namespace nsima::measure
