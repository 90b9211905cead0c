#include "twotower/core/json.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>

#include "twotower/core/error.h"

namespace twotower {
namespace {

std::string ErrorOf(const std::string& text) {
  try {
    ParseJsonStrict(text, "f.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(ParseJsonStrictTest, ParsesWhatRfc8259Allows) {
  const nlohmann::json j = ParseJsonStrict(R"({"a": [1, {"b": 2}, {"b": 3}], "c": {"b": 4}})", "x");
  EXPECT_EQ(j["a"][2]["b"], 3);  // the same key in sibling objects is fine
  EXPECT_EQ(j["c"]["b"], 4);
}

TEST(ParseJsonStrictTest, RefusesAKeyGivenTwiceAtAnyDepth) {
  EXPECT_EQ(ErrorOf(R"({"a": 1, "a": 2})"),
            "f.json: duplicate key \"a\" in the top-level object (a key may appear once per "
            "object)");
  EXPECT_EQ(ErrorOf(R"({"x": {"y": [0, {"k": 1, "k": 1}]}})"),
            "f.json: duplicate key \"k\" in the object at /x/y/* (a key may appear once per "
            "object)");
}

TEST(ParseJsonStrictTest, InvalidJsonNamesLineAndColumn) {
  EXPECT_THAT(ErrorOf("{\n  \"a\": @\n}"),
              ::testing::StartsWith("f.json: invalid JSON: parse error at line 2, column"));
}

}  // namespace
}  // namespace twotower
