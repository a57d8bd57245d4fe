// Fuzz target: matchers and templates. The input is `EXPRESSION \0 JSON`: the expression is
// compiled both as a matcher (rules::Matcher) and as a template (rules::Template); the JSON (a
// built-in Sentry-like payload when there is no NUL byte) is parsed into a json::JsonDoc and the
// compiled rules are evaluated / rendered against a rules::PayloadEventView over it.
//
// Invariants checked (any violation aborts, which libFuzzer reports as a crash):
//   - parse errors point inside the text (error offset <= size);
//   - a compiled matcher or template compiles again from its own text, to the same thing;
//   - = and != agree with the looked-up value;
//   - rendering never re-evaluates "{{" that came from a value: the number of lookups a render
//     makes depends only on the template, not on the values (checked against a view whose every
//     value is itself a placeholder, and against a view where everything is missing);
//   - a literal template renders as its own text; rendering is deterministic;
//   - a template that does not read $issue.* renders the same with or without an issue.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "json/json_doc.h"
#include "rules/event_view.h"
#include "rules/matcher.h"
#include "rules/path.h"
#include "rules/template.h"

namespace {

namespace rules = switchyard::rules;
namespace json = switchyard::json;

constexpr char kDefaultPayload[] = R"({
  "action": "created",
  "installation": {"uuid": "7a485448-a9e2-4c85-8a3c-4f44175783c9"},
  "data": {"issue": {"title": "ReferenceError: {{ action }} is not defined", "level": "error",
                     "count": 3, "ratio": 0.5, "public": false, "assignee": null, "empty": "",
                     "jp": "日本語のテキストです", "emoji": "ok 😀👍 done",
                     "tricky": "say \"hi\"\n{{ $source }}{{data.issue.level|upper}}"},
           "event": {"tags": [["browser", "Chrome 75"], ["level", "error"]]}}
})";

constexpr char kIssue[] = R"({"id": "1", "title": "{{ $issue.status }}", "status": "unresolved"})";

[[noreturn]] void Fail(const char* what, const std::string& detail) {
  std::fprintf(stderr, "fuzz_rules invariant violated: %s\n  %s\n", what, detail.c_str());
  std::abort();
}

#define FUZZ_CHECK(cond, detail)        \
  do {                                  \
    if (!(cond)) Fail(#cond, (detail)); \
  } while (0)

// Counts the Lookup calls made through it.
class CountingView : public rules::EventView {
 public:
  explicit CountingView(const rules::EventView& inner) : inner_(inner) {}
  std::string Lookup(const rules::Path& path) const override {
    ++lookups_;
    return inner_.Lookup(path);
  }
  std::string LookupJson(const rules::Path& path) const override { return inner_.LookupJson(path); }
  bool Has(const rules::Path& path) const override { return inner_.Has(path); }
  size_t lookups() const { return lookups_; }

 private:
  const rules::EventView& inner_;
  mutable size_t lookups_ = 0;
};

// Every value is missing.
class EmptyView : public rules::EventView {
 public:
  std::string Lookup(const rules::Path&) const override { return ""; }
  std::string LookupJson(const rules::Path&) const override { return "null"; }
  bool Has(const rules::Path&) const override { return false; }
};

// Every value is a placeholder that would read another value if it were ever evaluated.
class PlaceholderView : public rules::EventView {
 public:
  std::string Lookup(const rules::Path&) const override { return "{{ $source }}{{ a.b | upper }}"; }
  std::string LookupJson(const rules::Path&) const override { return "\"{{ $source }}\""; }
  bool Has(const rules::Path&) const override { return true; }
};

std::string Shown(std::string_view text) {
  std::string out(text.substr(0, 200));
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20) c = '?';
  }
  return "\"" + out + "\"";
}

