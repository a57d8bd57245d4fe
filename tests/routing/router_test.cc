// Router: which routes take an event (CONTRACT.md §3 "routes"), using configs loaded from
// routes.yaml snippets and the real Sentry payloads.
#include "routing/router.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "config/config.h"
#include "json/json_doc.h"
#include "rules/event_view.h"
#include "support/temp_dir.h"

namespace switchyard::routing {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

std::string ReadPayload(const std::string& name) {
  return switchyard::testing::ReadFile(std::string(SWITCHYARD_PAYLOADS_DIR) + "/" + name);
}

// Sinks and sources every snippet below can use; routes are appended.
constexpr char kPrelude[] = R"yaml(sources:
  sentry: {type: sentry}
  other: {type: sentry}
sinks:
  phone: {type: pushover}
  ops: {type: http, url: "http://127.0.0.1:1/"}
  archive: {type: file, path: ./x.jsonl}
)yaml";

std::shared_ptr<const config::Config> Load(const std::string& routes) {
  config::LoadResult r = config::LoadConfigFromString(kPrelude + routes, "routes.yaml");
  std::string errors;
  for (const auto& e : r.errors) errors += e.ToString() + "\n";
  EXPECT_TRUE(r.errors.empty()) << errors;
  return r.config;
}

// One event: payload, metadata and (optionally) the fetched issue.
class Event {
 public:
  Event(const std::string& payload, std::string source, std::string resource,
        std::string action = "") {
    Status st = doc_.Parse(payload);
    EXPECT_TRUE(st.ok()) << st.ToString();
    if (action.empty()) action = doc_.GetText({"action"}).value_or("");
    meta_.source = std::move(source);
    meta_.resource = std::move(resource);
    meta_.action = std::move(action);
    headers_ = {{"sentry-hook-resource", meta_.resource}};
    meta_.headers = headers_;
    view_ = std::make_unique<rules::PayloadEventView>(doc_, meta_);
  }
  void SetIssue(const std::string& issue_json) {
    Status st = issue_.Parse(issue_json);
    EXPECT_TRUE(st.ok()) << st.ToString();
    view_ = std::make_unique<rules::PayloadEventView>(doc_, meta_, &issue_);
  }
  EventKeys keys() const { return {meta_.source, meta_.resource, meta_.action}; }
  const rules::EventView& view() const { return *view_; }

 private:
  json::JsonDoc doc_;
  json::JsonDoc issue_;
  std::vector<std::pair<std::string, std::string>> headers_;
  rules::EventMeta meta_;
  std::unique_ptr<rules::PayloadEventView> view_;
};

Event IssueCreated(std::string source = "sentry") {
  return Event(ReadPayload("issue.created.json"), std::move(source), "issue");
}

// Names of the matched routes, deferred ones marked with a trailing '?'.
std::vector<std::string> Names(const std::vector<RouteMatch>& matches) {
  std::vector<std::string> out;
  for (const auto& m : matches) out.push_back(m.route->name + (m.deferred ? "?" : ""));
  return out;
}

std::vector<std::string> Route(const config::Config& c, const Event& e) {
  return Names(MatchRoutes(c, e.keys(), e.view()));
}

TEST(RouterTest, TheRealIssuePayloadHasTheFieldsTheseTestsRelyOn) {
  Event e = IssueCreated();
  EXPECT_EQ(e.keys().action, "created");
  auto cfg = Load(R"yaml(routes:
  - name: facts
    match:
      - 'data.issue.project.name = "front-end"'
      - 'data.issue.title = "ReferenceError: blooopy is not defined"'
      - 'data.issue.level = "error"'
    to: [archive]
)yaml");
  ASSERT_TRUE(cfg);
  EXPECT_THAT(Route(*cfg, e), ElementsAre("facts"));
}

TEST(RouterTest, ARouteWithoutFiltersTakesEveryEvent) {
  auto cfg = Load(R"yaml(routes:
  - name: everything
    to: [archive]
)yaml");
  ASSERT_TRUE(cfg);
  EXPECT_THAT(Route(*cfg, IssueCreated()), ElementsAre("everything"));
  EXPECT_THAT(Route(*cfg, Event(R"({"x":1})", "other", "metric_alert", "resolved")),
              ElementsAre("everything"));
  EXPECT_THAT(Route(*cfg, Event("{}", "other", "", "")), ElementsAre("everything"));
}

