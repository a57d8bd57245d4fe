// LoadConfig: routes.yaml → Config, validated against the schema of CONTRACT.md §3.
//
// yaml-cpp accepts duplicate keys and never reports unknown ones, and its non-const operator[]
// inserts, so this file never indexes nodes: every map is walked entry by entry (Entries()), which
// reports non-string, duplicate and unknown keys. Only const nodes are used. yaml-cpp throws; the
// only throwing call (YAML::LoadAll) is wrapped, and LoadConfigFromString has a last-resort catch.
//
// Decisions beyond the contract:
// - Interpolation applies to every value scalar, not to keys (names stay literal).
// - A null value (`key:` with nothing, `~`, `null`) is an empty section or list, and an error where
//   a scalar is expected (write "" for an empty string).
// - Integers and numbers may be quoted ("5"); booleans are exactly true or false.
// - `enrich: [issue]` needs the route's `source` to be set, or exactly one source to be defined.
// - A matcher or template that reads $issue.* needs `enrich: [issue]` on its route.
// - `resource` / `action` given as a list must not be empty (omit the key to match any).
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <set>
#include <span>
#include <sstream>

#include "common/ascii.h"
#include "common/listen_address.h"
#include "config/config.h"
#include "config/interpolate.h"
#include "httpclient/http_client.h"
#include "json/json_doc.h"

namespace switchyard::config {
namespace {

using KeyList = std::span<const std::string_view>;

constexpr std::string_view kTopKeys[] = {"server", "storage", "sources",
                                         "sinks",  "retry",   "routes"};
constexpr std::string_view kServerKeys[] = {
    "listen",           "admin_listen",   "admin_token",     "threads",      "max_body_bytes",
    "max_header_bytes", "header_timeout", "body_timeout",    "idle_timeout", "max_connections",
    "max_json_depth",   "public_url",     "shutdown_timeout"};
constexpr std::string_view kStorageKeys[] = {"path",          "sync",           "dedupe_window",
                                             "dlq_retention", "min_free_bytes", "max_disk_bytes"};
constexpr std::string_view kSourceKeys[] = {
    "type",  "client_id", "client_secret",  "api_url",           "verify_install",
    "token", "org",       "refresh_before", "after_install_url", "max_clock_skew"};
constexpr std::string_view kRetryKeys[] = {"initial", "multiplier",   "max_delay",
                                           "jitter",  "max_attempts", "max_age"};
constexpr std::string_view kSinkCommonKeys[] = {"type", "rate", "concurrency", "retry"};
constexpr std::string_view kPushoverSinkKeys[] = {"token", "user", "api_url"};
constexpr std::string_view kHttpSinkKeys[] = {"url", "method", "headers", "timeout", "body"};
constexpr std::string_view kFileSinkKeys[] = {"path"};
constexpr std::string_view kRouteKeys[] = {"name",      "source", "resource", "action", "match",
                                           "match_any", "enrich", "stop",     "to"};
constexpr std::string_view kPushoverFields[] = {"sink",      "title",    "message", "url",
                                                "url_title", "priority", "sound",   "device",
                                                "html",      "ttl",      "retry",   "expire"};
constexpr std::string_view kHttpFields[] = {"sink", "body"};
constexpr std::string_view kFileFields[] = {"sink"};
constexpr std::string_view kMethods[] = {"GET", "POST", "PUT", "PATCH", "DELETE"};

// Request headers stored with every event (lower-case), and those never stored or readable by
// routes because they carry credentials.
constexpr std::string_view kStandardKeptHeaders[] = {
    "request-id", "sentry-hook-resource", "sentry-hook-timestamp", "content-type", "user-agent"};
constexpr std::string_view kCredentialHeaders[] = {"sentry-hook-signature", "sentry-app-signature",
                                                   "authorization", "proxy-authorization",
                                                   "cookie"};
constexpr int64_t kMaxThreads = 4096;
// Upper bounds of the server's own limits. A body is held in memory whole and stored as one
// RocksDB value (the event codec compresses at most 256 MiB); Beast's head limit is 32 bits (a
// larger value truncated, to 0 for 4 GiB: every request got 431); simdjson allocates its depth
// stacks up front, ~9 bytes a level per I/O thread, and 1024 is its own default maximum.
constexpr int64_t kMaxBodyBytesLimit = int64_t{256} << 20;
constexpr int64_t kMaxHeaderBytesLimit = int64_t{1} << 20;
constexpr int64_t kMaxJsonDepthLimit = json::JsonDoc::kMaxDepth;
constexpr int64_t kPushoverMinRetry = 30;
constexpr int64_t kPushoverMaxExpire = 10800;
// Why a sink's own templates cannot read $issue.*: they serve every route, enriched or not.
constexpr std::string_view kSinkIssueNote =
    "a sink's own templates cannot (only routes with \"enrich: [issue]\" fetch the issue: set "
    "the field in the route's target instead)";
constexpr std::string_view kRouteIssueNote = "the route has no \"enrich: [issue]\"";

std::string Join(KeyList keys) {
  std::string out;
  for (std::string_view key : keys) {
    if (!out.empty()) out += ", ";
    out += key;
  }
  return out;
}

bool Contains(KeyList keys, std::string_view key) {
  return std::find(keys.begin(), keys.end(), key) != keys.end();
}

// `s` in double quotes with quotes, backslashes and control characters escaped, cut at 80 bytes.
std::string Quote(std::string_view s) {
  constexpr size_t kMaxShown = 80;
  std::string out = "\"";
  for (size_t i = 0; i < s.size() && i < kMaxShown; ++i) {
    unsigned char c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c < 0x20 || c == 0x7f) {
      static constexpr char kHex[] = "0123456789abcdef";
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  if (s.size() > kMaxShown) out += "...";
  return out + "\"";
}

bool IsValidName(std::string_view name) {
  if (name.empty()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = name[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || (i > 0 && (c == '_' || c == '-'));
    if (!ok) return false;
  }
  return true;
}

bool HasControl(std::string_view s) {
  return std::any_of(s.begin(), s.end(),
                     [](char c) { return static_cast<unsigned char>(c) < 0x20 || c == 0x7f; });
}

// An absolute http(s) URL with a non-empty host and no whitespace or control characters.
bool IsHttpUrl(std::string_view s) {
  std::string_view rest;
  if (s.starts_with("https://")) {
    rest = s.substr(8);
  } else if (s.starts_with("http://")) {
    rest = s.substr(7);
  } else {
    return false;
  }
  size_t host_end = rest.find_first_of("/?#");
  std::string_view authority = rest.substr(0, host_end);
  if (authority.empty() || authority.starts_with(":") || authority.starts_with("@")) return false;
  return std::none_of(s.begin(), s.end(),
                      [](char c) { return static_cast<unsigned char>(c) <= 0x20 || c == 0x7f; });
}

std::optional<int64_t> ParseInt(std::string_view s) {
  int64_t value = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || end != s.data() + s.size() || s.empty()) return std::nullopt;
  return value;
}

std::optional<double> ParseNumber(std::string_view s) {
  double value = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), value);
  if (ec != std::errc() || end != s.data() + s.size() || s.empty() || !std::isfinite(value)) {
    return std::nullopt;
  }
  return value;
}

// "N/s", "N/m", "N/h" with N a positive (possibly fractional) number.
std::optional<Rate> ParseRate(std::string_view s) {
  size_t slash = s.find('/');
  if (slash == std::string_view::npos) return std::nullopt;
  std::string_view unit = s.substr(slash + 1);
  double seconds = unit == "s" ? 1 : unit == "m" ? 60 : unit == "h" ? 3600 : 0;
  std::optional<double> n = ParseNumber(s.substr(0, slash));
  if (seconds == 0 || !n || *n <= 0) return std::nullopt;
  Rate rate;
  rate.per_second = *n / seconds;
  // "1e-321/h" rounds to 0 (or a subnormal), which the token bucket would read as unlimited.
  if (!std::isnormal(rate.per_second)) return std::nullopt;
  rate.burst = std::max(1.0, std::ceil(rate.per_second));
  return rate;
}

const char* Describe(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Map:
      return "a map";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Scalar:
      return "a scalar";
    default:
      return "nothing (null)";
  }
}

