// SPDX-License-Identifier: Apache-2.0
// The intake journal: records stay until acked, a restart (a second journal on the same
// directory, as after SIGKILL) replays them, fully acked segments disappear, a clean exit leaves
// nothing to replay.
#include "capture/journal.h"

#include <unistd.h>

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace nsima::capture {
namespace {

namespace fs = std::filesystem;

class JournalTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/nsima-journal-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }
  std::unique_ptr<Journal> open() {
    auto j = Journal::open(dir_ + "/j");
    EXPECT_TRUE(j) << j.error().to_string();
    return j ? std::move(*j) : nullptr;
  }
  std::vector<std::string> replay(Journal& j) {
    std::vector<std::string> out;
    auto n = j.replay_previous([&](const uint8_t* d, size_t n) {
      out.emplace_back(reinterpret_cast<const char*>(d), n);
    });
    EXPECT_TRUE(n);
    return out;
  }
  // nsimad SIGKILLed: the journal's destructor never runs. The object stays reachable (not
  // leaked: LeakSanitizer runs these tests) until the process ends.
  static void kill_without_destructor(std::unique_ptr<Journal> j) {
    static auto* killed = new std::vector<std::unique_ptr<Journal>>;
    killed->push_back(std::move(j));
  }
  size_t files() {
    size_t n = 0;
    for (auto& e : fs::directory_iterator(dir_ + "/j")) n += e.is_regular_file();
    return n;
  }
  std::string dir_;
};

TEST_F(JournalTest, UnackedRecordsAreReplayedAfterACrash) {
  auto j = open();
  j->append(1, "one", 3);
  j->append(2, "two", 3);
  j->append(3, "three", 5);
  j->ack(1);
  j->ack(3);
  // nsimad is SIGKILLed: the journal object never closes; the next nsimad opens the directory
  auto next = open();
  auto got = replay(*next);
  ASSERT_FALSE(got.empty());
  EXPECT_NE(std::find(got.begin(), got.end(), "two"), got.end()) << "the unacked record is lost";
  // replayed records were handed on: the old segments are gone
  auto again = open();
  EXPECT_TRUE(replay(*again).empty());
  kill_without_destructor(std::move(j));
}

TEST_F(JournalTest, AckedSegmentsAreDeletedAndACleanExitLeavesNothing) {
  {
    auto j = open();
    std::string rec(4000, 'x');
    uint64_t seq = 0;
    while (j->stats().segments < 3) j->append(++seq, rec.data(), rec.size());
    EXPECT_GE(files(), 3u);
    for (uint64_t s = 1; s <= seq; ++s) j->ack(s);
    EXPECT_EQ(j->stats().unacked, 0u);
    EXPECT_EQ(files(), 1u) << "closed segments whose records are all acked must be deleted";
  }
  EXPECT_EQ(files(), 0u);
  auto next = open();
  EXPECT_TRUE(replay(*next).empty());
}

TEST_F(JournalTest, TornTailIsSkipped) {
  {
    auto j = open();
    j->append(1, "whole", 5);
    kill_without_destructor(std::move(j));
  }
  for (auto& e : fs::directory_iterator(dir_ + "/j")) {
    FILE* f = fopen(e.path().c_str(), "ab");
    uint32_t size = 100;
    fwrite(&size, sizeof size, 1, f);  // a header without its record
    fclose(f);
  }
  auto next = open();
  auto got = replay(*next);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0], "whole");
}

}  // namespace
}  // namespace nsima::capture
