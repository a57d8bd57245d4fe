#include "rules/matcher.h"

#include <re2/re2.h>

#include <string>

namespace switchyard::rules {

namespace {

// Memory budget for one compiled regex (program + DFA cache). Patterns that need more fail
// to compile with RE2's "pattern too large" message.
constexpr int64_t kRegexMaxMem = 1 << 20;

bool IsSpace(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

size_t SkipSpace(std::string_view text, size_t pos) {
  while (pos < text.size() && IsSpace(text[pos])) ++pos;
  return pos;
}

Status ErrorAt(size_t offset, size_t* error_offset, std::string message) {
  if (error_offset != nullptr) *error_offset = offset;
  return InvalidArgument(std::move(message));
}

}  // namespace

Result<std::string> ParseQuotedString(std::string_view text, size_t* consumed,
                                      size_t* error_offset) {
  if (text.empty() || (text[0] != '"' && text[0] != '\'')) {
    return ErrorAt(0, error_offset, "expected a quoted string (\"...\" or '...')");
  }
  const char quote = text[0];
  std::string out;
  for (size_t i = 1; i < text.size(); ++i) {
    const char c = text[i];
    if (c == quote) {
      *consumed = i + 1;
      return out;
    }
    if (c == '\\' && quote == '"') {
      if (i + 1 == text.size()) break;  // unterminated
      switch (text[i + 1]) {
        case '"':
          out += '"';
          break;
        case '\\':
          out += '\\';
          break;
        case 'n':
          out += '\n';
          break;
        case 't':
          out += '\t';
          break;
        default:
          return ErrorAt(
              i, error_offset,
              std::string("unknown escape '\\") + text[i + 1] + "' (known: \\\" \\\\ \\n \\t)");
      }
      ++i;
      continue;
    }
    out += c;
  }
  return ErrorAt(0, error_offset, std::string("unterminated string: missing closing ") + quote);
}

Result<Matcher> Matcher::Parse(std::string_view text, size_t* error_offset) {
  Matcher m;
  m.text_ = std::string(text);

  // PATH: up to whitespace or the first character of an operator.
  const size_t path_begin = SkipSpace(text, 0);
  size_t pos = path_begin;
  while (pos < text.size() && !IsSpace(text[pos]) && text[pos] != '=' && text[pos] != '!') ++pos;
  if (pos == path_begin) {
    return ErrorAt(path_begin, error_offset, "expected a path before the operator");
  }
  size_t path_error = 0;
  Result<Path> path = ParsePath(text.substr(path_begin, pos - path_begin), &path_error);
  if (!path.ok()) return ErrorAt(path_begin + path_error, error_offset, path.status().message());
  m.path_ = std::move(path).value();

  // OP. Two-character operators first so that "=~" is not read as "=".
  pos = SkipSpace(text, pos);
  const std::string_view rest = text.substr(pos);
  if (rest.starts_with("=~")) {
    m.op_ = Op::kRegex;
    pos += 2;
  } else if (rest.starts_with("!~")) {
    m.op_ = Op::kNotRegex;
    pos += 2;
  } else if (rest.starts_with("!=")) {
    m.op_ = Op::kNe;
    pos += 2;
  } else if (rest.starts_with("==")) {
    return ErrorAt(pos, error_offset, "unknown operator '=='; use '=' for equality");
  } else if (rest.starts_with("=")) {
    m.op_ = Op::kEq;
    pos += 1;
  } else {
    return ErrorAt(pos, error_offset, "expected an operator: =, !=, =~ or !~");
  }

  // VALUE.
  pos = SkipSpace(text, pos);
  const size_t value_begin = pos;
  size_t consumed = 0;
  size_t value_error = 0;
  Result<std::string> value = ParseQuotedString(text.substr(pos), &consumed, &value_error);
  if (!value.ok()) return ErrorAt(pos + value_error, error_offset, value.status().message());
  m.value_ = std::move(value).value();
  pos = SkipSpace(text, pos + consumed);
  if (pos != text.size()) {
    return ErrorAt(pos, error_offset, "unexpected text after the quoted value");
  }

  if (m.op_ == Op::kRegex || m.op_ == Op::kNotRegex) {
    RE2::Options options;
    options.set_log_errors(false);
    options.set_max_mem(kRegexMaxMem);
    auto re = std::make_shared<const RE2>(m.value_, options);
    if (!re->ok()) {
      std::string message = "invalid regular expression: " + re->error();
      return ErrorAt(value_begin, error_offset, std::move(message));
    }
    m.re_ = std::move(re);
  }
  return m;
}

bool Matcher::Matches(const EventView& event) const {
  const std::string actual = event.Lookup(path_);
  switch (op_) {
    case Op::kEq:
      return actual == value_;
    case Op::kNe:
      return actual != value_;
    case Op::kRegex:
      return re_ != nullptr && RE2::FullMatch(actual, *re_);
    case Op::kNotRegex:
      return re_ != nullptr && !RE2::FullMatch(actual, *re_);
  }
  return false;
}

}  // namespace switchyard::rules