// A node to convert, with what messages need: its key path and positions.
struct Value {
  std::string path;  // e.g. "sinks.phone.rate", "routes[0].to[1]"; "" for the document
  YAML::Node node;
  YAML::Mark mark;      // where the value is; its key's position when the value is empty
  YAML::Mark key_mark;  // where its key is (the item itself for list items)
};

struct Entry {
  std::string key;
  Value value;
};

// A scalar after interpolation.
struct Text {
  std::string value;
  std::string raw;           // as written in the file
  bool substituted = false;  // a reference was expanded: `value` may hold a secret
  // `value` quoted for messages, or `raw` when `value` may hold a secret.
  std::string Shown() const { return Quote(substituted ? raw : value); }
};

// A route field whose template has no placeholders.
struct Literal {
  Text text;
  YAML::Mark mark;
};

// Counts the documents of a YAML stream from the parser's events: where each one's root node is,
// and whether a document started where the previous one did (the parser made no progress).
class DocumentCounter : public YAML::EventHandler {
 public:
  std::vector<YAML::Mark> roots;               // per document
  YAML::Mark start = YAML::Mark::null_mark();  // of the last document
  bool stuck = false;

  void OnDocumentStart(const YAML::Mark& mark) override {
    if (!start.is_null() && mark.pos == start.pos) stuck = true;
    start = mark;
    root_pending_ = true;
  }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& mark, YAML::anchor_t) override { Node(mark); }
  void OnAlias(const YAML::Mark& mark, YAML::anchor_t) override { Node(mark); }
  void OnScalar(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                const std::string&) override {
    Node(mark);
  }
  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {
    Node(mark);
  }
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t,
                  YAML::EmitterStyle::value) override {
    Node(mark);
  }
  void OnMapEnd() override {}

 private:
  void Node(const YAML::Mark& mark) {
    if (root_pending_) roots.push_back(mark);
    root_pending_ = false;
  }
  bool root_pending_ = false;
};

class Loader {
 public:
  Loader(std::string file, std::string_view text, LoadScope scope = LoadScope::kAll)
      : file_(std::move(file)), text_(text), scope_(scope) {}

  LoadResult Load();
  // The result: the config when there are no errors, and the errors in file order.
  LoadResult Finish();

 private:
  void Error(const YAML::Mark& mark, std::string message) { ErrorAt(mark, mark.column, message); }
  // `column` is 0-based; marks from yaml-cpp are 0-based too.
  void ErrorAt(const YAML::Mark& mark, int column, std::string message);
  void Error(const Value& v, std::string_view message) {
    Error(v.mark, (v.path.empty() ? "" : v.path + ": ") + std::string(message));
  }

  // The entries of the map `v`, reporting a non-map, non-string keys, duplicates (only the
  // first is returned) and, when `check` is set, keys not in `known` (`note` qualifies the list).
  std::vector<Entry> Entries(const Value& v, bool check, KeyList known, std::string_view note = "");
  std::vector<Entry> Entries(const Value& v, KeyList known, std::string_view note = "") {
    return Entries(v, true, known, note);
  }
  // The items of the list `v`; a null value is an empty list.
  std::vector<Value> Items(const Value& v, std::string_view expected);
  // The first entry for `key` in map `v`, if any, without reporting anything.
  static std::optional<Value> Find(const Value& v, std::string_view key);

  std::optional<Text> GetText(const Value& v, std::string_view expected);
  std::optional<std::string> GetString(const Value& v);
  std::optional<std::string> GetNonEmpty(const Value& v);
  // GetNonEmpty keeping the raw text: for callers whose messages show the value (Shown()).
  std::optional<Text> GetNonEmptyText(const Value& v);
  std::optional<bool> GetBool(const Value& v);
  std::optional<int64_t> GetInt(const Value& v, int64_t min, int64_t max);
  std::optional<double> GetNumber(const Value& v, double min, double max);
  std::optional<Duration> GetDuration(const Value& v, bool positive);
  std::optional<std::string> GetUrl(const Value& v, bool allow_empty);
  // GetUrl (non-empty), also checked as the HTTP client checks it: an API endpoint it calls.
  std::optional<std::string> GetClientUrl(const Value& v);
  std::optional<std::string> GetListen(const Value& v);
  // A string, or a non-empty list of strings; all non-empty.
  std::optional<std::vector<std::string>> GetStrings(const Value& v);

  void ParseServer(const Value& v);
  void ParseStorage(const Value& v);
  void ParseRetry(const Value& v, RetryOverride* out);
  void ParseSources(const Value& v);
  void ParseSource(const Value& v, SourceConfig* out);
  void ParseSinks(const Value& v);
  void ParseSink(const Value& v, SinkConfig* out);
  // An http sink's `url`: a literal URL the HTTP client accepts, or a template whose scheme and
  // host are literal. `out` is null when the sink's type is not http (the value is still checked).
  void ParseSinkUrl(const Value& v, HttpSinkConfig* out);
  void ParseRoutes(const Value& v);
  void ParseRoute(const Value& v, RouteConfig* out);
  void ParseTarget(const Value& v, bool enrich_issue, RouteTarget* out);
  // Checks the pushover fields of `target` whose templates are literal (`literals` by field name).
  void CheckPushoverFields(const Value& target, const std::map<std::string, Literal>& literals);

  std::optional<rules::Matcher> CompileMatcher(const Value& v, bool enrich_issue);
  // Compiles the template at `v`. A template reading $issue.* is an error unless `enrich_issue`;
  // `issue_note` says why.
  std::optional<rules::Template> CompileTemplate(const Value& v, bool enrich_issue, Text* text,
                                                 std::string_view issue_note = kRouteIssueNote);
  // Notes the metadata a matcher or template at `v` reads (kept headers, $installation.org);
  // false (and an error) if it reads a credential header, which is never kept.
  bool NoteMetadata(const Value& v, const std::vector<const rules::Path*>& paths);
  // Where byte `offset` of the scalar's decoded text is in the file (0-based line and column;
  // best effort: exact for single-line plain and quoted scalars and for block scalars (| and >)
  // whose text was not changed by interpolation; otherwise the scalar's own position).
  YAML::Mark PositionOf(const Value& v, std::string_view decoded, size_t offset) const;
  // PositionOf for a block scalar whose indicator (| or >) is at byte `pos` of the file.
  std::optional<YAML::Mark> BlockPositionOf(size_t pos, std::string_view decoded,
                                            size_t offset) const;
  // Reports quoted scalars in `node` (keys too) whose closing quote is missing: yaml-cpp 0.7
  // accepts one that runs to the end of the file, swallowing every key after it.
  void CheckQuotes(const YAML::Node& node, int depth);
  size_t quote_checks_ = 0;

  std::string file_;
  std::string_view text_;
  LoadScope scope_ = LoadScope::kAll;
  std::vector<ConfigError> errors_;
  Config config_;
  // Every sink and source name defined, even those with errors, so that routes naming them do not
  // add dangling-reference errors on top. Sinks map to their type ("" when unknown).
  std::map<std::string, std::string, std::less<>> sink_types_;
  std::set<std::string, std::less<>> source_names_;
};

void Loader::ErrorAt(const YAML::Mark& mark, int column, std::string message) {
  ConfigError error;
  error.file = file_;
  error.line = mark.is_null() ? 1 : mark.line + 1;
  error.column = mark.is_null() ? 1 : column + 1;
  error.message = std::move(message);
  errors_.push_back(std::move(error));
}

