#include "routing/router.h"

#include <algorithm>
#include <unordered_map>

namespace switchyard::routing {
namespace {

bool InList(const std::vector<std::string>& list, std::string_view value) {
  return list.empty() || std::find(list.begin(), list.end(), value) != list.end();
}

// Evaluates `match` (all) and `match_any` (at least one). With skip_issue, matchers reading
// $issue.* are treated as unknown: they neither fail `match` nor satisfy `match_any`, and
// *unknown is set when the outcome depends on them.
bool Evaluate(const config::RouteConfig& route, const rules::EventView& event, bool skip_issue,
              bool* unknown) {
  for (const auto& m : route.match) {
    if (skip_issue && m.path().NeedsIssue()) {
      *unknown = true;
      continue;
    }
    if (!m.Matches(event)) return false;
  }
  if (route.match_any.empty()) return true;
  bool any_issue = false;
  for (const auto& m : route.match_any) {
    if (skip_issue && m.path().NeedsIssue()) {
      any_issue = true;
      continue;
    }
    if (m.Matches(event)) return true;
  }
  if (any_issue) {
    *unknown = true;
    return true;
  }
  return false;
}

bool KeysMatch(const config::RouteConfig& route, const EventKeys& keys) {
  return (!route.source || *route.source == keys.source) &&
         InList(route.resources, keys.resource) && InList(route.actions, keys.action);
}

// Memoizes lookups by path text for one evaluation of the route set: many routes match on the
// same few paths (data.issue.project.name, ...), so each is resolved in the document once.
class MemoView final : public rules::EventView {
 public:
  explicit MemoView(const rules::EventView& inner) : inner_(inner) {}
  std::string Lookup(const rules::Path& path) const override {
    auto it = cache_.find(path.text);
    if (it != cache_.end()) return it->second;
    return cache_.emplace(path.text, inner_.Lookup(path)).first->second;
  }
  std::string LookupJson(const rules::Path& path) const override { return inner_.LookupJson(path); }
  bool Has(const rules::Path& path) const override { return inner_.Has(path); }

 private:
  const rules::EventView& inner_;
  mutable std::unordered_map<std::string, std::string> cache_;
};

}  // namespace

bool RouteNeedsIssue(const config::RouteConfig& route) { return !route.enrich.empty(); }

std::vector<RouteMatch> MatchRoutes(const config::Config& config, const EventKeys& keys,
                                    const rules::EventView& raw_event) {
  std::vector<RouteMatch> out;
  MemoView event(raw_event);
  bool after_deferred_stop = false;  // an earlier deferred route may stop this one
  for (const config::RouteConfig& route : config.routes) {
    if (!KeysMatch(route, keys)) continue;
    bool unknown = false;
    if (!Evaluate(route, event, /*skip_issue=*/true, &unknown)) continue;
    // `unknown` implies `enrich` (the loader requires it for $issue.*).
    const bool deferred = RouteNeedsIssue(route) || after_deferred_stop;
    out.push_back({&route, deferred});
    if (route.stop) {
      if (!unknown) break;  // decided now: nothing after it delivers, whatever came before
      after_deferred_stop = true;
    }
  }
  return out;
}

bool RouteSelected(const config::Config& config, const EventKeys& keys,
                   const rules::EventView& raw_event, std::string_view name, bool issue_fetched) {
  MemoView event(raw_event);
  for (const config::RouteConfig& route : config.routes) {
    if (!KeysMatch(route, keys)) continue;
    if (!issue_fetched && RouteNeedsIssue(route)) continue;
    bool unknown = false;
    if (!Evaluate(route, event, /*skip_issue=*/false, &unknown)) continue;
    if (route.name == name) return true;
    if (route.stop) return false;
  }
  return false;
}

}  // namespace switchyard::routing