TEST(RouterTest, SourceFilterTakesOnlyTheNamedSource) {
  auto cfg = Load(R"yaml(routes:
  - name: from-sentry
    source: sentry
    to: [archive]
)yaml");
  ASSERT_TRUE(cfg);
  EXPECT_THAT(Route(*cfg, IssueCreated("sentry")), ElementsAre("from-sentry"));
  EXPECT_THAT(Route(*cfg, IssueCreated("other")), IsEmpty());
}

TEST(RouterTest, ResourceFilterAcceptsAStringOrAList) {
  auto cfg = Load(R"yaml(routes:
  - name: one
    resource: issue
    to: [archive]
  - name: list
    resource: [event_alert, issue]
    to: [archive]
  - name: neither
    resource: [metric_alert, error]
    to: [archive]
)yaml");
  ASSERT_TRUE(cfg);
  EXPECT_THAT(Route(*cfg, IssueCreated()), ElementsAre("one", "list"));
  Event alert(ReadPayload("event_alert.triggered.json"), "sentry", "event_alert");
  EXPECT_THAT(Route(*cfg, alert), ElementsAre("list"));
  Event error(ReadPayload("error.created.json"), "sentry", "error");
  EXPECT_THAT(Route(*cfg, error), ElementsAre("neither"));
  // Resource names compare exactly.
  EXPECT_THAT(Route(*cfg, Event("{}", "sentry", "Issue", "created")), IsEmpty());
}

TEST(RouterTest, ActionFilterAcceptsAStringOrAList) {
  auto cfg = Load(R"yaml(routes:
  - name: created
    action: created
    to: [archive]
  - name: created-or-resolved
    action: [resolved, created]
    to: [archive]
  - name: resolved
    action: resolved
    to: [archive]
)yaml");
  ASSERT_TRUE(cfg);
  EXPECT_THAT(Route(*cfg, IssueCreated()), ElementsAre("created", "created-or-resolved"));
  Event resolved(ReadPayload("metric_alert.resolved.json"), "sentry", "metric_alert");
  EXPECT_THAT(Route(*cfg, resolved), ElementsAre("created-or-resolved", "resolved"));
  EXPECT_THAT(Route(*cfg, Event("{}", "sentry", "issue", "ignored")), IsEmpty());
}

TEST(RouterTest, SourceResourceAndActionMustAllHold) {
  auto cfg = Load(R"yaml(routes:
  - name: narrow
    source: sentry
    resource: issue
    action: created
    to: [archive]
)yaml");
  ASSERT_TRUE(cfg);
  EXPECT_THAT(Route(*cfg, IssueCreated()), ElementsAre("narrow"));
  EXPECT_THAT(Route(*cfg, IssueCreated("other")), IsEmpty());
  EXPECT_THAT(Route(*cfg, Event(ReadPayload("issue.created.json"), "sentry", "error")), IsEmpty());
  EXPECT_THAT(Route(*cfg, Event("{}", "sentry", "issue", "resolved")), IsEmpty());
}

TEST(RouterTest, MatchRequiresEveryMatcher) {
  auto cfg = Load(R"yaml(routes:
  - name: both-hold
    match:
      - 'data.issue.project.slug = "front-end"'
      - 'data.issue.level = "error"'
    to: [archive]
  - name: one-fails
    match:
      - 'data.issue.project.slug = "front-end"'
      - 'data.issue.level = "warning"'
    to: [archive]
  - name: ne
    match:
      - 'data.issue.level != "warning"'
    to: [archive]
)yaml");
  ASSERT_TRUE(cfg);
  EXPECT_THAT(Route(*cfg, IssueCreated()), ElementsAre("both-hold", "ne"));
}