std::vector<Entry> Loader::Entries(const Value& v, bool check, KeyList known,
                                   std::string_view note) {
  std::vector<Entry> entries;
  if (v.node.IsNull()) return entries;
  if (!v.node.IsMap()) {
    Error(v, std::string("expected a map, got ") + Describe(v.node));
    return entries;
  }
  std::map<std::string, int, std::less<>> first_line;
  const std::string prefix = v.path.empty() ? "" : v.path + ": ";
  for (const auto& kv : v.node) {
    const YAML::Node key = kv.first;
    if (!key.IsScalar() || key.Scalar().empty()) {
      Error(key.Mark(), prefix + "keys must be non-empty strings");
      continue;
    }
    const std::string& name = key.Scalar();
    auto [it, inserted] = first_line.emplace(name, key.Mark().line + 1);
    if (!inserted) {
      Error(key.Mark(), prefix + "duplicate key " + Quote(name) + " (first at line " +
                            std::to_string(it->second) + ")");
      continue;
    }
    if (check && !Contains(known, name)) {
      std::string where = v.path.empty() ? "at top level" : "in " + v.path;
      std::string list = note.empty() ? "known: " + Join(known) : std::string(note);
      Error(key.Mark(), "unknown key " + Quote(name) + " " + where + " (" + list + ")");
      continue;
    }
    Entry entry;
    entry.key = name;
    entry.value.path = v.path.empty() ? name : v.path + "." + name;
    entry.value.node = kv.second;
    entry.value.mark = kv.second.IsNull() ? key.Mark() : kv.second.Mark();
    entry.value.key_mark = key.Mark();
    entries.push_back(std::move(entry));
  }
  return entries;
}

std::vector<Value> Loader::Items(const Value& v, std::string_view expected) {
  std::vector<Value> items;
  if (v.node.IsNull()) return items;
  if (!v.node.IsSequence()) {
    Error(v, "expected " + std::string(expected) + ", got " + Describe(v.node));
    return items;
  }
  size_t i = 0;
  for (const YAML::Node& item : v.node) {
    Value value;
    value.path = v.path + "[" + std::to_string(i++) + "]";
    value.node = item;
    value.mark = item.IsNull() ? v.mark : item.Mark();
    value.key_mark = value.mark;
    items.push_back(std::move(value));
  }
  return items;
}

std::optional<Value> Loader::Find(const Value& v, std::string_view key) {
  if (!v.node.IsMap()) return std::nullopt;
  for (const auto& kv : v.node) {
    if (kv.first.IsScalar() && kv.first.Scalar() == key) {
      Value value;
      value.path = v.path.empty() ? std::string(key) : v.path + "." + std::string(key);
      value.node = kv.second;
      value.mark = kv.second.IsNull() ? kv.first.Mark() : kv.second.Mark();
      value.key_mark = kv.first.Mark();
      return value;
    }
  }
  return std::nullopt;
}

std::optional<Text> Loader::GetText(const Value& v, std::string_view expected) {
  if (!v.node.IsScalar()) {
    Error(v, "expected " + std::string(expected) + ", got " + Describe(v.node));
    return std::nullopt;
  }
  Text text;
  text.raw = v.node.Scalar();
  size_t offset = 0;
  Result<std::string> value = Interpolate(text.raw, &text.substituted, &offset);
  if (!value.ok()) {
    const YAML::Mark at = PositionOf(v, text.raw, offset);
    ErrorAt(at, at.column, v.path + ": " + value.status().message());
    return std::nullopt;
  }
  text.value = std::move(value).value();
  return text;
}

std::optional<std::string> Loader::GetString(const Value& v) {
  std::optional<Text> text = GetText(v, "a string");
  if (!text) return std::nullopt;
  return std::move(text->value);
}

std::optional<std::string> Loader::GetNonEmpty(const Value& v) {
  std::optional<Text> text = GetNonEmptyText(v);
  if (!text) return std::nullopt;
  return std::move(text->value);
}

std::optional<Text> Loader::GetNonEmptyText(const Value& v) {
  std::optional<Text> text = GetText(v, "a non-empty string");
  if (!text) return std::nullopt;
  if (text->value.empty()) {
    Error(v, text->substituted ? "must not be empty (got " + text->Shown() + ")"
                               : "must not be empty");
    return std::nullopt;
  }
  return text;
}

std::optional<bool> Loader::GetBool(const Value& v) {
  std::optional<Text> text = GetText(v, "true or false");
  if (!text) return std::nullopt;
  if (text->value == "true") return true;
  if (text->value == "false") return false;
  Error(v, "expected true or false, got " + text->Shown());
  return std::nullopt;
}

std::optional<int64_t> Loader::GetInt(const Value& v, int64_t min, int64_t max) {
  std::string expected = "an integer";
  if (max == std::numeric_limits<int64_t>::max()) {
    expected += " >= " + std::to_string(min);
  } else {
    expected += " in " + std::to_string(min) + ".." + std::to_string(max);
  }
  std::optional<Text> text = GetText(v, expected);
  if (!text) return std::nullopt;
  std::optional<int64_t> n = ParseInt(text->value);
  if (!n || *n < min || *n > max) {
    Error(v, "expected " + expected + ", got " + text->Shown());
    return std::nullopt;
  }
  return n;
}

std::optional<double> Loader::GetNumber(const Value& v, double min, double max) {
  std::ostringstream expected;
  expected << "a number ";
  if (max == std::numeric_limits<double>::infinity()) {
    expected << ">= " << min;
  } else {
    expected << "in [" << min << ", " << max << "]";
  }
  std::optional<Text> text = GetText(v, expected.str());
  if (!text) return std::nullopt;
  std::optional<double> n = ParseNumber(text->value);
  if (!n || *n < min || *n > max) {
    Error(v, "expected " + expected.str() + ", got " + text->Shown());
    return std::nullopt;
  }
  return n;
}

std::optional<Duration> Loader::GetDuration(const Value& v, bool positive) {
  static constexpr std::string_view kForms = "a duration like 250ms, 5s, 10m, 8h, 7d or 1h30m";
  std::optional<Text> text = GetText(v, kForms);
  if (!text) return std::nullopt;
  std::optional<Duration> d = ParseDuration(text->value);
  if (!d) {
    Error(v, "expected " + std::string(kForms) + (positive ? "" : " (or 0)") + ", got " +
                 text->Shown());
    return std::nullopt;
  }
  if (positive && d->count() == 0) {
    Error(v, "must be greater than 0, got " + text->Shown());
    return std::nullopt;
  }
  // A bound for every duration: timestamps plus durations (a delivery's deadline, a retention
  // cut-off) then stay far inside int64 milliseconds.
  if (*d > kMaxDuration) {
    Error(v, "must be at most 36500d (100 years), got " + text->Shown());
    return std::nullopt;
  }
  return d;
}

std::optional<std::string> Loader::GetUrl(const Value& v, bool allow_empty) {
  std::optional<Text> text = GetText(v, "an http:// or https:// URL");
  if (!text) return std::nullopt;
  if (text->value.empty() && allow_empty) return std::string();
  if (!IsHttpUrl(text->value)) {
    Error(v, "expected an http:// or https:// URL, got " + text->Shown());
    return std::nullopt;
  }
  return std::move(text->value);
}

std::optional<std::string> Loader::GetClientUrl(const Value& v) {
  std::optional<std::string> url = GetUrl(v, false);
  if (!url) return std::nullopt;
  // What the HTTP client would refuse at every call (userinfo, a bad port); never repeats the URL.
  if (Status st = httpclient::ValidateUrl(*url); !st.ok()) {
    Error(v, st.message());
    return std::nullopt;
  }
  return url;
}

std::optional<std::string> Loader::GetListen(const Value& v) {
  static constexpr std::string_view kForms =
      "IPV4:PORT, [IPV6]:PORT, localhost:PORT or *:PORT with PORT in 0..65535";
  std::optional<Text> text = GetText(v, kForms);
  if (!text) return std::nullopt;
  // The listener's own parser: what passes here binds (or fails only for the port being taken).
  Result<ListenAddress> address = ParseListenAddress(text->value);
  if (!address.ok()) {
    Error(v, "expected " + std::string(kForms) + ", got " + text->Shown() + ": " +
                 address.status().message());
    return std::nullopt;
  }
  return std::move(text->value);
}

