#include "twotower/core/text.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "testing/temp_dir.h"
#include "twotower/core/error.h"

namespace twotower {
namespace {

using testing::TempDir;

std::vector<std::pair<int64_t, std::string>> ReadAll(const std::string& path) {
  TextLineReader r(path);
  std::vector<std::pair<int64_t, std::string>> out;
  std::string line;
  while (r.Next(&line)) out.emplace_back(r.line(), line);
  return out;
}

// Issue 12, fault 3: the same lines, written the ways real files come, read the same.
TEST(TextLineReaderTest, TheSameLinesHoweverTheFileWasWritten) {
  const std::vector<std::pair<int64_t, std::string>> expected = {
      {1, "id,name"}, {2, "1,a b"}, {3, "2,c"}};
  const char* variants[] = {
      "id,name\n1,a b\n2,c\n",                // LF
      "id,name\r\n1,a b\r\n2,c\r\n",          // CR LF
      "id,name\r1,a b\r2,c\r",                // lone CR (classic Mac)
      "\xEF\xBB\xBFid,name\n1,a b\n2,c",      // byte-order mark, no final line end
      "id,name  \n1,a b\t\n2,c \r\n",         // trailing blanks
      "id,name\n1,a b\n2,c\n\n\r\n  \n",      // blank lines at the end
      "\xEF\xBB\xBFid,name\r\n1,a b\r2,c\n",  // all mixed
  };
  TempDir dir;
  for (const char* text : variants) {
    EXPECT_EQ(ReadAll(dir.Write("t.txt", text)), expected) << ::testing::PrintToString(text);
  }
  // Blank lines inside are skipped, and counted: messages keep naming the physical line.
  const std::vector<std::pair<int64_t, std::string>> gaps = {{2, "a"}, {5, "b"}};
  EXPECT_EQ(ReadAll(dir.Write("g.txt", "\na\n\r\n \nb\n")), gaps);
  // A byte-order mark only counts at the very start; leading blanks are data.
  EXPECT_EQ(ReadAll(dir.Write("m.txt", "x\n\xEF\xBB\xBFy\n  z\n"))[1].second, "\xEF\xBB\xBFy");
  EXPECT_EQ(ReadAll(dir.Write("m.txt", "x\n\xEF\xBB\xBFy\n  z\n"))[2].second, "  z");
}

// For tab-separated rows a trailing tab ends an empty field: kept; trailing spaces still go, and
// a line of blanks only is still blank.
TEST(TextLineReaderTest, KeepTabsKeepsTrailingTabsOnly) {
  TempDir dir;
  TextLineReader r(dir.Write("t.tsv", "a\tb\t\t\n\t \t\nc\t \n"),
                   TextLineReader::Blanks::kKeepTabs);
  std::string line;
  ASSERT_TRUE(r.Next(&line));
  EXPECT_EQ(line, "a\tb\t\t");
  ASSERT_TRUE(r.Next(&line));
  EXPECT_EQ(line, "c\t");
  EXPECT_EQ(r.line(), 3);
  EXPECT_FALSE(r.Next(&line));
}

TEST(TextLineReaderTest, MissingFilesAndDirectoriesAreNamed) {
  TempDir dir;
  EXPECT_THAT([&] { TextLineReader r(dir.File("none.txt")); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("none.txt: cannot open")));
  EXPECT_THAT([&] { TextLineReader r(dir.File("")); },
              ::testing::ThrowsMessage<Error>(::testing::HasSubstr("is a directory")));
}

}  // namespace
}  // namespace twotower