TEST(RouterTest, MatchAnyRequiresAtLeastOneMatcher) {
  auto cfg = Load(R"yaml(routes:
  - name: second-holds
    match_any:
      - 'data.issue.level = "warning"'
      - 'data.issue.level = "error"'
    to: [archive]
  - name: none-holds
    match_any:
      - 'data.issue.level = "warning"'
      - 'data.issue.level = "fatal"'
    to: [archive]
)yaml");
  ASSERT_TRUE(cfg);
  EXPECT_THAT(Route(*cfg, IssueCreated()), ElementsAre("second-holds"));
}

TEST(RouterTest, MatchAndMatchAnyTogetherMustBothHold) {
  auto cfg = Load(R"yaml(routes:
  - name: both
    match: ['data.issue.platform = "javascript"']
    match_any: ['data.issue.level = "fatal"', 'data.issue.status = "unresolved"']
    to: [archive]
  - name: match-fails
    match: ['data.issue.platform = "python"']
    match_any: ['data.issue.status = "unresolved"']
    to: [archive]
  - name: any-fails
    match: ['data.issue.platform = "javascript"']
    match_any: ['data.issue.level = "fatal"', 'data.issue.status = "resolved"']
    to: [archive]
)yaml");
  ASSERT_TRUE(cfg);
  EXPECT_THAT(Route(*cfg, IssueCreated()), ElementsAre("both"));
}

TEST(RouterTest, AMissingFieldReadsAsEmpty) {
  auto cfg = Load(R"yaml(routes:
  - name: absent-is-empty
    match: ['data.issue.no_such_field = ""']
    to: [archive]
  - name: present-check-fails
    match: ['data.issue.no_such_field != ""']
    to: [archive]
  - name: present-check-holds
    match: ['data.issue.title != ""']
    to: [archive]
  - name: missing-metadata
    match: ['$header.x-nope = ""', '$installation.org = ""']
    to: [archive]
)yaml");
  ASSERT_TRUE(cfg);
  EXPECT_THAT(Route(*cfg, IssueCreated()),
              ElementsAre("absent-is-empty", "present-check-holds", "missing-metadata"));
}

TEST(RouterTest, RegexesAreAnchoredAtBothEnds) {
  auto cfg = Load(R"yaml(routes:
  - name: prefix-only
    match: ['data.issue.title =~ "ReferenceError"']
    to: [archive]
  - name: suffix-only
    match: ['data.issue.title =~ "is not defined"']
    to: [archive]
  - name: whole
    match: ['data.issue.title =~ "ReferenceError: .* is not defined"']
    to: [archive]
  - name: inner
    match: ['data.issue.title =~ ".*blooopy.*"']
    to: [archive]
  - name: not-regex
    match: ['data.issue.title !~ "ReferenceError"']
    to: [archive]
  - name: not-regex-whole
    match: ['data.issue.title !~ "Reference.*"']
    to: [archive]
)yaml");
  ASSERT_TRUE(cfg);
  EXPECT_THAT(Route(*cfg, IssueCreated()), ElementsAre("whole", "inner", "not-regex"));
}

TEST(RouterTest, MetadataPathsMatchSourceResourceAndAction) {
  auto cfg = Load(R"yaml(routes:
  - name: meta
    match: ['$source = "other"', '$resource = "issue"', '$action = "created"',
            '$header.sentry-hook-resource = "issue"']
    to: [archive]
)yaml");
  ASSERT_TRUE(cfg);
  EXPECT_THAT(Route(*cfg, IssueCreated("other")), ElementsAre("meta"));
  EXPECT_THAT(Route(*cfg, IssueCreated("sentry")), IsEmpty());
}

TEST(RouterTest, EveryMatchingRouteDeliversInConfigOrder) {
  auto cfg = Load(R"yaml(routes:
  - name: a
    to: [phone]
  - name: b
    resource: error
    to: [ops]
  - name: c
    to: [archive, ops]
)yaml");
  ASSERT_TRUE(cfg);
  auto matches = MatchRoutes(*cfg, IssueCreated().keys(), IssueCreated().view());
  ASSERT_EQ(matches.size(), 2u);
  EXPECT_EQ(matches[0].route, &cfg->routes[0]);  // points into the config passed in
  EXPECT_EQ(matches[1].route, &cfg->routes[2]);
  EXPECT_FALSE(matches[0].deferred);
  EXPECT_FALSE(matches[1].deferred);
}