std::optional<std::vector<std::string>> Loader::GetStrings(const Value& v) {
  static constexpr std::string_view kExpected = "a string or a list of strings";
  std::vector<Value> items;
  if (v.node.IsSequence()) {
    items = Items(v, kExpected);
    if (items.empty()) {
      Error(v, "an empty list matches nothing; omit the key to match any");
      return std::nullopt;
    }
  } else {
    items.push_back(v);
  }
  std::vector<std::string> out;
  bool ok = true;
  for (const Value& item : items) {
    std::optional<Text> text = GetText(item, kExpected);
    if (!text) {
      ok = false;
    } else if (text->value.empty()) {
      Error(item, "must not be empty");
      ok = false;
    } else {
      out.push_back(std::move(text->value));
    }
  }
  if (!ok) return std::nullopt;
  return out;
}

YAML::Mark Loader::PositionOf(const Value& v, std::string_view decoded, size_t offset) const {
  const YAML::Mark mark = v.node.Mark();
  if (mark.is_null() || !v.node.IsScalar() || mark.pos < 0 ||
      static_cast<size_t>(mark.pos) >= text_.size()) {
    return v.mark;
  }
  auto at_column = [&mark](int column) {
    YAML::Mark m = mark;
    m.column = column;
    return m;
  };
  const size_t pos = static_cast<size_t>(mark.pos);
  const char quote = text_[pos];
  if (quote == '|' || quote == '>') return BlockPositionOf(pos, decoded, offset).value_or(mark);
  if (quote != '\'' && quote != '"') {
    // Plain scalar: exact only when it is written on one line as is.
    if (text_.compare(pos, decoded.size(), decoded) == 0 && offset <= decoded.size()) {
      return at_column(mark.column + static_cast<int>(offset));
    }
    return mark;
  }
  // Quoted scalar: walk the source, mapping decoded bytes to source bytes, on one line only.
  size_t src = pos + 1;
  for (size_t d = 0; d < offset; ++d) {
    if (src >= text_.size() || text_[src] == '\n' || text_[src] == '\r') return mark;
    char c = text_[src];
    if (quote == '\'' && c == '\'') {
      if (src + 1 < text_.size() && text_[src + 1] == '\'') {
        src += 2;
        continue;
      }
      return mark;
    }
    if (quote == '"' && c == '"') return mark;
    if (quote == '"' && c == '\\') {
      // Escapes that decode to one byte; others (\x, \u, \N, ...) end the mapping.
      if (src + 1 >= text_.size() ||
          std::string_view("0abtnvfre \"/\\\t").find(text_[src + 1]) == std::string_view::npos) {
        return mark;
      }
      src += 2;
      continue;
    }
    ++src;
  }
  return at_column(mark.column + static_cast<int>(src - pos));
}

void Loader::CheckQuotes(const YAML::Node& node, int depth) {
  // Bounded: deeper than any config, or more nodes than any has (aliases make a small file a
  // huge tree), is left to the schema checks.
  if (depth > 64 || ++quote_checks_ > 100000) return;
  if (node.IsMap()) {
    for (const auto& kv : node) {
      CheckQuotes(kv.first, depth + 1);
      CheckQuotes(kv.second, depth + 1);
    }
    return;
  }
  if (node.IsSequence()) {
    for (const auto& item : node) CheckQuotes(item, depth + 1);
    return;
  }
  const YAML::Mark mark = node.Mark();
  if (!node.IsScalar() || mark.is_null() || mark.pos < 0 ||
      static_cast<size_t>(mark.pos) >= text_.size()) {
    return;
  }
  const size_t pos = static_cast<size_t>(mark.pos);
  const char quote = text_[pos];
  if (quote != '\'' && quote != '"') return;
  for (size_t i = pos + 1; i < text_.size(); ++i) {
    if (quote == '"' && text_[i] == '\\') {
      ++i;
    } else if (text_[i] == quote) {
      if (quote == '\'' && i + 1 < text_.size() && text_[i + 1] == '\'') {
        ++i;  // '' is an escaped quote
        continue;
      }
      return;
    }
  }
  ErrorAt(mark, mark.column,
          std::string("YAML syntax error: unclosed quote: this ") +
              (quote == '"' ? "double" : "single") + "-quoted string has no closing " + quote);
}

std::optional<YAML::Mark> Loader::BlockPositionOf(size_t pos, std::string_view decoded,
                                                  size_t offset) const {
  // The content starts on the line after the indicator; its indentation is the first non-empty
  // line's. Each content line's text (indentation removed) appears in the decoded text in
  // order, separated by line breaks (|) or by spaces and line breaks (>).
  size_t line_start = text_.find('\n', pos);
  if (line_start == std::string_view::npos) return std::nullopt;
  ++line_start;
  int line = 0;
  for (size_t i = 0; i < pos; ++i) line += text_[i] == '\n';
  size_t indent = std::string_view::npos;
  size_t d = 0;  // decoded bytes matched so far
  while (line_start < text_.size()) {
    ++line;
    size_t line_end = text_.find('\n', line_start);
    if (line_end == std::string_view::npos) line_end = text_.size();
    std::string_view source = text_.substr(line_start, line_end - line_start);
    if (!source.empty() && source.back() == '\r') source.remove_suffix(1);
    const size_t lead = std::min(source.find_first_not_of(' '), source.size());
    if (lead < source.size()) {  // not blank
      if (indent == std::string_view::npos) indent = lead;
      if (lead < indent) return std::nullopt;  // the block ended before the offset
      std::string_view content = source.substr(indent);
      while (d < decoded.size() && (decoded[d] == '\n' || decoded[d] == ' ') &&
             decoded.compare(d, content.size(), content) != 0) {
        ++d;
      }
      if (decoded.compare(d, content.size(), content) != 0) return std::nullopt;
      if (offset <= d + content.size()) {
        if (offset < d) return std::nullopt;
        YAML::Mark m;
        m.pos = static_cast<int>(line_start + indent + (offset - d));
        m.line = line;
        m.column = static_cast<int>(indent + (offset - d));
        return m;
      }
      d += content.size();
    }
    line_start = line_end + 1;
  }
  return std::nullopt;
}

std::optional<rules::Matcher> Loader::CompileMatcher(const Value& v, bool enrich_issue) {
  std::optional<Text> text = GetText(v, "a matcher string like 'data.issue.level = \"error\"'");
  if (!text) return std::nullopt;
  size_t offset = 0;
  Result<rules::Matcher> matcher = rules::Matcher::Parse(text->value, &offset);
  if (!matcher.ok()) {
    if (text->substituted) {
      Error(v, "invalid matcher (after interpolating " + Quote(text->raw) + ")");
    } else {
      const YAML::Mark at = text->value == text->raw ? PositionOf(v, text->value, offset) : v.mark;
      ErrorAt(at, at.column, v.path + ": invalid matcher: " + matcher.status().message());
    }
    return std::nullopt;
  }
  if (matcher->path().NeedsIssue() && !enrich_issue) {
    Error(v, "reads $issue.* but the route has no \"enrich: [issue]\"");
    return std::nullopt;
  }
  if (!NoteMetadata(v, {&matcher->path()})) return std::nullopt;
  return std::move(matcher).value();
}

