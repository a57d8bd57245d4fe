// Templates: strings with `{{ PATH | filter | filter(arg) }}` placeholders. Filters:
// truncate(N), default("text"), upper, lower, json, urlencode. Compiled once at config load;
// rendering never re-evaluates the values it inserts (a value containing "{{" stays literal).
// A compiled Template is immutable and safe to share across threads.
//
// Filters apply left to right to the text of the value (EventView::Lookup):
//   truncate(N)  at most N Unicode code points, cut on a code-point boundary; a cut value ends
//                in "…" (counted within N).
//   default("t") "t" when the value is missing, empty or JSON null.
//   upper, lower ASCII letters only; other bytes are unchanged.
//   json         first in the chain (or after a default that kept the value): the value's own
//                JSON (EventView::LookupJson; numbers stay numbers, missing is null); after a
//                filter changed the text: the text as a JSON string.
//   urlencode    percent-encodes every byte except RFC 3986 unreserved (ALPHA DIGIT - . _ ~).
// A placeholder may use json and urlencode at most 3 times in all: each multiplies the size of
// the value (json up to 6x, urlencode 3x), so longer chains would grow it exponentially.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "rules/path.h"

namespace switchyard::rules {

class Template {
 public:
  // Parses `text`. On error, *error_offset is the 0-based offset of the fault in `text`.
  static Result<Template> Parse(std::string_view text, size_t* error_offset = nullptr);

  std::string Render(const EventView& event) const;

  // True if any placeholder reads $issue.* (rendering must wait for the enrichment fetch).
  bool NeedsIssue() const;
  // The paths the placeholders read, in order (pointers into this template).
  std::vector<const Path*> Paths() const;
  // True if the template has no placeholders.
  bool IsLiteral() const { return parts_.size() <= 1 && (parts_.empty() || parts_[0].literal); }
  const std::string& text() const { return text_; }

  struct Filter {
    enum class Kind { kTruncate, kDefault, kUpper, kLower, kJson, kUrlEncode };
    Kind kind;
    size_t n = 0;     // truncate: maximum code points
    std::string arg;  // default: the fallback text
  };
  struct Part {
    bool literal = true;
    std::string text;  // literal text
    Path path;         // placeholder
    std::vector<Filter> filters;
  };

 private:
  std::vector<Part> parts_;
  std::string text_;
};

}  // namespace switchyard::rules
