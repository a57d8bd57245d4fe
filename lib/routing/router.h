// Router: decides, at ingest, which routes take an event (CONTRACT.md §3 "routes"). Routes are
// tried in order; every matching route delivers unless one that matched says `stop: true`.
// A route with `enrich: [issue]` delivers after the enrichment fetch (its templates may read
// $issue.*): if its conditions hold, or depend on $issue.*, it is returned as `deferred`, and the
// delivery path decides it with RouteSelected once the issue is known. A route whose outcome
// depends on $issue.* and says `stop: true` defers every later route too (whether they deliver
// depends on whether it matches), so `stop` means the same with or without enrichment.
// Pure function of (config, event): thread-safe, no I/O, cost linear in the number of routes.
#pragma once

#include <string_view>
#include <vector>

#include "config/config.h"
#include "rules/path.h"

namespace switchyard::routing {

struct RouteMatch {
  const config::RouteConfig* route;  // points into the Config passed in
  bool deferred = false;             // decide the $issue.* matchers after enrichment
};

struct EventKeys {
  std::string_view source;
  std::string_view resource;
  std::string_view action;
};

std::vector<RouteMatch> MatchRoutes(const config::Config& config, const EventKeys& keys,
                                    const rules::EventView& event);

// For a deferred delivery, once the enrichment fetch is over: true if the route named `route`
// is among the routes the event selects with every matcher decided (each route's own matchers,
// and every earlier `stop: true` route). `event` resolves $issue.* to the fetched issue; with
// `issue_fetched` false (the event names no issue, so there is none), routes with
// `enrich: [issue]` count as not matching.
bool RouteSelected(const config::Config& config, const EventKeys& keys,
                   const rules::EventView& event, std::string_view route, bool issue_fetched);

// True if the route delivers only after the enrichment fetch (it has `enrich: [issue]`).
bool RouteNeedsIssue(const config::RouteConfig& route);

}  // namespace switchyard::routing
