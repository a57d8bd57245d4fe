#include "rules/template.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "json/json_doc.h"
#include "rules/event_view.h"
#include "support/temp_dir.h"

namespace switchyard::rules {
namespace {

std::string ReadPayload(const std::string& name) {
  return switchyard::testing::ReadFile(std::string(SWITCHYARD_PAYLOADS_DIR) + "/" + name);
}

using ::testing::HasSubstr;

// Parses `text`, expecting an error at `offset`; returns the message.
std::string ErrorOf(std::string_view text, size_t offset) {
  size_t error_offset = 9999;
  Result<Template> t = Template::Parse(text, &error_offset);
  EXPECT_FALSE(t.ok()) << text;
  if (t.ok()) return "";
  EXPECT_EQ(t.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(error_offset, offset) << text << ": " << t.status().message();
  return t.status().message();
}

class TemplateTest : public ::testing::Test {
 protected:
  void SetUp() override {
    ASSERT_TRUE(doc_.Parse(R"({
      "action": "created",
      "data": {"issue": {"title": "ReferenceError: x", "level": "error", "count": 3,
                         "empty": "", "none": null, "flag": true,
                         "jp": "日本語のテキストです", "emoji": "ok 😀👍 done",
                         "tricky": "say \"hi\"\n{{ action }}", "url": "a b&c=d/é~._-"},
               "event": {"tags": [["browser", "Chrome 75"]]}}
    })")
                    .ok());
    meta_.source = "sentry-prod";
    meta_.resource = "issue";
    meta_.action = "created";
    meta_.headers = headers_;
  }

  std::string Render(std::string_view text, const json::JsonDoc* issue = nullptr) {
    Result<Template> t = Template::Parse(text);
    EXPECT_TRUE(t.ok()) << text << ": " << t.status().ToString();
    if (!t.ok()) return "<parse error>";
    return t->Render(PayloadEventView(doc_, meta_, issue));
  }

  json::JsonDoc doc_;
  const std::vector<std::pair<std::string, std::string>> headers_ = {{"user-agent", "Sentry"}};
  EventMeta meta_;
};

TEST_F(TemplateTest, SubstitutesPathsBetweenLiteralText) {
  EXPECT_EQ(Render("[{{ data.issue.level }}] {{data.issue.title}}!"), "[error] ReferenceError: x!");
  EXPECT_EQ(Render("{{action}}{{action}}"), "createdcreated");
  EXPECT_EQ(Render("{{ data.event.tags.0.1 }}"), "Chrome 75");
  EXPECT_EQ(Render("n={{ data.issue.count }} f={{data.issue.flag}} z={{data.issue.none}}"),
            "n=3 f=true z=null");
  EXPECT_EQ(Render("<{{ data.issue.missing }}>"), "<>");
  EXPECT_EQ(Render("{{ $source }}/{{ $resource }}/{{ $action }}/{{ $header.User-Agent }}"),
            "sentry-prod/issue/created/Sentry");
}

TEST_F(TemplateTest, LiteralTemplates) {
  Result<Template> t = Template::Parse("no placeholders } here }}");
  ASSERT_TRUE(t.ok());
  EXPECT_TRUE(t->IsLiteral());
  EXPECT_FALSE(t->NeedsIssue());
  EXPECT_EQ(Render("no placeholders } here }}"), "no placeholders } here }}");
  Result<Template> empty = Template::Parse("");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->IsLiteral());
  EXPECT_EQ(Render(""), "");
  EXPECT_FALSE(Template::Parse("{{ action }}")->IsLiteral());
  EXPECT_EQ(Template::Parse("a{{ action }}")->text(), "a{{ action }}");
}

TEST_F(TemplateTest, InsertedValuesAreNeverReEvaluated) {
  EXPECT_EQ(Render("{{ data.issue.tricky }}"), "say \"hi\"\n{{ action }}");
  EXPECT_EQ(Render("{{ data.issue.missing | default(\"{{ action }}\") }}"), "{{ action }}");
}

TEST_F(TemplateTest, TruncateCutsOnCodePointBoundaries) {
  EXPECT_EQ(Render("{{ data.issue.level | truncate(5) }}"), "error");  // fits: unchanged
  EXPECT_EQ(Render("{{ data.issue.level | truncate(4) }}"), "err…");
  EXPECT_EQ(Render("{{ data.issue.level | truncate(1) }}"), "…");
  // Japanese: 3-byte code points; 10 code points in total.
  EXPECT_EQ(Render("{{ data.issue.jp | truncate(10) }}"), "日本語のテキストです");
  EXPECT_EQ(Render("{{ data.issue.jp | truncate(9) }}"), "日本語のテキスト…");
  EXPECT_EQ(Render("{{ data.issue.jp | truncate(4) }}"), "日本語…");
  // Emoji: 4-byte code points. "ok 😀👍 done" is 10 code points.
  EXPECT_EQ(Render("{{ data.issue.emoji | truncate(6) }}"), "ok 😀👍…");
  EXPECT_EQ(Render("{{ data.issue.emoji | truncate(5) }}"), "ok 😀…");
  EXPECT_EQ(Render("{{ data.issue.emoji | truncate(4) }}"), "ok …");
  EXPECT_EQ(Render("{{ data.issue.missing | truncate(3) }}"), "");
}

TEST_F(TemplateTest, TruncatedOutputIsValidUtf8WithinTheLimitForEveryLength) {
  const std::string jp = "日本語のテキストです";
  const std::string emoji = "ok 😀👍 done";
  for (const char* field : {"jp", "emoji", "title"}) {
    for (int n = 1; n <= 25; ++n) {
      const std::string out = Render(std::string("{{ data.issue.") + field + " | truncate(" +
                                     std::to_string(n) + ") }}");
      size_t code_points = 0;
      for (size_t i = 0; i < out.size();) {
        const auto lead = static_cast<unsigned char>(out[i]);
        const size_t len = lead < 0x80 ? 1 : lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : 2;
        ASSERT_NE(lead & 0xC0, 0x80) << "split code point in " << out;
        ASSERT_LE(i + len, out.size()) << out;
        for (size_t k = 1; k < len; ++k) {
          ASSERT_EQ(static_cast<unsigned char>(out[i + k]) & 0xC0, 0x80) << out;
        }
        i += len;
        ++code_points;
      }
      EXPECT_LE(code_points, static_cast<size_t>(n)) << out;
    }
  }
}

TEST_F(TemplateTest, DefaultAppliesWhenMissingEmptyOrNull) {
  EXPECT_EQ(Render(R"({{ data.issue.missing | default("n/a") }})"), "n/a");
  EXPECT_EQ(Render(R"({{ data.issue.empty | default("n/a") }})"), "n/a");
  EXPECT_EQ(Render(R"({{ data.issue.none | default("n/a") }})"), "n/a");
  EXPECT_EQ(Render(R"({{ data.issue.level | default("n/a") }})"), "error");
  EXPECT_EQ(Render(R"({{ data.issue.count | default("n/a") }})"), "3");
  EXPECT_EQ(Render(R"({{ data.issue.missing | default("say \"x\"\tok") }})"), "say \"x\"\tok");
  EXPECT_EQ(Render(R"({{ data.issue.missing | default( 'a|b}}' ) }})"), "a|b}}");
  EXPECT_EQ(Render(R"({{ $issue.title | default("no issue") }})"), "no issue");
}