std::optional<rules::Template> Loader::CompileTemplate(const Value& v, bool enrich_issue,
                                                       Text* text_out,
                                                       std::string_view issue_note) {
  std::optional<Text> text = GetText(v, "a template string");
  if (!text) return std::nullopt;
  size_t offset = 0;
  Result<rules::Template> tmpl = rules::Template::Parse(text->value, &offset);
  if (!tmpl.ok()) {
    if (text->substituted) {
      Error(v, "invalid template (after interpolating " + Quote(text->raw) + ")");
    } else {
      const YAML::Mark at = text->value == text->raw ? PositionOf(v, text->value, offset) : v.mark;
      ErrorAt(at, at.column, v.path + ": invalid template: " + tmpl.status().message());
    }
    return std::nullopt;
  }
  if (tmpl->NeedsIssue() && !enrich_issue) {
    Error(v, "reads $issue.* but " + std::string(issue_note));
    return std::nullopt;
  }
  if (!NoteMetadata(v, tmpl->Paths())) return std::nullopt;
  *text_out = std::move(*text);
  return std::move(tmpl).value();
}

bool Loader::NoteMetadata(const Value& v, const std::vector<const rules::Path*>& paths) {
  for (const rules::Path* path : paths) {
    if (path->root == rules::Path::Root::kInstallationOrg) config_.reads_installation_org = true;
    if (path->root != rules::Path::Root::kHeader || path->segments.size() != 1) continue;
    const std::string& name = path->segments[0];  // lower-case (ParsePath)
    if (std::find(std::begin(kCredentialHeaders), std::end(kCredentialHeaders), name) !=
        std::end(kCredentialHeaders)) {
      Error(v, "reads " + path->text + ", a credential: routes cannot read it (it is never " +
                   "stored)");
      return false;
    }
    if (std::find(config_.kept_headers.begin(), config_.kept_headers.end(), name) ==
        config_.kept_headers.end()) {
      config_.kept_headers.push_back(name);
    }
  }
  return true;
}

void Loader::ParseServer(const Value& v) {
  ServerConfig& s = config_.server;
  std::optional<Value> listen_value;
  for (const Entry& e : Entries(v, kServerKeys)) {
    const Value& f = e.value;
    const std::string& k = e.key;
    if (k == "listen") {
      if (auto x = GetListen(f)) s.listen = *x;
      listen_value = f;
    } else if (k == "admin_listen") {
      if (auto x = GetListen(f)) s.admin_listen = *x;
    } else if (k == "admin_token") {
      // Empty turns admin authentication off: only when written so. A reference that expands
      // to "" (an empty secret file, an unset ${env:X:-}) is a mistake that would open
      // /admin/* to everyone who reaches admin_listen.
      if (auto x = GetText(f, "a string")) {
        // A trailing newline (an ${env:} set from a file, a block scalar) is never part of it.
        while (!x->value.empty() && (x->value.back() == '\n' || x->value.back() == '\r')) {
          x->value.pop_back();
        }
        if (x->substituted && x->value.empty()) {
          Error(f, "expanded to an empty string (" + x->raw +
                       "), which would turn admin authentication off; write admin_token: \"\" "
                       "to mean that");
        } else if (std::any_of(x->value.begin(), x->value.end(),
                               [](unsigned char c) { return c < 0x20 || c == 0x7f; }) ||
                   (!x->value.empty() && (x->value.front() == ' ' || x->value.back() == ' '))) {
          // A header value loses its surrounding spaces, and cannot carry control characters.
          Error(f, x->substituted ? "must not start or end with a space or hold control "
                                    "characters (" +
                                        x->raw + ")"
                                  : std::string("must not start or end with a space or hold "
                                                "control characters"));
        } else {
          s.admin_token = std::move(x->value);
        }
      }
    } else if (k == "threads") {
      if (auto x = GetInt(f, 0, kMaxThreads)) s.threads = static_cast<int>(*x);
    } else if (k == "max_body_bytes") {
      if (auto x = GetInt(f, 1, kMaxBodyBytesLimit)) s.max_body_bytes = *x;
    } else if (k == "max_header_bytes") {
      if (auto x = GetInt(f, 1, kMaxHeaderBytesLimit)) s.max_header_bytes = *x;
    } else if (k == "header_timeout") {
      if (auto x = GetDuration(f, true)) s.header_timeout = *x;
    } else if (k == "body_timeout") {
      if (auto x = GetDuration(f, true)) s.body_timeout = *x;
    } else if (k == "idle_timeout") {
      if (auto x = GetDuration(f, true)) s.idle_timeout = *x;
    } else if (k == "max_connections") {
      if (auto x = GetInt(f, 1, std::numeric_limits<uint32_t>::max())) {
        s.max_connections = static_cast<uint32_t>(*x);
      }
    } else if (k == "max_json_depth") {
      if (auto x = GetInt(f, 1, kMaxJsonDepthLimit)) {
        s.max_json_depth = static_cast<uint32_t>(*x);
      }
    } else if (k == "public_url") {
      if (auto x = GetUrl(f, true)) s.public_url = *x;
    } else if (k == "shutdown_timeout") {
      if (auto x = GetDuration(f, false)) s.shutdown_timeout = *x;
    }
  }
}

void Loader::ParseStorage(const Value& v) {
  StorageConfig& s = config_.storage;
  for (const Entry& e : Entries(v, kStorageKeys)) {
    const Value& f = e.value;
    if (e.key == "path") {
      if (auto x = GetNonEmpty(f)) s.path = *x;
    } else if (e.key == "sync") {
      if (auto x = GetBool(f)) s.sync = *x;
    } else if (e.key == "dedupe_window") {
      if (auto x = GetDuration(f, false)) s.dedupe_window = *x;
    } else if (e.key == "dlq_retention") {
      if (auto x = GetDuration(f, true)) s.dlq_retention = *x;
    } else if (e.key == "min_free_bytes") {
      if (auto x = GetInt(f, 0, std::numeric_limits<int64_t>::max())) s.min_free_bytes = *x;
    } else if (e.key == "max_disk_bytes") {
      if (auto x = GetInt(f, 0, std::numeric_limits<int64_t>::max())) s.max_disk_bytes = *x;
    }
  }
}

void Loader::ParseRetry(const Value& v, RetryOverride* out) {
  constexpr double kInf = std::numeric_limits<double>::infinity();
  for (const Entry& e : Entries(v, kRetryKeys)) {
    const Value& f = e.value;
    if (e.key == "initial") {
      out->initial = GetDuration(f, true);
    } else if (e.key == "multiplier") {
      out->multiplier = GetNumber(f, 1, kInf);
    } else if (e.key == "max_delay") {
      out->max_delay = GetDuration(f, true);
    } else if (e.key == "jitter") {
      out->jitter = GetNumber(f, 0, 1);
    } else if (e.key == "max_attempts") {
      if (auto x = GetInt(f, 1, std::numeric_limits<uint32_t>::max())) {
        out->max_attempts = static_cast<uint32_t>(*x);
      }
    } else if (e.key == "max_age") {
      out->max_age = GetDuration(f, true);
    }
  }
}

void Loader::ParseSources(const Value& v) {
  for (const Entry& e : Entries(v, false, {})) {
    source_names_.insert(e.key);
    if (!IsValidName(e.key)) {
      Error(e.value.key_mark, v.path + ": invalid source name " + Quote(e.key) +
                                  " (lower-case letters, digits, '_' and '-', starting with a "
                                  "letter or digit; it appears in /hooks/<name>)");
      continue;
    }
    SourceConfig source;
    source.name = e.key;
    ParseSource(e.value, &source);
    config_.sources.push_back(std::move(source));
  }
}