TEST(RouterTest, StopOnAMatchingRouteStopsLaterRoutes) {
  auto cfg = Load(R"yaml(routes:
  - name: first
    to: [phone]
  - name: stopper
    resource: issue
    stop: true
    to: [ops]
  - name: after
    to: [archive]
)yaml");
  ASSERT_TRUE(cfg);
  EXPECT_THAT(Route(*cfg, IssueCreated()), ElementsAre("first", "stopper"));
  // A stop route that does not match stops nothing.
  Event error(ReadPayload("error.created.json"), "sentry", "error");
  EXPECT_THAT(Route(*cfg, error), ElementsAre("first", "after"));
}

constexpr char kEnrichedRoutes[] = R"yaml(routes:
  - name: pump-station-alerts
    source: sentry
    resource: event_alert
    enrich: [issue]
    match:
      - 'data.event.level = "error"'
      - '$issue.project.slug = "pump-station"'
    stop: true
    to: [ops]
  - name: after-deferred
    resource: event_alert
    to: [archive]
)yaml";

TEST(RouterTest, ADeferredStopRouteDefersTheRoutesAfterIt) {
  auto cfg = Load(kEnrichedRoutes);
  ASSERT_TRUE(cfg);
  EXPECT_TRUE(RouteNeedsIssue(cfg->routes[0]));
  EXPECT_FALSE(RouteNeedsIssue(cfg->routes[1]));
  Event alert(ReadPayload("event_alert.triggered.json"), "sentry", "event_alert");
  auto matches = MatchRoutes(*cfg, alert.keys(), alert.view());
  // Whether after-deferred delivers depends on whether the stop route matches the issue.
  EXPECT_THAT(Names(matches), ElementsAre("pump-station-alerts?", "after-deferred?"));
}

TEST(RouterTest, RouteSelectedAppliesADeferredRoutesStopOnceTheIssueIsKnown) {
  auto cfg = Load(kEnrichedRoutes);
  ASSERT_TRUE(cfg);
  Event alert(ReadPayload("event_alert.triggered.json"), "sentry", "event_alert");
  alert.SetIssue(ReadPayload("api.issue-details.GET.example.json"));
  ASSERT_TRUE(RouteSelected(*cfg, alert.keys(), alert.view(), "pump-station-alerts", true));
  EXPECT_FALSE(RouteSelected(*cfg, alert.keys(), alert.view(), "after-deferred", true))
      << "the stop route matched: later routes are stopped";

  Event elsewhere(ReadPayload("event_alert.triggered.json"), "sentry", "event_alert");
  elsewhere.SetIssue(R"({"project":{"slug":"backend"}})");
  EXPECT_FALSE(
      RouteSelected(*cfg, elsewhere.keys(), elsewhere.view(), "pump-station-alerts", true));
  EXPECT_TRUE(RouteSelected(*cfg, elsewhere.keys(), elsewhere.view(), "after-deferred", true));

  // No issue to fetch: the enriched route cannot match, the others are decided without it.
  Event no_issue(ReadPayload("event_alert.triggered.json"), "sentry", "event_alert");
  EXPECT_FALSE(RouteSelected(*cfg, no_issue.keys(), no_issue.view(), "pump-station-alerts", false));
  EXPECT_TRUE(RouteSelected(*cfg, no_issue.keys(), no_issue.view(), "after-deferred", false));
}

TEST(RouterTest, AnEnrichedRouteIsDeferredEvenWhenNoMatcherReadsTheIssue) {
  auto cfg = Load(R"yaml(routes:
  - name: templated
    source: sentry
    enrich: [issue]
    match:
      - 'data.issue.level = "error"'
    to:
      - sink: phone
        title: '{{ $issue.project.slug }}'
  - name: later
    to: [archive]
)yaml");
  ASSERT_TRUE(cfg);
  // Its template reads the issue: it delivers after the fetch.
  EXPECT_THAT(Route(*cfg, IssueCreated()), ElementsAre("templated?", "later"));
}