TEST_F(TemplateTest, UpperAndLowerAreAsciiOnly) {
  EXPECT_EQ(Render("{{ data.issue.title | upper }}"), "REFERENCEERROR: X");
  EXPECT_EQ(Render("{{ data.issue.title | lower }}"), "referenceerror: x");
  EXPECT_EQ(Render("{{ data.issue.url | upper }}"), "A B&C=D/é~._-");  // é unchanged
}

TEST_F(TemplateTest, JsonFilter) {
  EXPECT_EQ(Render("{{ data.issue.level | json }}"), "\"error\"");
  EXPECT_EQ(Render("{{ data.issue.count | json }}"), "3");
  EXPECT_EQ(Render("{{ data.issue.none | json }}"), "null");
  EXPECT_EQ(Render("{{ data.issue.missing | json }}"), "null");
  EXPECT_EQ(Render("{{ data.event.tags | json }}"), R"([["browser","Chrome 75"]])");
  EXPECT_EQ(Render("{{ data.issue.tricky | json }}"), R"("say \"hi\"\n{{ action }}")");
  EXPECT_EQ(Render("{{ $source | json }}"), "\"sentry-prod\"");
  // After a filter changed the text, json quotes the current text.
  EXPECT_EQ(Render("{{ data.issue.count | upper | json }}"), "\"3\"");
  EXPECT_EQ(Render(R"({{ data.issue.missing | default("x") | json }})"), "\"x\"");
  // A default that kept the value leaves it raw: numbers stay numbers.
  EXPECT_EQ(Render(R"({{ data.issue.count | default("x") | json }})"), "3");
  EXPECT_EQ(Render("{{ data.issue.tricky | truncate(8) | json }}"), R"("say \"hi…")");
  EXPECT_EQ(Render("{{ data.issue.level | json | json }}"), R"("\"error\"")");
}

