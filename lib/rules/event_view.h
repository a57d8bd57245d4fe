// PayloadEventView: the production EventView over a parsed webhook body, its request metadata
// and, after enrichment, the fetched issue.
#pragma once

#include <span>
#include <string>
#include <utility>
#include <vector>

#include "json/json_doc.h"
#include "rules/path.h"

namespace switchyard::rules {

// Request metadata for one event.
struct EventMeta {
  std::string source;            // $source: the configured source name
  std::string resource;          // $resource: the Sentry-Hook-Resource header
  std::string action;            // $action: the payload's "action"
  std::string installation_org;  // $installation.org: empty when unknown
  // Request headers as received, names lower-case. Repeated names are allowed. Borrowed (the
  // request's or the stored event's own list, not a copy per event): must outlive the view.
  std::span<const std::pair<std::string, std::string>> headers;
};

// Borrows `payload`, `meta` and `issue` (which may be null: no issue fetched); all must
// outlive the view and stay unchanged while it is used. Not thread-safe (JsonDoc is not).
//
// Resolution: payload paths and $issue.* read the JSON documents (a missing $issue.* when no
// issue was fetched); $source, $resource, $action and $installation.org read `meta` and count
// as missing when empty; $header.<name> reads the header (names compared ignoring ASCII case),
// present even when its value is empty; a header sent more than once reads as its values
// joined with ", " (RFC 9110 §5.3).
class PayloadEventView : public EventView {
 public:
  PayloadEventView(const json::JsonDoc& payload, const EventMeta& meta,
                   const json::JsonDoc* issue = nullptr)
      : payload_(&payload), meta_(&meta), issue_(issue) {}

  std::string Lookup(const Path& path) const override;
  std::string LookupJson(const Path& path) const override;
  bool Has(const Path& path) const override;

 private:
  // For metadata roots: the value, or false if missing. Not for kPayload/kIssue.
  bool Meta(const Path& path, std::string* value) const;
  // For kPayload/kIssue: the document, or null if none.
  const json::JsonDoc* Doc(const Path& path) const;

  const json::JsonDoc* payload_;
  const EventMeta* meta_;
  const json::JsonDoc* issue_;
};

}  // namespace switchyard::rules
