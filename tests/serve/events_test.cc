// The feedback event log: what a start reads back, keeps, repairs and cuts, checked against the
// file's bytes read here line by line.
#include "twotower/serve/events.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "testing/cli_runner.h"
#include "testing/temp_dir.h"
#include "twotower/core/error.h"

namespace twotower::serve {
namespace {

using ::testing::HasSubstr;
using twotower::testing::Lines;
using twotower::testing::ReadBytes;
using twotower::testing::TempDir;

std::string EventLine(const std::string& user, const std::string& event) {
  return "{\"event\":\"" + event + "\",\"item_id\":\"5\",\"ts_ms\":1,\"user_id\":\"" + user +
         "\",\"variant\":\"a\"}";
}

std::vector<std::string> UsersReplayed(const std::string& path, ReadReport* report) {
  std::vector<std::string> users;
  EventLog log(path, [&](const Event& e) { users.push_back(e.user_id); });
  *report = log.replayed();
  return users;
}

// A server that fails to start (its port taken) must not leave an empty log it created; a log
// that was there before, or one with events, stays.
TEST(EventLogTest, AnUnusedLogItCreatedIsDiscardedAndAnyOtherKept) {
  TempDir dir;
  const std::string fresh = dir.File("fresh.jsonl");
  {
    EventLog log(fresh, [](const Event&) {});
    ASSERT_TRUE(std::filesystem::exists(fresh));
    log.DiscardIfUnused();
  }
  EXPECT_FALSE(std::filesystem::exists(fresh));
  const std::string used = dir.File("used.jsonl");
  {
    EventLog log(used, [](const Event&) {});
    log.Append({1, "u1", "5", "like", "a", {}});
    log.DiscardIfUnused();
  }
  EXPECT_EQ(Lines(ReadBytes(used)).size(), 1u);
  const std::string empty = dir.Write("empty.jsonl", "");
  {
    EventLog log(empty, [](const Event&) {});
    log.DiscardIfUnused();
  }
  EXPECT_TRUE(std::filesystem::exists(empty));
}

// Two servers on one log would interleave their events and cut each other's lines at start: the
// second open is refused while the first holds the file, and works once it is closed.
TEST(EventLogTest, ASecondWriterIsRefusedWhileTheFirstHoldsTheLog) {
  TempDir dir;
  const std::string path = dir.File("events.jsonl");
  {
    EventLog first(path, [](const Event&) {});
    first.Append({1, "u1", "5", "like", "a", {}});
    try {
      EventLog second(path, [](const Event&) {});
      FAIL() << "a second writer opened the log";
    } catch (const Error& e) {
      EXPECT_EQ(e.code(), ErrorCode::kConflict);
      EXPECT_THAT(e.what(), HasSubstr("events.jsonl: the events log is in use by another process"));
    }
    first.Append({2, "u2", "5", "like", "a", {}});
  }
  ReadReport report;
  EXPECT_EQ(UsersReplayed(path, &report), (std::vector<std::string>{"u1", "u2"}));
  EXPECT_EQ(Lines(ReadBytes(path)).size(), 2u);
}

TEST(EventLogTest, AWholeLastEventWithoutItsNewlineIsKeptAndItsLineEnded) {
  TempDir dir;
  const std::string path =
      dir.Write("events.jsonl", EventLine("1", "impression") + "\n" + EventLine("2", "click") +
                                    "\n" + EventLine("3", "like"));  // no final newline
  ReadReport report;
  EXPECT_EQ(UsersReplayed(path, &report), (std::vector<std::string>{"1", "2", "3"}));
  EXPECT_EQ(report.events, 3);
  EXPECT_TRUE(report.unterminated);
  EXPECT_EQ(report.torn_bytes, 0);
  EXPECT_THAT(report.Describe(path, true), HasSubstr("3 events read"));
  EXPECT_THAT(report.Describe(path, true), HasSubstr("newline added"));
  // The file now ends the third line; an event appended after it is a line of its own.
  {
    EventLog log(path, [](const Event&) {});
    Event e;
    e.user_id = "4";
    e.item_id = "5";
    e.event = "click";
    e.variant = "a";
    log.Append(e);
  }
  const std::vector<std::string> lines = Lines(ReadBytes(path));
  ASSERT_EQ(lines.size(), 4u);
  EXPECT_EQ(lines[2], EventLine("3", "like"));
  EXPECT_THAT(lines[3], HasSubstr("\"user_id\":\"4\""));
  EXPECT_EQ(ReadBytes(path).back(), '\n');
  EXPECT_EQ(UsersReplayed(path, &report), (std::vector<std::string>{"1", "2", "3", "4"}));
}

TEST(EventLogTest, ATornLastLineIsCutAndSaidSo) {
  TempDir dir;
  const std::string whole = EventLine("1", "impression") + "\n";
  const std::string torn = "{\"event\":\"cli";
  const std::string path = dir.Write("events.jsonl", whole + torn);
  // Reading only changes nothing.
  const ReadReport read = ReadEvents(path, [](const Event&) {});
  EXPECT_EQ(read.events, 1);
  EXPECT_EQ(read.torn_bytes, static_cast<int64_t>(torn.size()));
  EXPECT_EQ(ReadBytes(path), whole + torn);
  ReadReport report;
  EXPECT_EQ(UsersReplayed(path, &report), (std::vector<std::string>{"1"}));
  EXPECT_EQ(report.torn_bytes, static_cast<int64_t>(torn.size()));
  EXPECT_THAT(report.Describe(path, true),
              HasSubstr("a torn last line of " + std::to_string(torn.size()) + " bytes"));
  EXPECT_EQ(ReadBytes(path), whole);
}

TEST(EventLogTest, AMalformedLineBeforeTheLastIsRefusedNamingIt) {
  TempDir dir;
  const std::string path = dir.Write(
      "events.jsonl", EventLine("1", "impression") + "\n{oops}\n" + EventLine("2", "click") + "\n");
  try {
    ReadEvents(path, [](const Event&) {});
    ADD_FAILURE() << "a malformed line was read";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), HasSubstr(path + ":2"));
    EXPECT_EQ(e.code(), ErrorCode::kCorruptData);
  }
}

}  // namespace
}  // namespace twotower::serve
