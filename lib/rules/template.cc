#include "rules/template.h"

#include <charconv>
#include <string>

#include "common/ascii.h"
#include "common/json_escape.h"
#include "rules/matcher.h"

namespace switchyard::rules {

namespace {

constexpr char kKnownFilters[] = "truncate(N), default(\"text\"), upper, lower, json, urlencode";
constexpr std::string_view kEllipsis = "\xE2\x80\xA6";  // U+2026 HORIZONTAL ELLIPSIS
// json (up to 6x: \u00XX per control byte) and urlencode (3x) multiply a value's size, so a chain
// of them grows it exponentially; a placeholder may use this many (worst case 6 x 3 x 3 = 54x).
constexpr size_t kMaxGrowingFilters = 3;

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

size_t SkipSpace(std::string_view text, size_t pos) {
  while (pos < text.size() && IsSpace(text[pos])) ++pos;
  return pos;
}

bool IsNameChar(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_'; }

Status ErrorAt(size_t offset, size_t* error_offset, std::string message) {
  if (error_offset != nullptr) *error_offset = offset;
  return InvalidArgument(std::move(message));
}

// Returns the byte offset where code point `n` (0-based) starts, or npos if `s` has at most n
// code points. Counts every byte that is not a UTF-8 continuation byte as a code point start,
// so invalid UTF-8 is handled without reading out of bounds.
size_t CodePointOffset(std::string_view s, size_t n) {
  size_t seen = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    if ((static_cast<unsigned char>(s[i]) & 0xC0) != 0x80) {
      if (seen == n) return i;
      ++seen;
    }
  }
  return std::string_view::npos;
}

// Cuts `s` to at most `n` code points (n >= 1); if anything is cut, the last kept code point
// is replaced by "…" so the result still has at most n code points.
void Truncate(std::string* s, size_t n) {
  if (CodePointOffset(*s, n) == std::string_view::npos) return;
  s->resize(CodePointOffset(*s, n - 1));
  s->append(kEllipsis);
}

// Percent-encodes every byte except the RFC 3986 unreserved set (ALPHA DIGIT - . _ ~).
std::string UrlEncode(std::string_view s) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    const auto b = static_cast<unsigned char>(c);
    if ((b >= 'A' && b <= 'Z') || (b >= 'a' && b <= 'z') || (b >= '0' && b <= '9') || b == '-' ||
        b == '.' || b == '_' || b == '~') {
      out += c;
    } else {
      out += '%';
      out += kHex[b >> 4];
      out += kHex[b & 0xF];
    }
  }
  return out;
}

// Parses the filter at text[pos] (just after '|' and any spaces). On success appends it to
// *filters and returns the offset just past it.
Result<size_t> ParseFilter(std::string_view text, size_t pos,
                           std::vector<Template::Filter>* filters, size_t* error_offset) {
  using Kind = Template::Filter::Kind;
  const size_t name_begin = pos;
  while (pos < text.size() && IsNameChar(text[pos])) ++pos;
  const std::string_view name = text.substr(name_begin, pos - name_begin);
  if (name.empty()) {
    return ErrorAt(
        name_begin, error_offset,
        std::string("expected a filter name after '|'; known filters: ") + kKnownFilters);
  }
  const size_t after_name = SkipSpace(text, pos);
  const bool has_args = after_name < text.size() && text[after_name] == '(';

  Template::Filter filter{};
  if (name == "truncate" || name == "default") {
    if (!has_args) {
      return ErrorAt(after_name, error_offset,
                     name == "truncate" ? "truncate needs a length, e.g. truncate(80)"
                                        : "default needs a text, e.g. default(\"none\")");
    }
    pos = SkipSpace(text, after_name + 1);
    if (name == "truncate") {
      filter.kind = Kind::kTruncate;
      const char* begin = text.data() + pos;
      const char* end = text.data() + text.size();
      auto [ptr, ec] = std::from_chars(begin, end, filter.n);
      if (ptr == begin || (ec == std::errc() && filter.n == 0)) {
        return ErrorAt(pos, error_offset, "truncate needs a whole number >= 1");
      }
      if (ec != std::errc()) return ErrorAt(pos, error_offset, "truncate length is too large");
      pos += static_cast<size_t>(ptr - begin);
    } else {
      filter.kind = Kind::kDefault;
      size_t consumed = 0;
      size_t arg_error = 0;
      Result<std::string> arg = ParseQuotedString(text.substr(pos), &consumed, &arg_error);
      if (!arg.ok()) return ErrorAt(pos + arg_error, error_offset, arg.status().message());
      filter.arg = std::move(arg).value();
      pos += consumed;
    }
    pos = SkipSpace(text, pos);
    if (pos >= text.size() || text[pos] != ')') {
      return ErrorAt(pos, error_offset,
                     "expected ')' to close the arguments of " + std::string(name));
    }
    filters->push_back(std::move(filter));
    return pos + 1;
  }

  if (name == "upper") {
    filter.kind = Kind::kUpper;
  } else if (name == "lower") {
    filter.kind = Kind::kLower;
  } else if (name == "json") {
    filter.kind = Kind::kJson;
  } else if (name == "urlencode") {
    filter.kind = Kind::kUrlEncode;
  } else {
    return ErrorAt(name_begin, error_offset,
                   "unknown filter '" + std::string(name) + "'; known filters: " + kKnownFilters);
  }
  if (has_args) {
    return ErrorAt(after_name, error_offset,
                   "filter '" + std::string(name) + "' takes no arguments");
  }
  filters->push_back(std::move(filter));
  return pos;
}