void FuzzMatcher(std::string_view text, const rules::EventView& view) {
  size_t error_offset = 0;
  switchyard::Result<rules::Matcher> m = rules::Matcher::Parse(text, &error_offset);
  if (!m.ok()) {
    FUZZ_CHECK(error_offset <= text.size(), Shown(text) + " at " + std::to_string(error_offset));
    return;
  }
  switchyard::Result<rules::Matcher> again = rules::Matcher::Parse(m->text());
  FUZZ_CHECK(again.ok(), Shown(text));
  FUZZ_CHECK(again->op() == m->op() && again->value() == m->value() &&
                 again->path().text == m->path().text,
             Shown(text));
  const bool matches = m->Matches(view);
  const std::string actual = view.Lookup(m->path());
  switch (m->op()) {
    case rules::Matcher::Op::kEq:
      FUZZ_CHECK(matches == (actual == m->value()), Shown(text));
      break;
    case rules::Matcher::Op::kNe:
      FUZZ_CHECK(matches == (actual != m->value()), Shown(text));
      break;
    case rules::Matcher::Op::kRegex:
    case rules::Matcher::Op::kNotRegex:
      break;
  }
  FUZZ_CHECK(m->Matches(view) == matches, Shown(text));
}

void FuzzTemplate(std::string_view text, const json::JsonDoc& payload, const rules::EventMeta& meta,
                  const json::JsonDoc& issue) {
  size_t error_offset = 0;
  switchyard::Result<rules::Template> t = rules::Template::Parse(text, &error_offset);
  if (!t.ok()) {
    FUZZ_CHECK(error_offset <= text.size(), Shown(text) + " at " + std::to_string(error_offset));
    return;
  }
  FUZZ_CHECK(rules::Template::Parse(t->text()).ok(), Shown(text));

  const rules::PayloadEventView view(payload, meta);
  CountingView real(view);
  const std::string out = t->Render(real);
  FUZZ_CHECK(t->Render(view) == out, Shown(text));
  if (t->IsLiteral()) FUZZ_CHECK(out == text, Shown(text) + " rendered " + Shown(out));

  const EmptyView empty_inner;
  CountingView empty(empty_inner);
  (void)t->Render(empty);
  const PlaceholderView placeholder_inner;
  CountingView placeholder(placeholder_inner);
  (void)t->Render(placeholder);
  FUZZ_CHECK(real.lookups() == empty.lookups() && placeholder.lookups() == empty.lookups(),
             Shown(text) + ": lookups " + std::to_string(real.lookups()) + "/" +
                 std::to_string(empty.lookups()) + "/" + std::to_string(placeholder.lookups()));

  const rules::PayloadEventView with_issue(payload, meta, &issue);
  if (!t->NeedsIssue()) FUZZ_CHECK(t->Render(with_issue) == out, Shown(text));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static json::JsonDoc* payload = new json::JsonDoc(64);
  static json::JsonDoc* issue = [] {
    auto* doc = new json::JsonDoc();
    if (!doc->Parse(kIssue).ok()) std::abort();
    return doc;
  }();

  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const size_t nul = input.find('\0');
  const std::string_view expression = input.substr(0, nul);
  const std::string_view json_text =
      nul == std::string_view::npos ? std::string_view(kDefaultPayload) : input.substr(nul + 1);
  // An invalid document stays usable: every lookup then reports "missing".
  (void)payload->Parse(json_text);

  rules::EventMeta meta;
  meta.source = "sentry";
  meta.resource = "issue";
  if (auto action = payload->GetString({"action"})) meta.action = std::string(*action);
  meta.installation_org = "{{ $action }}";
  static const std::vector<std::pair<std::string, std::string>> kHeaders = {
      {"user-agent", "Sentry {{ $resource }}"},
      {"request-id", "r-1"},
      {"x-dup", "a"},
      {"X-Dup", "{{b}}"}};
  meta.headers = kHeaders;
  const rules::PayloadEventView view(*payload, meta);

  FuzzMatcher(expression, view);
  FuzzTemplate(expression, *payload, meta, *issue);
  return 0;
}