TEST_F(TemplateTest, UrlEncodeKeepsOnlyUnreservedCharacters) {
  EXPECT_EQ(Render("{{ data.issue.url | urlencode }}"), "a%20b%26c%3Dd%2F%C3%A9~._-");
  EXPECT_EQ(Render("https://x/?q={{ data.issue.jp | truncate(2) | urlencode }}"),
            "https://x/?q=%E6%97%A5%E2%80%A6");
}

TEST_F(TemplateTest, FiltersApplyLeftToRight) {
  EXPECT_EQ(Render("{{ data.issue.title | truncate(5) | upper }}"), "REFE…");
  EXPECT_EQ(Render(R"({{ data.issue.missing | upper | default("d") }})"), "d");
  EXPECT_EQ(Render("{{data.issue.title|lower|truncate(3)}}"), "re…");
}

TEST_F(TemplateTest, NeedsIssueWhenAnyPlaceholderReadsTheIssue) {
  EXPECT_FALSE(Template::Parse("{{ data.issue.title }}")->NeedsIssue());
  EXPECT_TRUE(Template::Parse("a {{ action }} {{ $issue.status | upper }}")->NeedsIssue());

  json::JsonDoc issue;
  ASSERT_TRUE(issue.Parse(ReadPayload("api.issue-details.GET.example.json")).ok());
  const std::optional<std::string> expected = issue.GetText({"title"});
  ASSERT_TRUE(expected.has_value());
  EXPECT_EQ(Render("{{ $issue.title }}", &issue), *expected);
}

