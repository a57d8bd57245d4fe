// Matchers: `PATH OP "VALUE"` with OP one of =, !=, =~, !~ (RE2, anchored at both ends).
// Compiled once at config load; a compiled Matcher is immutable and safe to share across threads.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "common/status.h"
#include "rules/path.h"

namespace re2 {
class RE2;
}

namespace switchyard::rules {

// Parses a quoted string at the start of `text`: "double-quoted" with the escapes \" \\ \n \t,
// or 'single-quoted' with no escapes. On success returns the unquoted content and sets
// *consumed to the number of bytes read, including both quotes. On error, *error_offset (if
// given) is the 0-based offset in `text` of the fault. Shared by matchers and templates.
Result<std::string> ParseQuotedString(std::string_view text, size_t* consumed,
                                      size_t* error_offset = nullptr);

class Matcher {
 public:
  enum class Op { kEq, kNe, kRegex, kNotRegex };

  // Parses and compiles `text`. On error, *error_offset is the 0-based offset of the fault.
  static Result<Matcher> Parse(std::string_view text, size_t* error_offset = nullptr);

  bool Matches(const EventView& event) const;

  const Path& path() const { return path_; }
  Op op() const { return op_; }
  const std::string& value() const { return value_; }
  const std::string& text() const { return text_; }

 private:
  Path path_;
  Op op_ = Op::kEq;
  std::string value_;
  std::string text_;
  std::shared_ptr<const re2::RE2> re_;  // set for kRegex / kNotRegex
};

}  // namespace switchyard::rules
