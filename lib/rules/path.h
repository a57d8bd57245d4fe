// Paths name a value in an event: a dotted path into the JSON payload ("data.issue.title",
// array elements by index: "data.event.tags.0.1") or a metadata path starting with '$'.
// Parsed once at config load; immutable and freely shared between threads afterwards.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"

namespace switchyard::rules {

struct Path {
  enum class Root {
    kPayload,          // data.issue.title
    kSource,           // $source
    kResource,         // $resource
    kAction,           // $action
    kHeader,           // $header.<lower-case-name>; segments[0] is the header name
    kInstallationOrg,  // $installation.org
    kIssue,            // $issue.<path>: the issue fetched by `enrich: [issue]`
  };
  Root root = Root::kPayload;
  std::vector<std::string> segments;  // path below the root
  std::string text;                   // as written, for messages

  // True when the value is only known after the enrichment fetch.
  bool NeedsIssue() const { return root == Root::kIssue; }
};

// Parses PATH. On error, *error_offset (if given) is the 0-based offset in `text` of the fault.
Result<Path> ParsePath(std::string_view text, size_t* error_offset = nullptr);

// Read-only access to one event for matchers and templates. Implementations are cheap views;
// one instance is used by one thread at a time.
class EventView {
 public:
  virtual ~EventView() = default;
  // Returns the value at `path` as text: a string's unescaped UTF-8 content; a number, boolean
  // or null as its JSON text ("1", "true", "null"); an object or array as compact JSON.
  // A missing value reads as "" (so `x != ""` means "x is present").
  virtual std::string Lookup(const Path& path) const = 0;
  // Returns the value at `path` as compact JSON text (a string quoted and escaped); "null" if
  // missing. Used by the `json` template filter.
  virtual std::string LookupJson(const Path& path) const = 0;
  // True if the path names an existing value (used by the `default` filter).
  virtual bool Has(const Path& path) const = 0;
};

}  // namespace switchyard::rules