TEST(RouterTest, ADeferredRouteWhoseOtherConditionsFailIsNotReturned) {
  auto cfg = Load(kEnrichedRoutes);
  ASSERT_TRUE(cfg);
  std::string payload = ReadPayload("event_alert.triggered.json");
  json::JsonDoc check;
  ASSERT_TRUE(check.Parse(payload).ok());
  ASSERT_EQ(check.GetText({"data", "event", "level"}).value_or(""), "error");
  // Same payload from the other source: the source filter fails before any fetch.
  Event other(payload, "other", "event_alert");
  EXPECT_THAT(Route(*cfg, other), ElementsAre("after-deferred"));
  // A payload matcher that fails decides the route without the issue.
  Event warning(R"({"action":"triggered","data":{"event":{"level":"warning"}}})", "sentry",
                "event_alert");
  EXPECT_THAT(Route(*cfg, warning), ElementsAre("after-deferred"));
}

TEST(RouterTest, RouteSelectedDecidesWithTheIssue) {
  auto cfg = Load(kEnrichedRoutes);
  ASSERT_TRUE(cfg);
  Event alert(ReadPayload("event_alert.triggered.json"), "sentry", "event_alert");
  std::string issue = ReadPayload("api.issue-details.GET.example.json");
  alert.SetIssue(issue);
  EXPECT_TRUE(RouteSelected(*cfg, alert.keys(), alert.view(), cfg->routes[0].name, true));

  Event elsewhere(ReadPayload("event_alert.triggered.json"), "sentry", "event_alert");
  elsewhere.SetIssue(R"({"project":{"slug":"backend"}})");
  EXPECT_FALSE(RouteSelected(*cfg, elsewhere.keys(), elsewhere.view(), cfg->routes[0].name, true));

  // Without an issue, $issue.* reads as missing ("").
  Event no_issue(ReadPayload("event_alert.triggered.json"), "sentry", "event_alert");
  EXPECT_FALSE(RouteSelected(*cfg, no_issue.keys(), no_issue.view(), cfg->routes[0].name, true));

  // The payload matchers are evaluated again too.
  Event warning(R"({"action":"triggered","data":{"event":{"level":"warning"}}})", "sentry",
                "event_alert");
  warning.SetIssue(issue);
  EXPECT_FALSE(RouteSelected(*cfg, warning.keys(), warning.view(), cfg->routes[0].name, true));
}

TEST(RouterTest, MatchAnyWithAnIssueMatcherIsDecidedAtIngestWhenAPayloadMatcherHolds) {
  auto cfg = Load(R"yaml(routes:
  - name: either
    source: sentry
    enrich: [issue]
    match_any:
      - '$issue.project.slug = "pump-station"'
      - 'data.issue.level = "error"'
    stop: true
    to: [ops]
  - name: later
    to: [archive]
)yaml");
  ASSERT_TRUE(cfg);
  // The payload matcher holds: matched now and its stop applies (it still delivers after the
  // fetch, for its templates).
  EXPECT_THAT(Route(*cfg, IssueCreated()), ElementsAre("either?"));
  // It does not hold: only the issue can decide, and it decides `later` too.
  Event warning(R"({"action":"created","data":{"issue":{"level":"warning"}}})", "sentry", "issue");
  EXPECT_THAT(Route(*cfg, warning), ElementsAre("either?", "later?"));

  Event with_issue(R"({"action":"created","data":{"issue":{"level":"warning"}}})", "sentry",
                   "issue");
  with_issue.SetIssue(R"({"project":{"slug":"pump-station"}})");
  EXPECT_TRUE(RouteSelected(*cfg, with_issue.keys(), with_issue.view(), cfg->routes[0].name, true));
  with_issue.SetIssue(R"({"project":{"slug":"other"}})");
  EXPECT_FALSE(
      RouteSelected(*cfg, with_issue.keys(), with_issue.view(), cfg->routes[0].name, true));
}

TEST(RouterTest, AnEmptyConfigRoutesNothing) {
  auto cfg = Load("routes: []\n");
  ASSERT_TRUE(cfg);
  EXPECT_THAT(Route(*cfg, IssueCreated()), IsEmpty());
}

}  // namespace
}  // namespace switchyard::routing
