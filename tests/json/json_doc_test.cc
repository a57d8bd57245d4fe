#include "json/json_doc.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

namespace switchyard::json {
namespace {

using ::testing::HasSubstr;
using ::testing::Optional;

std::string ReadPayload(const std::string& name) {
  std::ifstream in(std::filesystem::path(SWITCHYARD_PAYLOADS_DIR) / name, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Nested(int depth) { return std::string(depth, '[') + "1" + std::string(depth, ']'); }

TEST(JsonDocTest, LooksUpObjectKeysAndArrayIndexes) {
  JsonDoc doc;
  ASSERT_TRUE(doc.Parse(R"({"a":{"b":[10,["x","y"]]}})").ok());
  EXPECT_THAT(doc.GetText({"a", "b", "0"}), Optional(std::string("10")));
  EXPECT_THAT(doc.GetText({"a", "b", "1", "1"}), Optional(std::string("y")));
  EXPECT_THAT(doc.GetString({"a", "b", "1", "0"}), Optional(std::string_view("x")));
  std::vector<std::string> path = {"a", "b", "1"};
  EXPECT_THAT(doc.GetJson(path), Optional(std::string(R"(["x","y"])")));
}

TEST(JsonDocTest, MissingPathsReportMissing) {
  JsonDoc doc;
  ASSERT_TRUE(doc.Parse(R"({"a":{"b":[10]},"s":"str"})").ok());
  EXPECT_EQ(doc.GetText({"a", "c"}), std::nullopt);
  EXPECT_EQ(doc.GetText({"a", "b", "1"}), std::nullopt);   // out of range
  EXPECT_EQ(doc.GetText({"a", "b", "x"}), std::nullopt);   // not an index
  EXPECT_EQ(doc.GetText({"a", "b", "-1"}), std::nullopt);  // no sign
  EXPECT_EQ(doc.GetText({"a", "b", "00"}), std::nullopt);  // not canonical
  EXPECT_EQ(doc.GetText({"s", "0"}), std::nullopt);        // below a scalar
  EXPECT_FALSE(doc.Has({"a", "c"}));
  EXPECT_TRUE(doc.Has({"a", "b", "0"}));
}

TEST(JsonDocTest, ScalarsReadAsJsonText) {
  JsonDoc doc;
  ASSERT_TRUE(doc.Parse(R"({"i":1,"neg":-42,"big":18446744073709551615,"f":1.5,"t":true,
                            "n":null,"e":"","o":{ "k" : [ 1 , 2 ] }})")
                  .ok());
  EXPECT_THAT(doc.GetText({"i"}), Optional(std::string("1")));
  EXPECT_THAT(doc.GetText({"neg"}), Optional(std::string("-42")));
  EXPECT_THAT(doc.GetText({"big"}), Optional(std::string("18446744073709551615")));
  EXPECT_THAT(doc.GetText({"f"}), Optional(std::string("1.5")));
  EXPECT_THAT(doc.GetText({"t"}), Optional(std::string("true")));
  EXPECT_THAT(doc.GetText({"n"}), Optional(std::string("null")));
  EXPECT_THAT(doc.GetText({"e"}), Optional(std::string("")));
  EXPECT_THAT(doc.GetText({"o"}), Optional(std::string(R"({"k":[1,2]})")));
  EXPECT_TRUE(doc.Has({"n"}));
  EXPECT_EQ(doc.GetString({"i"}), std::nullopt);  // GetString is for strings only
  EXPECT_EQ(doc.GetString({"n"}), std::nullopt);
}

TEST(JsonDocTest, StringsAreUnescapedAsTextAndEscapedAsJson) {
  JsonDoc doc;
  ASSERT_TRUE(doc.Parse(R"({"s":"a\"b\\c\n\u00e9\ud83d\ude00"})").ok());
  EXPECT_THAT(doc.GetText({"s"}), Optional(std::string("a\"b\\c\n\xC3\xA9\xF0\x9F\x98\x80")));
  EXPECT_THAT(doc.GetJson({"s"}),
              Optional(std::string("\"a\\\"b\\\\c\\n\xC3\xA9\xF0\x9F\x98\x80\"")));
}

TEST(JsonDocTest, EmptyPathNamesTheRoot) {
  JsonDoc doc;
  ASSERT_TRUE(doc.Parse(" [1, \"x\"] ").ok());
  EXPECT_THAT(doc.GetText({}), Optional(std::string(R"([1,"x"])")));
  ASSERT_TRUE(doc.Parse("\"only\"").ok());
  EXPECT_THAT(doc.GetString({}), Optional(std::string_view("only")));
}

TEST(JsonDocTest, RejectsMalformedJsonWithShortMessages) {
  JsonDoc doc;
  const std::vector<std::string> bad = {
      "",           "   ",       "{",          R"({"a":1,})", "[1] x", "[1] [2]",
      R"({"a" 1})", "tru",       "nul",        "01",          "1.",    R"("unterminated)",
      "{'a':1}",    R"(["\x"])", "[\"a\tb\"]", "NaN",         "1e400", "123456789012345678901234",
  };
  for (const std::string& input : bad) {
    Status st = doc.Parse(input);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << input;
    EXPECT_THAT(st.message(), HasSubstr("invalid JSON: ")) << input;
    EXPECT_LT(st.message().size(), 120u) << st.message();
    EXPECT_FALSE(doc.parsed());
  }
}

TEST(JsonDocTest, RejectsInvalidUtf8) {
  JsonDoc doc;
  for (const std::string& input : {std::string("{\"a\":\"\xff\"}"), std::string("\"\xC3\""),
                                   std::string("\"\xED\xA0\x80\""),  // encoded surrogate
                                   std::string("\"\xC0\xAF\"")}) {   // overlong
    Status st = doc.Parse(input);
    EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(st.message(), "invalid JSON: invalid UTF-8");
  }
}

TEST(JsonDocTest, RejectsNestingDeeperThanMaxDepth) {
  JsonDoc doc;
  EXPECT_TRUE(doc.Parse(Nested(128)).ok());
  Status st = doc.Parse(Nested(129));
  EXPECT_EQ(st.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(st.message(), "JSON nesting deeper than 128");

  JsonDoc shallow(3);
  EXPECT_TRUE(shallow.Parse(R"({"a":{"b":[1]}})").ok());
  EXPECT_EQ(shallow.Parse(R"({"a":{"b":[[1]]}})").message(), "JSON nesting deeper than 3");
  EXPECT_FALSE(shallow.Parse(Nested(100000)).ok());
}

TEST(JsonDocTest, FailedParseLeavesDocumentEmpty) {
  JsonDoc doc;
  ASSERT_TRUE(doc.Parse(R"({"a":"1"})").ok());
  EXPECT_TRUE(doc.Has({"a"}));
  EXPECT_FALSE(doc.Parse("{").ok());
  EXPECT_FALSE(doc.Has({"a"}));
  EXPECT_EQ(doc.GetText({"a"}), std::nullopt);
}

TEST(JsonDocTest, UnparsedAndMovedFromDocumentsAreEmptyAndReusable) {
  JsonDoc doc;
  EXPECT_FALSE(doc.parsed());
  EXPECT_FALSE(doc.Has({}));
  ASSERT_TRUE(doc.Parse(R"({"a":"1"})").ok());
  JsonDoc moved = std::move(doc);
  EXPECT_THAT(moved.GetString({"a"}), Optional(std::string_view("1")));
  EXPECT_FALSE(doc.Has({"a"}));  // NOLINT(bugprone-use-after-move): documented behaviour
  ASSERT_TRUE(doc.Parse(R"({"b":2})").ok());
  EXPECT_THAT(doc.GetText({"b"}), Optional(std::string("2")));
}

TEST(JsonDocTest, ReparseReplacesThePreviousDocumentAndCapacityGrows) {
  JsonDoc doc;
  std::string big = "[";
  for (int i = 0; i < 20000; ++i) big += "\"value-" + std::to_string(i) + "\",";
  big += "\"last\"]";
  ASSERT_TRUE(doc.Parse(R"({"x":"small"})").ok());
  ASSERT_TRUE(doc.Parse(big).ok());
  EXPECT_THAT(doc.GetString({"20000"}), Optional(std::string_view("last")));
  EXPECT_FALSE(doc.Has({"x"}));
  ASSERT_TRUE(doc.Parse(R"({"x":"small again"})").ok());
  EXPECT_THAT(doc.GetString({"x"}), Optional(std::string_view("small again")));
}

TEST(JsonDocTest, DoesNotReadPastTheGivenBytes) {
  JsonDoc doc;
  const std::string storage = R"({"a":1}garbage)";
  EXPECT_TRUE(doc.Parse(std::string_view(storage).substr(0, 7)).ok());
  EXPECT_FALSE(doc.Parse(storage).ok());
}

TEST(JsonDocTest, ParsesRealSentryPayloads) {
  JsonDoc doc;
  ASSERT_TRUE(doc.Parse(ReadPayload("issue.created.json")).ok());
  EXPECT_THAT(doc.GetString({"action"}), Optional(std::string_view("created")));
  EXPECT_THAT(doc.GetString({"data", "issue", "id"}), Optional(std::string_view("1170820242")));
  EXPECT_THAT(doc.GetString({"installation", "uuid"}),
              Optional(std::string_view("a8e5d37a-696c-4c54-adb5-b3f28d64c7de")));
  EXPECT_THAT(doc.GetText({"data", "issue", "userCount"}), Optional(std::string("1")));
  EXPECT_THAT(doc.GetText({"data", "issue", "assignedTo"}), Optional(std::string("null")));
  EXPECT_THAT(doc.GetText({"data", "issue", "hasSeen"}), Optional(std::string("false")));

  ASSERT_TRUE(doc.Parse(ReadPayload("error.created.json")).ok());
  EXPECT_THAT(doc.GetText({"data", "error", "tags", "0", "1"}),
              Optional(std::string("Chrome 75.0.3770")));

  // Every *.json fixture parses; the documented-invalid ones are rejected.
  for (const auto& entry : std::filesystem::directory_iterator(SWITCHYARD_PAYLOADS_DIR)) {
    const std::string name = entry.path().filename().string();
    Status st = doc.Parse(ReadPayload(name));
    if (entry.path().extension() == ".json") {
      EXPECT_TRUE(st.ok()) << name << ": " << st.ToString();
    } else if (name.find("NOT-VALID-JSON") != std::string::npos) {
      EXPECT_EQ(st.code(), StatusCode::kInvalidArgument) << name;
    }
  }
}

TEST(JsonDocTest, ParsesATypicalBodyInMicroseconds) {
  const std::string body = ReadPayload("event_alert.triggered.json");
  ASSERT_FALSE(body.empty());
  JsonDoc doc;
  ASSERT_TRUE(doc.Parse(body).ok());
  constexpr int kIterations = 2000;
  const auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < kIterations; ++i) {
    ASSERT_TRUE(doc.Parse(body).ok());
    ASSERT_TRUE(doc.GetString({"action"}).has_value());
  }
  const auto per_parse = (std::chrono::steady_clock::now() - start) / kIterations;
  // Generous bound (sanitizers, debug builds, busy CI); a release build takes a few µs.
  EXPECT_LT(per_parse, std::chrono::microseconds(500));
}

}  // namespace
}  // namespace switchyard::json
