// Router: decides, at ingest, which routes take an event (CONTRACT.md §3 "routes"). Routes are
// tried in order; every matching route delivers unless one that matched says `stop: true`.
// A route whose matchers read $issue.* cannot be decided before the enrichment fetch: if its other
// conditions hold it is returned as `deferred` and decided in the delivery path. (A deferred route's
// `stop` cannot stop later routes at ingest: they are decided without it.)
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

// Evaluates all of a route's matchers (including $issue.*), for deferred routes once the issue is
// known. `event` must resolve $issue.* paths.
bool RouteMatchesAfterEnrichment(const config::RouteConfig& route, const rules::EventView& event);

// True if any matcher of the route reads $issue.*.
bool RouteNeedsIssue(const config::RouteConfig& route);

}  // namespace switchyard::routing