void Loader::ParseSource(const Value& v, SourceConfig* out) {
  if (!Find(v, "type") && (v.node.IsMap() || v.node.IsNull())) {
    Error(v.key_mark, v.path + ": missing required key \"type\" (type: sentry)");
  }
  for (const Entry& e : Entries(v, kSourceKeys)) {
    const Value& f = e.value;
    const std::string& k = e.key;
    if (k == "type") {
      if (auto x = GetText(f, "a string")) {
        if (x->value != "sentry") {
          Error(f, "unknown source type " + x->Shown() + " (known: sentry)");
        } else {
          out->type = x->value;
        }
      }
    } else if (k == "client_id") {
      if (auto x = GetString(f)) out->client_id = *x;
    } else if (k == "client_secret") {
      if (auto x = GetString(f)) out->client_secret = *x;
    } else if (k == "api_url") {
      if (auto x = GetClientUrl(f)) {
        // The base of every API path (api_url + "/api/0/..."): a query or fragment would end
        // up in front of the path.
        if (x->find_first_of("?#") != std::string::npos) {
          Error(f, "must be a base URL without a query or fragment (like https://sentry.io)");
        } else {
          out->api_url = *x;
        }
      }
    } else if (k == "verify_install") {
      if (auto x = GetBool(f)) out->verify_install = *x;
    } else if (k == "token") {
      if (auto x = GetString(f)) out->token = *x;
    } else if (k == "org") {
      if (auto x = GetString(f)) out->org = *x;
    } else if (k == "refresh_before") {
      if (auto x = GetDuration(f, false)) out->refresh_before = *x;
    } else if (k == "after_install_url") {
      if (auto x = GetUrl(f, true)) out->after_install_url = *x;
    } else if (k == "max_clock_skew") {
      if (auto x = GetDuration(f, false)) out->max_clock_skew = *x;
    }
  }
  if (!out->token.empty() && out->org.empty()) {
    // Its API calls (enrichment) name the organization: /api/0/organizations/<org>/issues/...
    Error(v.key_mark, v.path +
                          ": \"token\" (an internal integration) needs \"org\", the "
                          "organization slug its API calls name");
  }
}

void Loader::ParseSinks(const Value& v) {
  for (const Entry& e : Entries(v, false, {})) {
    sink_types_[e.key] = "";
    if (!IsValidName(e.key)) {
      Error(e.value.key_mark, v.path + ": invalid sink name " + Quote(e.key) +
                                  " (lower-case letters, digits, '_' and '-', starting with a "
                                  "letter or digit)");
      continue;
    }
    SinkConfig sink;
    sink.name = e.key;
    sink.line = e.value.key_mark.line + 1;
    ParseSink(e.value, &sink);
    sink_types_[e.key] = sink.type;
    config_.sinks.push_back(std::move(sink));
  }
}

void Loader::ParseSink(const Value& v, SinkConfig* out) {
  // The type decides which keys are known, so it is read first.
  std::optional<Value> type_value = Find(v, "type");
  if (type_value) {
    if (std::optional<Text> type = GetText(*type_value, "a string")) {
      if (type->value == "pushover" || type->value == "http" || type->value == "file") {
        out->type = type->value;
      } else {
        Error(*type_value, "unknown sink type " + type->Shown() + " (known: pushover, http, file)");
      }
    }
  } else if (v.node.IsMap() || v.node.IsNull()) {
    Error(v.key_mark, v.path + ": missing required key \"type\" (pushover, http or file)");
  }
  std::vector<std::string_view> known(std::begin(kSinkCommonKeys), std::end(kSinkCommonKeys));
  auto add = [&known](KeyList keys) { known.insert(known.end(), keys.begin(), keys.end()); };
  std::string note;
  if (out->type == "pushover") {
    add(kPushoverSinkKeys);
    out->settings = PushoverSinkConfig{};
  } else if (out->type == "http") {
    add(kHttpSinkKeys);
    out->settings = HttpSinkConfig{};
  } else if (out->type == "file") {
    add(kFileSinkKeys);
    out->settings = FileSinkConfig{};
  } else {
    add(kPushoverSinkKeys);
    add(kHttpSinkKeys);
    add(kFileSinkKeys);
  }
  if (!out->type.empty()) note = "known for type " + out->type + ": " + Join(known);

  bool has_url = false;
  bool has_path = false;
  bool has_concurrency = false;
  for (const Entry& e : Entries(v, known, note)) {
    const Value& f = e.value;
    const std::string& k = e.key;
    auto* pushover = std::get_if<PushoverSinkConfig>(&out->settings);
    auto* http = std::get_if<HttpSinkConfig>(&out->settings);
    auto* file = std::get_if<FileSinkConfig>(&out->settings);
    if (out->type.empty()) {
      pushover = nullptr;
      http = nullptr;
      file = nullptr;
    }
    if (k == "type") {
      continue;
    } else if (k == "rate") {
      if (std::optional<Text> text = GetText(f, "a rate like \"2/s\"")) {
        if (std::optional<Rate> rate = ParseRate(text->value)) {
          out->rate = *rate;
        } else {
          Error(f, "expected a rate like \"2/s\", got " + text->Shown() +
                       " (N/s, N/m or N/h with N > 0)");
        }
      }
    } else if (k == "concurrency") {
      has_concurrency = true;
      if (auto x = GetInt(f, 1, std::numeric_limits<uint32_t>::max())) {
        out->concurrency = static_cast<uint32_t>(*x);
      }
    } else if (k == "retry") {
      ParseRetry(f, &out->retry);
    } else if (k == "token") {
      auto x = GetString(f);
      if (x && pushover) pushover->token = *x;
    } else if (k == "user") {
      auto x = GetString(f);
      if (x && pushover) pushover->user = *x;
    } else if (k == "api_url") {
      auto x = GetClientUrl(f);
      if (x && pushover) pushover->api_url = *x;
    } else if (k == "url") {
      has_url = true;
      ParseSinkUrl(f, http);
    } else if (k == "method") {
      if (auto x = GetText(f, "a string")) {
        if (!Contains(kMethods, x->value)) {
          Error(f, "expected one of " + Join(kMethods) + ", got " + x->Shown());
        } else if (http) {
          http->method = x->value;
        }
      }
    } else if (k == "headers") {
      std::vector<std::string> lower_names;
      for (const Entry& h : Entries(f, false, {})) {
        if (!httpclient::IsHttpToken(h.key)) {
          Error(h.value.key_mark, f.path + ": invalid header name " + Quote(h.key));
          continue;
        }
        std::string lower = AsciiLower(h.key);
        if (lower == "host") {  // the client sets it from the URL and refuses one given
          Error(h.value.key_mark, f.path + ": header " + Quote(h.key) +
                                      " is set from the url (put that host name in the url)");
          continue;
        }
        if (std::find(lower_names.begin(), lower_names.end(), lower) != lower_names.end()) {
          Error(h.value.key_mark,
                f.path + ": header " + Quote(h.key) + " is given twice (header names ignore case)");
          continue;
        }
        lower_names.push_back(lower);
        Text text;
        // A template (rendered per delivery; the sink turns control characters in what it
        // inserts into spaces), or literal text when it has no placeholders.
        std::optional<rules::Template> tmpl =
            CompileTemplate(h.value, /*enrich_issue=*/false, &text, kSinkIssueNote);
        if (!tmpl) continue;
        // Never shown: header values are often secrets.
        if (text.value.find_first_of(std::string_view("\r\n\0", 3)) != std::string::npos) {
          Error(h.value, "header value must not contain CR, LF or NUL");
          continue;
        }
        if (!http) continue;
        if (!tmpl->IsLiteral()) http->header_templates.emplace(h.key, std::move(*tmpl));
        http->headers.emplace_back(h.key, std::move(text.value));
      }
    } else if (k == "timeout") {
      auto x = GetDuration(f, true);
      if (x && http) http->timeout = *x;
    } else if (k == "body") {
      Text text;
      auto x = CompileTemplate(f, /*enrich_issue=*/false, &text, kSinkIssueNote);
      if (x && http) http->body = std::move(*x);
    } else if (k == "path") {
      has_path = true;
      auto x = GetNonEmpty(f);
      if (x && file) file->path = *x;
    }
  }
  if (out->type == "pushover" && !has_concurrency) out->concurrency = kPushoverDefaultConcurrency;
  if (out->type == "file" && !has_concurrency) out->concurrency = kFileDefaultConcurrency;
  if (out->type == "http" && !has_url) {
    Error(v.key_mark, v.path + ": missing required key \"url\" (http sinks)");
  }
  if (out->type == "file" && !has_path) {
    Error(v.key_mark, v.path + ": missing required key \"path\" (file sinks)");
  }
}