// Parses the placeholder whose "{{" is at text[open]. On success fills *part and returns the
// offset just past its "}}".
Result<size_t> ParsePlaceholder(std::string_view text, size_t open, Template::Part* part,
                                size_t* error_offset) {
  part->literal = false;
  size_t pos = SkipSpace(text, open + 2);
  const size_t path_begin = pos;
  while (pos < text.size() && !IsSpace(text[pos]) && text[pos] != '|' && text[pos] != '}') ++pos;
  if (pos == path_begin) {
    if (pos >= text.size()) {
      return ErrorAt(open, error_offset, "unterminated placeholder: missing '}}'");
    }
    return ErrorAt(path_begin, error_offset, "expected a path after '{{'");
  }
  size_t path_error = 0;
  Result<Path> path = ParsePath(text.substr(path_begin, pos - path_begin), &path_error);
  if (!path.ok()) return ErrorAt(path_begin + path_error, error_offset, path.status().message());
  part->path = std::move(path).value();

  size_t growing = 0;  // json and urlencode filters so far
  while (true) {
    pos = SkipSpace(text, pos);
    if (pos >= text.size()) {
      return ErrorAt(open, error_offset, "unterminated placeholder: missing '}}'");
    }
    if (text.substr(pos).starts_with("}}")) return pos + 2;
    if (text[pos] != '|') return ErrorAt(pos, error_offset, "expected '|' or '}}'");
    pos = SkipSpace(text, pos + 1);
    Result<size_t> next = ParseFilter(text, pos, &part->filters, error_offset);
    if (!next.ok()) return next.status();
    const Template::Filter::Kind kind = part->filters.back().kind;
    if ((kind == Template::Filter::Kind::kJson || kind == Template::Filter::Kind::kUrlEncode) &&
        ++growing > kMaxGrowingFilters) {
      return ErrorAt(pos, error_offset,
                     "at most " + std::to_string(kMaxGrowingFilters) +
                         " json or urlencode filters per placeholder (each multiplies the size "
                         "of the value)");
    }
    pos = next.value();
  }
}

}  // namespace

Result<Template> Template::Parse(std::string_view text, size_t* error_offset) {
  Template t;
  t.text_ = std::string(text);
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t open = text.find("{{", pos);
    const size_t literal_end = open == std::string_view::npos ? text.size() : open;
    if (literal_end > pos) {
      if (t.parts_.empty() || !t.parts_.back().literal) t.parts_.emplace_back();
      t.parts_.back().text.append(text.substr(pos, literal_end - pos));
    }
    if (open == std::string_view::npos) break;
    Part part;
    Result<size_t> next = ParsePlaceholder(text, open, &part, error_offset);
    if (!next.ok()) return next.status();
    t.parts_.push_back(std::move(part));
    pos = next.value();
  }
  return t;
}

std::string Template::Render(const EventView& event) const {
  std::string out;
  for (const Part& part : parts_) {
    if (part.literal) {
      out += part.text;
      continue;
    }
    std::string value = event.Lookup(part.path);
    // True while `value` is still the path's own value, untouched by any filter; `json` then
    // renders the value's JSON (so numbers stay numbers) instead of quoting the text.
    bool raw = true;
    for (const Filter& filter : part.filters) {
      switch (filter.kind) {
        case Filter::Kind::kTruncate:
          Truncate(&value, filter.n);
          raw = false;
          break;
        case Filter::Kind::kDefault: {
          // Missing, empty, and JSON null all take the default.
          const bool use_default =
              value.empty() || (raw && value == "null" && event.LookupJson(part.path) == "null");
          if (use_default) {
            value = filter.arg;
            raw = false;
          }
          break;
        }
        case Filter::Kind::kUpper:
          AsciiUpperInPlace(value);
          raw = false;
          break;
        case Filter::Kind::kLower:
          AsciiLowerInPlace(value);
          raw = false;
          break;
        case Filter::Kind::kJson:
          value = raw ? event.LookupJson(part.path) : JsonQuote(value);
          raw = false;
          break;
        case Filter::Kind::kUrlEncode:
          value = UrlEncode(value);
          raw = false;
          break;
      }
    }
    out += value;
  }
  return out;
}

bool Template::NeedsIssue() const {
  for (const Part& part : parts_) {
    if (!part.literal && part.path.NeedsIssue()) return true;
  }
  return false;
}

std::vector<const Path*> Template::Paths() const {
  std::vector<const Path*> out;
  for (const Part& part : parts_) {
    if (!part.literal) out.push_back(&part.path);
  }
  return out;
}

}  // namespace switchyard::rules