TEST_F(TemplateTest, ReportsParseErrorsAtTheFault) {
  EXPECT_THAT(ErrorOf("abc {{ action", 4), HasSubstr("missing '}}'"));
  EXPECT_THAT(ErrorOf("abc {{", 4), HasSubstr("missing '}}'"));
  EXPECT_THAT(ErrorOf("{{ action | upper", 0), HasSubstr("missing '}}'"));
  EXPECT_THAT(ErrorOf("x {{ }}", 5), HasSubstr("expected a path"));
  EXPECT_THAT(ErrorOf("{{ a..b }}", 5), HasSubstr("empty segment"));
  EXPECT_THAT(ErrorOf("{{ $nope }}", 4), HasSubstr("unknown metadata path"));
  EXPECT_THAT(ErrorOf("{{ action upper }}", 10), HasSubstr("expected '|' or '}}'"));
  EXPECT_THAT(ErrorOf("{{ action } }}", 10), HasSubstr("expected '|' or '}}'"));
  EXPECT_THAT(ErrorOf("{{ action | }}", 12), HasSubstr("expected a filter name"));
  EXPECT_THAT(ErrorOf("{{ action | upper() }}", 17), HasSubstr("takes no arguments"));
  EXPECT_THAT(ErrorOf("{{ action | truncate }}", 21), HasSubstr("truncate needs a length"));
  EXPECT_THAT(ErrorOf("{{ action | truncate(0) }}", 21), HasSubstr(">= 1"));
  EXPECT_THAT(ErrorOf("{{ action | truncate(-1) }}", 21), HasSubstr(">= 1"));
  EXPECT_THAT(ErrorOf("{{ action | truncate(x) }}", 21), HasSubstr(">= 1"));
  EXPECT_THAT(ErrorOf("{{ action | truncate(99999999999999999999999) }}", 21),
              HasSubstr("too large"));
  EXPECT_THAT(ErrorOf("{{ action | truncate(3 }}", 23), HasSubstr("expected ')'"));
  EXPECT_THAT(ErrorOf("{{ action | default }}", 20), HasSubstr("default needs a text"));
  EXPECT_THAT(ErrorOf("{{ action | default(x) }}", 20), HasSubstr("quoted"));
  EXPECT_THAT(ErrorOf(R"({{ action | default("x) }})", 20), HasSubstr("unterminated"));
  EXPECT_THAT(ErrorOf(R"({{ action | default("\q") }})", 21), HasSubstr("unknown escape"));
}

// Found by fuzz/fuzz_rules: each json after a filter doubles the backslashes (or writes \u00XX
// for a control byte), so `x | upper | json | json | ...` rendered an exponentially growing value.
TEST_F(TemplateTest, AtMostThreeJsonOrUrlencodeFiltersPerPlaceholder) {
  EXPECT_EQ(Render("{{ data.issue.level | upper | json | json | json }}"),
            R"("\"\\\"ERROR\\\"\"")");
  EXPECT_EQ(Render("{{ data.issue.level | urlencode | json }}{{ action | json | json | json }}"),
            R"("error""\"\\\"created\\\"\"")");
  EXPECT_THAT(ErrorOf("{{ a | json | json | urlencode | json }}", 33),
              HasSubstr("at most 3 json or urlencode filters per placeholder"));
  EXPECT_THAT(ErrorOf("{{ a | urlencode|urlencode | urlencode |urlencode}}", 40),
              HasSubstr("at most 3"));
  std::string chain = "{{ data.issue.tricky | default(\"\f\f\")";
  for (int i = 0; i < 40; ++i) chain += " | json | default(\"x\")";
  chain += " }}";
  EXPECT_FALSE(Template::Parse(chain).ok());
}

TEST_F(TemplateTest, UnknownFilterNamesTheKnownOnes) {
  const std::string message = ErrorOf("{{ action | capitalize }}", 12);
  EXPECT_THAT(message, HasSubstr("'capitalize'"));
  for (const char* name :
       {"truncate(N)", "default(\"text\")", "upper", "lower", "json", "urlencode"}) {
    EXPECT_THAT(message, HasSubstr(name));
  }
}

TEST_F(TemplateTest, RealSentryPayload) {
  ASSERT_TRUE(doc_.Parse(ReadPayload("event_alert.triggered.json")).ok());
  const std::string out = Render(
      "[{{ data.event.level | upper }}] {{ data.event.title | truncate(20) }} "
      "({{ data.triggered_rule | default(\"?\") }}) {{ data.event.tags.0.1 | urlencode }}");
  EXPECT_THAT(out, HasSubstr("[ERROR] "));
  EXPECT_THAT(out, HasSubstr("Chrome%2075.0.3770"));
}

}  // namespace
}  // namespace switchyard::rules