void Loader::ParseSinkUrl(const Value& v, HttpSinkConfig* out) {
  static constexpr std::string_view kExpected = "an http:// or https:// URL";
  if (!v.node.IsScalar()) {
    Error(v, "expected " + std::string(kExpected) + ", got " + Describe(v.node));
    return;
  }
  Text text;
  std::optional<rules::Template> tmpl =
      CompileTemplate(v, /*enrich_issue=*/false, &text, kSinkIssueNote);
  if (!tmpl) return;
  // The part the template cannot change: all of it, or what comes before the first placeholder.
  const size_t open = tmpl->IsLiteral() ? std::string::npos : text.value.find("{{");
  std::string_view fixed = std::string_view(text.value).substr(0, open);
  if (!tmpl->IsLiteral()) {
    // Placeholders only after the host: the payload never picks the server, and the scheme and
    // host are checked here. The rendered URL is checked per delivery (an invalid one is a
    // permanent failure).
    const size_t scheme_end = fixed.find("://");
    if (scheme_end == std::string_view::npos ||
        fixed.find_first_of("/?#", scheme_end + 3) == std::string_view::npos) {
      const YAML::Mark at = text.substituted ? v.mark : PositionOf(v, text.value, open);
      ErrorAt(at, at.column,
              v.path +
                  ": a placeholder in the scheme or host; templates may only fill in the "
                  "path, query or fragment (after the '/' that ends the host)");
      return;
    }
    // A percent escape the placeholder completes is checked once rendered.
    if (fixed.ends_with("%")) {
      fixed.remove_suffix(1);
    } else if (fixed.size() >= 2 && fixed[fixed.size() - 2] == '%') {
      fixed.remove_suffix(2);
    }
  }
  if (!IsHttpUrl(fixed)) {
    Error(v, "expected " + std::string(kExpected) + ", got " + text.Shown());
    return;
  }
  // What the HTTP client would refuse at every delivery (userinfo, a bad port, ...); the URL is
  // not repeated, since its userinfo or query may be a secret.
  if (Status s = httpclient::ValidateUrl(fixed); !s.ok()) {
    Error(v, s.message());
    return;
  }
  if (out) {
    out->url = std::move(text.value);
    out->url_template = std::move(tmpl);
    if (out->url_template->IsLiteral()) out->url_template.reset();
  }
}

void Loader::ParseRoutes(const Value& v) {
  std::map<std::string, int, std::less<>> name_lines;
  for (const Value& item : Items(v, "a list of routes")) {
    RouteConfig route;
    route.line = item.mark.line + 1;
    ParseRoute(item, &route);
    if (std::optional<Value> name = Find(item, "name"); name && !route.name.empty()) {
      auto [it, inserted] = name_lines.emplace(route.name, name->mark.line + 1);
      if (!inserted) {
        // As written: the name may have been interpolated from a secret.
        Error(name->mark, item.path + ".name: duplicate route name " + Quote(name->node.Scalar()) +
                              " (first at line " + std::to_string(it->second) + ")");
      }
    }
    config_.routes.push_back(std::move(route));
  }
}

void Loader::ParseRoute(const Value& v, RouteConfig* out) {
  if (!v.node.IsMap()) {
    Error(v, std::string("expected a route (a map with name and to), got ") + Describe(v.node));
    return;
  }
  std::vector<Entry> entries = Entries(v, kRouteKeys);
  // enrich decides whether $issue.* may be read, so it is read before match and to.
  bool enrich_issue = false;
  const Value* source_value = nullptr;
  for (const Entry& e : entries) {
    if (e.key == "source") source_value = &e.value;
    if (e.key != "enrich") continue;
    for (const Value& item : Items(e.value, "a list like [issue]")) {
      std::optional<Text> what = GetText(item, "a string");
      if (!what) continue;
      if (what->value != "issue") {
        Error(item, "unknown enrichment " + what->Shown() + " (known: issue)");
        continue;
      }
      enrich_issue = true;
      if (out->enrich.empty()) out->enrich.push_back(what->value);
    }
  }
  bool has_name = false;
  bool has_to = false;
  for (const Entry& e : entries) {
    const Value& f = e.value;
    const std::string& k = e.key;
    if (k == "name") {
      has_name = true;
      if (auto x = GetNonEmpty(f)) {
        if (HasControl(*x)) {
          Error(f, "must not contain control characters");
        } else {
          out->name = *x;
        }
      }
    } else if (k == "source") {
      if (auto x = GetNonEmptyText(f)) {
        if (!source_names_.contains(x->value)) {
          Error(f, "unknown source " + x->Shown());
        } else {
          out->source = x->value;
        }
      }
    } else if (k == "resource") {
      if (auto x = GetStrings(f)) out->resources = std::move(*x);
    } else if (k == "action") {
      if (auto x = GetStrings(f)) out->actions = std::move(*x);
    } else if (k == "match" || k == "match_any") {
      auto& list = k == "match" ? out->match : out->match_any;
      std::vector<Value> items = Items(f, "a list of matcher strings");
      if (k == "match_any" && items.empty() && (f.node.IsNull() || f.node.IsSequence())) {
        // "At least one holds" of none never holds; the router took it as "always".
        Error(f, "an empty list matches nothing; omit the key to match any");
      }
      for (const Value& item : items) {
        if (auto m = CompileMatcher(item, enrich_issue)) list.push_back(std::move(*m));
      }
    } else if (k == "stop") {
      if (auto x = GetBool(f)) out->stop = *x;
    } else if (k == "enrich") {
      if (enrich_issue && source_value == nullptr && source_names_.size() != 1) {
        Error(f, "enrich: [issue] needs the route's \"source\" to be set (" +
                     std::to_string(source_names_.size()) + " sources are defined)");
      }
    } else if (k == "to") {
      has_to = true;
      std::vector<Value> targets = Items(f, "a list of sinks");
      if (targets.empty() && (f.node.IsNull() || f.node.IsSequence())) {
        Error(f, "must list at least one sink");
      }
      for (const Value& item : targets) {
        RouteTarget target;
        ParseTarget(item, enrich_issue, &target);
        // A delivery records its route and sink, not which target made it: two targets naming
        // one sink would both render the last one's fields.
        if (!target.sink.empty() &&
            std::any_of(out->to.begin(), out->to.end(),
                        [&](const RouteTarget& t) { return t.sink == target.sink; })) {
          Error(item, "sink " + Quote(target.sink) +
                          " is already a target of this route (use a second sink for a second "
                          "set of fields)");
        }
        out->to.push_back(std::move(target));
      }
    }
  }
  if (!has_name) Error(v.key_mark, v.path + ": missing required key \"name\"");
  if (!has_to) Error(v.key_mark, v.path + ": missing required key \"to\"");
}

void Loader::ParseTarget(const Value& v, bool enrich_issue, RouteTarget* out) {
  if (v.node.IsScalar()) {
    std::optional<Text> name = GetNonEmptyText(v);
    if (!name) return;
    if (!sink_types_.contains(name->value)) {
      Error(v, "unknown sink " + name->Shown());
      return;
    }
    out->sink = name->value;
    return;
  }
  if (!v.node.IsMap()) {
    Error(v,
          std::string("expected a sink name or a map {sink: NAME, ...}, got ") + Describe(v.node));
    return;
  }
  std::string type;  // "" when the sink is unknown: fields are then compiled but not checked
  bool sink_known = false;
  if (std::optional<Value> sink = Find(v, "sink")) {
    if (std::optional<Text> name = GetNonEmptyText(*sink)) {
      auto it = sink_types_.find(name->value);
      if (it == sink_types_.end()) {
        Error(*sink, "unknown sink " + name->Shown());
      } else {
        out->sink = name->value;
        type = it->second;
        sink_known = true;
      }
    }
  } else {
    Error(v.key_mark, v.path + ": missing required key \"sink\"");
  }
  KeyList known = kFileFields;
  std::string note;
  bool check = sink_known && !type.empty();
  if (type == "pushover") {
    known = kPushoverFields;
    note = "fields of pushover sink " + Quote(out->sink) + ": " + Join(kPushoverFields);
  } else if (type == "http") {
    known = kHttpFields;
    note = "fields of http sink " + Quote(out->sink) + ": " + Join(kHttpFields);
  } else if (type == "file") {
    note = "file sink " + Quote(out->sink) + " takes no fields";
  }
  std::map<std::string, Literal> literals;
  for (const Entry& e : Entries(v, check, known, note)) {
    if (e.key == "sink") continue;
    Text text;
    std::optional<rules::Template> tmpl = CompileTemplate(e.value, enrich_issue, &text);
    if (!tmpl) continue;
    if (type == "pushover" && tmpl->IsLiteral()) {
      literals.emplace(e.key, Literal{std::move(text), e.value.mark});
    }
    out->fields.emplace(e.key, std::move(*tmpl));
  }
  if (type == "pushover") CheckPushoverFields(v, literals);
}

