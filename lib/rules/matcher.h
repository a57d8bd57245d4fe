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
