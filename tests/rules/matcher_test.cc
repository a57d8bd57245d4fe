#include "rules/matcher.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <optional>
#include <random>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "json/json_doc.h"
#include "rules/event_view.h"
#include "support/temp_dir.h"

namespace switchyard::rules {
namespace {

std::string ReadPayload(const std::string& name) {
  return switchyard::testing::ReadFile(std::string(SWITCHYARD_PAYLOADS_DIR) + "/" + name);
}

using ::testing::HasSubstr;

Matcher MustParse(std::string_view text) {
  Result<Matcher> m = Matcher::Parse(text);
  EXPECT_TRUE(m.ok()) << text << ": " << m.status().ToString();
  return m.ok() ? std::move(m).value() : Matcher();
}

// Parses `text`, expecting an error at `offset`; returns the message.
std::string ErrorOf(std::string_view text, size_t offset) {
  size_t error_offset = 9999;
  Result<Matcher> m = Matcher::Parse(text, &error_offset);
  EXPECT_FALSE(m.ok()) << text;
  if (m.ok()) return "";
  EXPECT_EQ(m.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(error_offset, offset) << text << ": " << m.status().message();
  return m.status().message();
}

// An event over an inline JSON payload and fixed metadata.
class Event {
 public:
  explicit Event(std::string_view payload, const json::JsonDoc* issue = nullptr) {
    Status st = doc_.Parse(payload);
    EXPECT_TRUE(st.ok()) << st.ToString();
    meta_.source = "sentry-prod";
    meta_.resource = "issue";
    meta_.action = "created";
    meta_.installation_org = "acme";
    meta_.headers = headers_;
    view_ = std::make_unique<PayloadEventView>(doc_, meta_, issue);
  }
  bool Matches(std::string_view matcher) const { return MustParse(matcher).Matches(*view_); }
  const EventView& view() const { return *view_; }

 private:
  json::JsonDoc doc_;
  const std::vector<std::pair<std::string, std::string>> headers_ = {
      {"sentry-hook-resource", "issue"},
      {"x-empty", ""},
      {"accept", "text/plain"},
      {"accept", "application/json"}};
  EventMeta meta_;
  std::unique_ptr<PayloadEventView> view_;
};

constexpr char kPayload[] = R"({
  "action": "created",
  "data": {
    "issue": {"title": "ReferenceError: x is not defined", "level": "error", "count": 3,
              "ratio": 0.5, "public": false, "assignee": null, "empty": ""},
    "event": {"tags": [["browser", "Chrome 75"], ["level", "error"]]}
  }
})";

TEST(MatcherTest, ParsesEveryOperatorWithOptionalSpaces) {
  struct Case {
    const char* text;
    Matcher::Op op;
    const char* value;
  };
  for (const Case& c :
       {Case{R"(a="x")", Matcher::Op::kEq, "x"}, Case{R"(a != "x")", Matcher::Op::kNe, "x"},
        Case{R"(a=~"x.*")", Matcher::Op::kRegex, "x.*"},
        Case{R"(a  !~  'x|y')", Matcher::Op::kNotRegex, "x|y"},
        Case{R"(a =~"=~")", Matcher::Op::kRegex, "=~"}, Case{R"(a ="~x")", Matcher::Op::kEq, "~x"},
        Case{R"(a!="!~")", Matcher::Op::kNe, "!~"}, Case{"  a = \"x\"  ", Matcher::Op::kEq, "x"}}) {
    Result<Matcher> m = Matcher::Parse(c.text);
    ASSERT_TRUE(m.ok()) << c.text << ": " << m.status().ToString();
    EXPECT_EQ(m->op(), c.op) << c.text;
    EXPECT_EQ(m->value(), c.value) << c.text;
    EXPECT_EQ(m->path().text, "a");
    EXPECT_EQ(m->text(), c.text);
  }
}

TEST(MatcherTest, DoubleQuotedValuesHaveEscapesSingleQuotedDoNot) {
  EXPECT_EQ(MustParse(R"(a = "q\"b\\s\n\t")").value(), "q\"b\\s\n\t");
  EXPECT_EQ(MustParse(R"(a = 'q\n"')").value(), "q\\n\"");
  EXPECT_EQ(MustParse(R"(a = "")").value(), "");
}

TEST(MatcherTest, EqualityAndInequality) {
  Event e(kPayload);
  EXPECT_TRUE(e.Matches(R"(action = "created")"));
  EXPECT_FALSE(e.Matches(R"(action = "Created")"));
  EXPECT_FALSE(e.Matches(R"(action = "create")"));
  EXPECT_TRUE(e.Matches(R"(action != "resolved")"));
  EXPECT_FALSE(e.Matches(R"(action != "created")"));
  EXPECT_TRUE(e.Matches(R"(data.issue.level = "error")"));
}

TEST(MatcherTest, MissingFieldReadsAsEmpty) {
  Event e(kPayload);
  EXPECT_TRUE(e.Matches(R"(data.issue.nope = "")"));
  EXPECT_FALSE(e.Matches(R"(data.issue.nope != "")"));
  EXPECT_TRUE(e.Matches(R"(data.issue.title != "")"));
  EXPECT_TRUE(e.Matches(R"(data.issue.title.deeper = "")"));
  EXPECT_TRUE(e.Matches(R"(data.issue.nope =~ "")"));
  EXPECT_TRUE(e.Matches(R"(data.issue.nope !~ ".+")"));
  // An empty string and a missing field are indistinguishable to matchers.
  EXPECT_TRUE(e.Matches(R"(data.issue.empty = "")"));
}

TEST(MatcherTest, NumbersBoolsAndNullCompareByJsonText) {
  Event e(kPayload);
  EXPECT_TRUE(e.Matches(R"(data.issue.count = "3")"));
  EXPECT_TRUE(e.Matches(R"(data.issue.count =~ "[0-9]+")"));
  EXPECT_TRUE(e.Matches(R"(data.issue.ratio = "0.5")"));
  EXPECT_TRUE(e.Matches(R"(data.issue.public = "false")"));
  EXPECT_TRUE(e.Matches(R"(data.issue.assignee = "null")"));
  EXPECT_TRUE(e.Matches(R"(data.issue.assignee != "")"));
  EXPECT_TRUE(e.Matches(R"(data.event.tags.1 = '["level","error"]')"));
}

TEST(MatcherTest, ArrayIndexPaths) {
  Event e(kPayload);
  EXPECT_TRUE(e.Matches(R"(data.event.tags.0.1 = "Chrome 75")"));
  EXPECT_TRUE(e.Matches(R"(data.event.tags.1.0 = "level")"));
  EXPECT_TRUE(e.Matches(R"(data.event.tags.2.0 = "")"));
  EXPECT_TRUE(e.Matches(R"(data.event.tags.x = "")"));
}

TEST(MatcherTest, RegexIsAnchoredAtBothEnds) {
  Event e(kPayload);
  EXPECT_TRUE(e.Matches(R"(data.issue.level =~ "err.*")"));
  EXPECT_FALSE(e.Matches(R"(data.issue.level =~ "rro")"));
  EXPECT_FALSE(e.Matches(R"(data.issue.level =~ "erro")"));
  EXPECT_FALSE(e.Matches(R"(data.issue.level =~ "rror")"));
  EXPECT_TRUE(e.Matches(R"(data.issue.level =~ "warning|error")"));  // alternation is grouped
  EXPECT_TRUE(e.Matches(R"(data.issue.level =~ "error|warning")"));
  EXPECT_FALSE(e.Matches(R"(data.issue.level =~ "err|warning")"));
  EXPECT_TRUE(e.Matches(R"(data.issue.level !~ "rro")"));
  EXPECT_FALSE(e.Matches(R"(data.issue.level !~ "e.*r")"));
  EXPECT_TRUE(e.Matches(R"(data.issue.title =~ "(?i)referenceerror: .*")"));
}

TEST(MatcherTest, RegexDotMatchesWholeUnicodeCodePoints) {
  Event e(R"({"s":"日本"})");
  EXPECT_TRUE(e.Matches(R"(s =~ "..")"));
  EXPECT_FALSE(e.Matches(R"(s =~ "...")"));
}

TEST(MatcherTest, MetadataPaths) {
  Event e(kPayload);
  EXPECT_TRUE(e.Matches(R"($source = "sentry-prod")"));
  EXPECT_TRUE(e.Matches(R"($resource = "issue")"));
  EXPECT_TRUE(e.Matches(R"($action = "created")"));
  EXPECT_TRUE(e.Matches(R"($installation.org = "acme")"));
  EXPECT_TRUE(e.Matches(R"($header.Sentry-Hook-Resource = "issue")"));
  EXPECT_TRUE(e.Matches(R"($header.accept = "text/plain, application/json")"));
  EXPECT_TRUE(e.Matches(R"($header.x-missing = "")"));
  // $issue.* without a fetched issue reads as missing.
  EXPECT_TRUE(e.Matches(R"($issue.title = "")"));
}

TEST(MatcherTest, IssuePathsReadTheFetchedIssue) {
  json::JsonDoc issue;
  ASSERT_TRUE(issue.Parse(ReadPayload("api.issue-details.GET.example.json")).ok());
  Event e(kPayload, &issue);
  EXPECT_TRUE(e.Matches(R"($issue.id != "")"));
  EXPECT_TRUE(e.Matches(R"($issue.nope = "")"));
  Result<Matcher> m = Matcher::Parse(R"($issue.status = "x")");
  ASSERT_TRUE(m.ok());
  EXPECT_TRUE(m->path().NeedsIssue());
}

TEST(MatcherTest, PayloadEventViewHasAndLookupJson) {
  Event e(kPayload);
  auto path = [](const char* text) { return ParsePath(text).value(); };
  EXPECT_TRUE(e.view().Has(path("data.issue.assignee")));
  EXPECT_TRUE(e.view().Has(path("data.issue.empty")));
  EXPECT_FALSE(e.view().Has(path("data.issue.nope")));
  EXPECT_TRUE(e.view().Has(path("$header.x-empty")));
  EXPECT_FALSE(e.view().Has(path("$header.x-nope")));
  EXPECT_FALSE(e.view().Has(path("$issue.id")));
  EXPECT_EQ(e.view().LookupJson(path("data.issue.count")), "3");
  EXPECT_EQ(e.view().LookupJson(path("data.issue.level")), "\"error\"");
  EXPECT_EQ(e.view().LookupJson(path("data.issue.nope")), "null");
  EXPECT_EQ(e.view().LookupJson(path("$source")), "\"sentry-prod\"");
  EXPECT_EQ(e.view().LookupJson(path("$issue.id")), "null");
}

TEST(MatcherTest, ReportsParseErrorsAtTheFault) {
  EXPECT_THAT(ErrorOf(R"(= "x")", 0), HasSubstr("expected a path"));
  EXPECT_THAT(ErrorOf("a", 1), HasSubstr("expected an operator"));
  EXPECT_THAT(ErrorOf(R"(a ~ "x")", 2), HasSubstr("expected an operator"));
  EXPECT_THAT(ErrorOf(R"(a == "x")", 2), HasSubstr("'='"));
  EXPECT_THAT(ErrorOf(R"(a = x)", 4), HasSubstr("quoted"));
  EXPECT_THAT(ErrorOf(R"(a =)", 3), HasSubstr("quoted"));
  EXPECT_THAT(ErrorOf(R"(a = "x)", 4), HasSubstr("unterminated"));
  EXPECT_THAT(ErrorOf(R"(a = 'x)", 4), HasSubstr("unterminated"));
  EXPECT_THAT(ErrorOf(R"(a = "x\")", 4), HasSubstr("unterminated"));
  EXPECT_THAT(ErrorOf(R"(a = "x\q")", 6), HasSubstr("unknown escape"));
  EXPECT_THAT(ErrorOf(R"(a = "x" y)", 8), HasSubstr("after the quoted value"));
  EXPECT_THAT(ErrorOf(R"(a = "x""y")", 7), HasSubstr("after the quoted value"));
  EXPECT_THAT(ErrorOf(R"(a..b = "x")", 2), HasSubstr("empty segment"));
  EXPECT_THAT(ErrorOf(R"(  $nope = "x")", 3), HasSubstr("unknown metadata path"));
}

TEST(MatcherTest, InvalidRegexQuotesRe2Message) {
  std::string message = ErrorOf(R"re(a =~ "(unclosed")re", 5);
  EXPECT_THAT(message, HasSubstr("invalid regular expression"));
  EXPECT_THAT(message, HasSubstr("missing )"));
  EXPECT_THAT(ErrorOf(R"(a !~ "x**")", 5), HasSubstr("bad repetition operator"));
  EXPECT_THAT(ErrorOf(R"re(a =~ '(a)\1')re", 5), HasSubstr("invalid escape"));  // no backrefs
  EXPECT_THAT(ErrorOf(R"(a =~ "x{1000}{1000}")", 5), HasSubstr("invalid regular expression"));
}

TEST(MatcherTest, CompiledMatcherIsSharedByCopies) {
  Event e(kPayload);
  Matcher original = MustParse(R"(data.issue.level =~ "e.*")");
  Matcher copy = original;
  EXPECT_TRUE(copy.Matches(e.view()));
  EXPECT_TRUE(original.Matches(e.view()));
}

TEST(MatcherTest, RealSentryPayload) {
  json::JsonDoc doc;
  ASSERT_TRUE(doc.Parse(ReadPayload("error.created.json")).ok());
  EventMeta meta;
  meta.source = "s";
  meta.resource = "error";
  meta.action = "created";
  PayloadEventView view(doc, meta);
  EXPECT_TRUE(MustParse(R"(data.error.tags.0.1 =~ "Chrome .*")").Matches(view));
  EXPECT_TRUE(MustParse(R"(data.error.level = "error")").Matches(view));
  EXPECT_TRUE(MustParse(R"(data.error.issue_id = "1170820242")").Matches(view));
  EXPECT_TRUE(MustParse(R"($resource = "error")").Matches(view));
  EXPECT_TRUE(MustParse(R"($installation.org = "")").Matches(view));
}

// ---------------------------------------------------------------------------------------------
// Randomized comparison against an independent reference: a tiny JSON model with its own
// serializer and path walker, and std::regex (ECMAScript) for the regex operators.

struct RefValue {
  enum class Kind { kNull, kBool, kInt, kString, kArray, kObject };
  Kind kind = Kind::kNull;
  bool b = false;
  int64_t i = 0;
  std::string s;
  std::vector<RefValue> items;                            // kArray
  std::vector<std::pair<std::string, RefValue>> members;  // kObject, unique keys
};

std::string RefQuote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

std::string RefToJson(const RefValue& v) {
  switch (v.kind) {
    case RefValue::Kind::kNull:
      return "null";
    case RefValue::Kind::kBool:
      return v.b ? "true" : "false";
    case RefValue::Kind::kInt:
      return std::to_string(v.i);
    case RefValue::Kind::kString:
      return RefQuote(v.s);
    case RefValue::Kind::kArray: {
      std::string out = "[";
      for (size_t k = 0; k < v.items.size(); ++k) {
        if (k > 0) out += ",";
        out += RefToJson(v.items[k]);
      }
      return out + "]";
    }
    case RefValue::Kind::kObject: {
      std::string out = "{";
      for (size_t k = 0; k < v.members.size(); ++k) {
        if (k > 0) out += ",";
        out += RefQuote(v.members[k].first) + ":" + RefToJson(v.members[k].second);
      }
      return out + "}";
    }
  }
  return "";
}

std::optional<std::string> RefLookup(const RefValue& root, const std::vector<std::string>& path) {
  const RefValue* cur = &root;
  for (const std::string& seg : path) {
    if (cur->kind == RefValue::Kind::kObject) {
      const RefValue* next = nullptr;
      for (const auto& [key, value] : cur->members) {
        if (key == seg) next = &value;
      }
      if (next == nullptr) return std::nullopt;
      cur = next;
    } else if (cur->kind == RefValue::Kind::kArray) {
      if (seg.size() != 1 || seg[0] < '0' || seg[0] > '9') return std::nullopt;  // indexes < 10
      const size_t index = static_cast<size_t>(seg[0] - '0');
      if (index >= cur->items.size()) return std::nullopt;
      cur = &cur->items[index];
    } else {
      return std::nullopt;
    }
  }
  return cur->kind == RefValue::Kind::kString ? cur->s : RefToJson(*cur);
}

class RandomCases {
 public:
  explicit RandomCases(uint32_t seed) : rng_(seed) {}

  size_t Below(size_t n) { return std::uniform_int_distribution<size_t>(0, n - 1)(rng_); }
  template <typename T>
  const T& Pick(const std::vector<T>& v) {
    return v[Below(v.size())];
  }

  RefValue Value(int depth) {
    RefValue v;
    const size_t kind = Below(depth >= 3 ? 4 : 6);
    v.kind = static_cast<RefValue::Kind>(kind);
    switch (v.kind) {
      case RefValue::Kind::kNull:
        break;
      case RefValue::Kind::kBool:
        v.b = Below(2) == 1;
        break;
      case RefValue::Kind::kInt:
        v.i = static_cast<int64_t>(Below(24)) - 3;
        break;
      case RefValue::Kind::kString:
        v.s = Pick(strings_);
        break;
      case RefValue::Kind::kArray:
        for (size_t n = Below(4); n > 0; --n) v.items.push_back(Value(depth + 1));
        break;
      case RefValue::Kind::kObject:
        v = Object(depth);
        break;
    }
    return v;
  }

  RefValue Object(int depth) {
    RefValue v;
    v.kind = RefValue::Kind::kObject;
    std::vector<std::string> keys = keys_;
    std::shuffle(keys.begin(), keys.end(), rng_);
    for (size_t n = 1 + Below(keys.size()); n > 0; --n) {
      v.members.emplace_back(keys[n - 1], Value(depth + 1));
    }
    return v;
  }

  std::vector<std::string> Path() {
    std::vector<std::string> path;
    for (size_t n = 1 + Below(3); n > 0; --n) path.push_back(Pick(segments_));
    return path;
  }

  // A regex built from literals, '.', '*' and alternation only.
  std::string Regex() {
    std::string re;
    for (size_t branch = 1 + Below(2); branch > 0; --branch) {
      if (!re.empty()) re += "|";
      for (size_t atoms = 1 + Below(4); atoms > 0; --atoms) {
        re += Pick(regex_atoms_);
        if (Below(3) == 0) re += "*";
      }
    }
    return re;
  }

  std::string Spaces() { return std::string(Below(3), ' '); }

  const std::vector<std::string>& strings() const { return strings_; }

 private:
  std::mt19937 rng_;
  const std::vector<std::string> keys_ = {"a", "b", "c", "tags"};
  const std::vector<std::string> segments_ = {"a", "b", "c", "tags", "0", "1", "2", "x"};
  const std::vector<std::string> strings_ = {"",  "a",    "b",    "ab",  "ba",   "abc",  "a.b",
                                             "1", "true", "null", "aaa", "q\"t", "b\\s", "c c"};
  const std::vector<std::string> regex_atoms_ = {"a", "b", "c", "1", ".", "\\.", "(a|b)"};
};

TEST(MatcherTest, RandomizedAgreesWithReferenceImplementation) {
  RandomCases gen(20240611);
  json::JsonDoc doc;
  EventMeta meta;
  int regex_cases = 0;
  int matched = 0;
  for (int iteration = 0; iteration < 4000; ++iteration) {
    const RefValue payload = gen.Object(0);
    const std::string json_text = RefToJson(payload);
    ASSERT_TRUE(doc.Parse(json_text).ok()) << json_text;
    PayloadEventView view(doc, meta);

    const std::vector<std::string> path = gen.Path();
    std::string path_text;
    for (const std::string& seg : path) path_text += (path_text.empty() ? "" : ".") + seg;
    const std::string actual = RefLookup(payload, path).value_or("");

    const size_t op = gen.Below(4);
    std::string value;
    if (op < 2) {
      value = gen.Below(2) == 0 ? actual : gen.Pick(gen.strings());
    } else {
      value = gen.Regex();
      ++regex_cases;
    }
    std::string quoted;
    if (value.find('\'') == std::string::npos && gen.Below(2) == 0) {
      quoted = "'" + value + "'";
    } else {
      quoted = "\"";
      for (char c : value) {
        if (c == '"' || c == '\\') quoted += '\\';
        quoted += c;
      }
      quoted += "\"";
    }
    static const char* const kOps[] = {"=", "!=", "=~", "!~"};
    const std::string text = path_text + gen.Spaces() + kOps[op] + gen.Spaces() + quoted;

    bool expected = false;
    switch (op) {
      case 0:
        expected = actual == value;
        break;
      case 1:
        expected = actual != value;
        break;
      case 2:
      case 3: {
        const bool full = std::regex_match(actual, std::regex("^(?:" + value + ")$"));
        expected = op == 2 ? full : !full;
        break;
      }
    }
    Result<Matcher> m = Matcher::Parse(text);
    ASSERT_TRUE(m.ok()) << text << ": " << m.status().ToString();
    EXPECT_EQ(m->Matches(view), expected)
        << "matcher: " << text << "\npayload: " << json_text << "\nlookup: " << actual;
    matched += expected ? 1 : 0;
  }
  // The generator must exercise both outcomes and the regex operators substantially.
  EXPECT_GT(regex_cases, 1000);
  EXPECT_GT(matched, 1000);
  EXPECT_LT(matched, 3000);
}

}  // namespace
}  // namespace switchyard::rules