void Loader::CheckPushoverFields(const Value& target,
                                 const std::map<std::string, Literal>& literals) {
  constexpr int64_t kNoMax = std::numeric_limits<int64_t>::max();
  auto check = [&](const std::string& field, int64_t min, int64_t max, std::string_view expected) {
    auto it = literals.find(field);
    if (it == literals.end()) return;
    std::optional<int64_t> n = ParseInt(it->second.text.value);
    if (!n || *n < min || *n > max) {
      Error(it->second.mark, target.path + "." + field + ": expected " + std::string(expected) +
                                 ", got " + it->second.text.Shown());
    }
  };
  check("priority", -2, 2, "an integer in -2..2");
  check("retry", kPushoverMinRetry, kNoMax, "an integer >= 30 (seconds)");
  check("expire", 1, kPushoverMaxExpire, "an integer in 1..10800 (seconds)");
  check("ttl", 1, kNoMax, "an integer >= 1 (seconds)");
  check("html", 0, 1, "0 or 1");
  auto priority = literals.find("priority");
  if (priority == literals.end() || ParseInt(priority->second.text.value) != 2) return;
  std::string missing;
  if (!literals.contains("retry")) missing = "\"retry\"";
  if (!literals.contains("expire")) {
    missing += std::string(missing.empty() ? "" : " and ") + "\"expire\"";
  }
  if (missing.empty()) return;
  Error(priority->second.mark, target.path + ".priority: priority 2 (emergency) requires " +
                                   missing + " as literal integers (retry >= 30, expire <= 10800)");
}

LoadResult Loader::Load() {
  // Not YAML::LoadAll: in yaml-cpp 0.7 (Debian 12) it never returns on some malformed input, e.g.
  // a stray ',' where a document starts (jbeder/yaml-cpp#1040, fixed upstream by #1319): the
  // parser reports an empty document there again and again without consuming anything, and
  // LoadAll allocates a node per round until memory runs out (found by fuzz/fuzz_config). So a
  // first pass counts the documents (at most two), stopping where one starts at the same place as
  // the one before, and the first document is then loaded alone.
  std::vector<YAML::Node> docs;
  try {
    const std::string text(text_);
    std::istringstream in(text);
    YAML::Parser parser(in);
    DocumentCounter counter;
    size_t count = 0;
    while (count < 2 && parser.HandleNextDocument(counter)) {
      if (counter.stuck) {
        const size_t pos = static_cast<size_t>(counter.start.pos);
        Error(counter.start,
              "YAML syntax error: unexpected " +
                  (pos < text_.size() ? Quote(text_.substr(pos, 1)) : std::string("content")));
        return {nullptr, std::move(errors_)};
      }
      ++count;
    }
    if (count > 0) docs.push_back(YAML::Load(text));
    if (count > 1) {
      Error(counter.roots.size() > 1 ? counter.roots[1] : counter.start,
            "more than one YAML document; the config is a single document");
    }
  } catch (const YAML::Exception& e) {
    Error(e.mark, "YAML syntax error: " + e.msg);
    return {nullptr, std::move(errors_)};
  }
  Value root;
  if (!docs.empty()) {
    CheckQuotes(docs[0], 0);
    root.node = docs[0];
    root.mark = docs[0].Mark();
    root.key_mark = root.mark;
  }
  std::map<std::string, Value> sections;
  if (!docs.empty() && !root.node.IsNull() && !root.node.IsMap()) {
    Error(root.mark, std::string("expected a map at top level, got ") + Describe(root.node));
  } else if (!docs.empty()) {
    for (Entry& e : Entries(root, kTopKeys)) sections.emplace(e.key, std::move(e.value));
  }
  // Sources and sinks before routes, which refer to them.
  auto section = [&](const char* key) -> const Value* {
    auto it = sections.find(key);
    return it == sections.end() ? nullptr : &it->second;
  };
  if (const Value* v = section("server")) ParseServer(*v);
  if (scope_ == LoadScope::kServerOnly) return Finish();
  if (const Value* v = section("storage")) ParseStorage(*v);
  if (const Value* v = section("retry")) {
    RetryOverride retry;
    ParseRetry(*v, &retry);
    config_.retry = retry.ApplyTo(RetryConfig{});
  }
  if (const Value* v = section("sources")) ParseSources(*v);
  // Before sinks and routes: their templates add the headers they read.
  config_.kept_headers.assign(std::begin(kStandardKeptHeaders), std::end(kStandardKeptHeaders));
  if (const Value* v = section("sinks")) ParseSinks(*v);
  if (const Value* v = section("routes")) ParseRoutes(*v);
  // The same address written two ways (localhost and 127.0.0.1, * and an empty host), or a
  // wildcard and an address it covers (*:8080 and 127.0.0.1:8080): the second listener could
  // not bind it.
  Result<ListenAddress> listen = ParseListenAddress(config_.server.listen);
  Result<ListenAddress> admin_listen = ParseListenAddress(config_.server.admin_listen);
  if (listen.ok() && admin_listen.ok() && ListenAddressesOverlap(*listen, *admin_listen)) {
    const Value* v = section("server");
    std::optional<Value> admin = v ? Find(*v, "admin_listen") : std::nullopt;
    Error(admin ? admin->mark : (v ? v->key_mark : YAML::Mark()),
          "server.admin_listen: must differ from server.listen (" + config_.server.listen + ")");
  }
  return Finish();
}

LoadResult Loader::Finish() {
  LoadResult result;
  if (errors_.empty()) {
    config_.file = file_;
    result.config = std::make_shared<const Config>(std::move(config_));
  }
  std::stable_sort(errors_.begin(), errors_.end(), [](const ConfigError& a, const ConfigError& b) {
    return std::tie(a.line, a.column) < std::tie(b.line, b.column);
  });
  result.errors = std::move(errors_);
  return result;
}

}  // namespace

LoadResult LoadConfigFromString(const std::string& text, const std::string& file, LoadScope scope) {
  std::string_view body = text;
  // yaml-cpp skips a UTF-8 byte order mark without counting it in positions.
  if (body.starts_with("\xEF\xBB\xBF")) body.remove_prefix(3);
  try {
    return Loader(file, body, scope).Load();
  } catch (const std::exception& e) {
    LoadResult result;
    result.errors.push_back({file, 1, 1, std::string("internal error while loading: ") + e.what()});
    return result;
  }
}

LoadResult LoadConfig(const std::string& path, LoadScope scope) {
  auto fail = [&path](std::string why) {
    LoadResult result;
    result.errors.push_back({path, 1, 1, "cannot read the config file: " + why});
    return result;
  };
  std::error_code ec;
  if (!std::filesystem::is_regular_file(path, ec)) {
    return fail(ec ? ec.message() : "not a regular file");
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) return fail(std::strerror(errno));
  std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return fail(std::strerror(errno));
  return LoadConfigFromString(text, path, scope);
}

}  // namespace switchyard::config
