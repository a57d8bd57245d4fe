#include "ingest/hook_handler.h"

#include <charconv>
#include <chrono>
#include <cstdlib>

#include "common/crypto.h"
#include "common/log.h"
#include "json/json_doc.h"
#include "routing/router.h"
#include "rules/event_view.h"

namespace switchyard::ingest {
namespace {

constexpr char kHooksPrefix[] = "/hooks/";
constexpr char kSetupPrefix[] = "/setup/";
constexpr char kRetryAfterSeconds[] = "5";

json::JsonDoc& ThreadDoc(uint32_t max_depth) {
  thread_local std::unique_ptr<json::JsonDoc> doc;
  thread_local uint32_t depth = 0;
  if (!doc || depth != max_depth) {
    doc = std::make_unique<json::JsonDoc>(max_depth);
    depth = max_depth;
  }
  return *doc;
}

bool LooksLikeObject(std::string_view body) {
  for (char c : body) {
    if (c == ' ' || c == '\t' || c == '\r' || c == '\n') continue;
    return c == '{';
  }
  return false;
}

std::string HtmlEscape(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (char c : s) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&#39;"; break;
      default: out.push_back(c);
    }
  }
  return out;
}

// A small, self-contained page for the browser that followed Sentry's Redirect URL.
http::Response SetupPage(int status, std::string_view title, std::string_view detail) {
  std::string body = "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>";
  body.append(HtmlEscape(title));
  body.append("</title></head>\n<body><h1>");
  body.append(HtmlEscape(title));
  body.append("</h1>\n<p>");
  body.append(HtmlEscape(detail));
  body.append("</p>\n<p>You can close this page and try installing the integration again from "
              "Sentry; if it keeps failing, the switchyard operator will find the details in its "
              "log.</p></body></html>\n");
  http::Response r = http::Response::Text(status, std::move(body), "text/html; charset=utf-8");
  r.headers.emplace_back("Cache-Control", "no-store");
  return r;
}

// The setup page's 503: the browser is told to come back shortly.
http::Response SetupUnavailable(std::string_view detail) {
  http::Response r = SetupPage(503, "Temporarily unavailable", detail);
  r.headers.emplace_back("Retry-After", kRetryAfterSeconds);
  return r;
}

http::Response Unavailable503(std::string_view message) {
  http::Response r = http::Response::Error(503, message);
  r.headers.emplace_back("Retry-After", kRetryAfterSeconds);
  return r;
}

}  // namespace

HookHandler::HookHandler(const config::ConfigHolder& config, storage::EventStore& store,
                         metrics::Metrics& metrics, Clock& clock,
                         const std::atomic<bool>& stopping, std::function<void()> on_deliveries,
                         Installer* installer)
    : config_(config), store_(store), metrics_(metrics), clock_(clock), stopping_(stopping),
      on_deliveries_(std::move(on_deliveries)), installer_(installer) {}

void HookHandler::Handle(http::Request request, http::Respond respond) {
  std::string_view path = request.Path();
  const bool hook = path.starts_with(kHooksPrefix);
  if (!hook && !path.starts_with(kSetupPrefix)) {
    respond(http::Response::Error(404, "not found"));
    return;
  }
  // Both endpoints name a source; the lookup happens once, before the request moves on.
  auto cfg = config_.Get();
  const config::SourceConfig* source =
      cfg->FindSource(path.substr(hook ? sizeof(kHooksPrefix) - 1 : sizeof(kSetupPrefix) - 1));
  if (!source) {
    respond(http::Response::Error(404, "unknown source"));
    return;
  }
  if (hook) {
    HandleHook(*cfg, *source, std::move(request), std::move(respond));
  } else {
    HandleSetup(*source, std::move(request), std::move(respond));
  }
}

void HookHandler::OnRefused(const http::Request& head, int status) {
  std::string_view path = head.Path();
  if (!path.starts_with(kHooksPrefix)) return;
  auto cfg = config_.Get();
  const config::SourceConfig* source = cfg->FindSource(path.substr(sizeof(kHooksPrefix) - 1));
  if (!source) return;
  CountRejected(source->name, head, status,
                status == 413   ? "too_large"
                : status == 503 ? "unavailable"
                                : "malformed");
}

void HookHandler::CountRejected(const std::string& source, const http::Request& request,
                                int status, std::string_view reason) {
  metrics_.WebhookReceived(source, request.Header("sentry-hook-resource"), "rejected");
  metrics_.WebhookRejected(source, reason);
  uint64_t unlogged = 0;
  {
    std::lock_guard lock(rejected_mu_);
    std::string key = source;
    (key += '\x1f') += reason;
    auto [it, first] = rejected_log_.try_emplace(std::move(key));
    RejectedLog& r = it->second;
    const auto now = clock_.SteadyNow();
    if (first || now - r.window_start >= std::chrono::minutes(1)) {
      unlogged = r.unlogged;
      r = RejectedLog{now, 0, 0};
    }
    if (r.logged >= kRejectedLinesPerMinute) {
      ++r.unlogged;
      return;
    }
    ++r.logged;
  }
  if (unlogged > 0) {
    // All are counted in switchyard_webhooks_rejected_total.
    static const std::string kLimit = std::to_string(kRejectedLinesPerMinute);
    log::Warn("webhook rejections not logged", {{"source", source},
                                                {"reason", reason},
                                                {"count", std::to_string(unlogged)},
                                                {"limit_per_minute", kLimit}});
  }
  log::Info("webhook rejected", {{"source", source},
                                 // Unauthenticated: cut as on the accepted path.
                                 {"request_id", request.Header("request-id").substr(0, 64)},
                                 {"status", std::to_string(status)},
                                 {"reason", reason}});
}

void HookHandler::HandleSetup(const config::SourceConfig& source_cfg, http::Request request,
                              http::Respond respond) {
  const config::SourceConfig* source = &source_cfg;
  if (request.method != "GET" && request.method != "HEAD") {
    http::Response r = http::Response::Error(405, "method not allowed");
    r.headers.emplace_back("Allow", "GET");
    respond(std::move(r));
    return;
  }
  if (!source->token.empty()) {
    respond(SetupPage(400, "Nothing to install",
                      "This source is an internal integration with a static token; it has no "
                      "OAuth installation step."));
    return;
  }
  std::string code = request.QueryParam("code");
  std::string uuid = request.QueryParam("installationId");
  std::string org = request.QueryParam("orgSlug");
  if (code.empty() || uuid.empty()) {
    respond(SetupPage(400, "Installation link incomplete",
                      "The link Sentry sent you here with lacks its code or installationId "
                      "parameter."));
    return;
  }
  if (stopping_ || !installer_) {
    respond(SetupUnavailable("switchyard is restarting; reload this page in a few seconds."));
    return;
  }
  std::string after = source->after_install_url;
  std::string name = source->name;
  installer_->Setup(name, uuid, code, org,
                    [respond = std::move(respond), after, name, uuid](Status s) {
                      if (s.ok()) {
                        log::Info("installation set up via redirect",
                                  {{"source", name}, {"installation", uuid}});
                        http::Response r =
                            http::Response::Text(302, "", "text/plain; charset=utf-8");
                        r.headers.emplace_back("Location", after);
                        r.headers.emplace_back("Cache-Control", "no-store");
                        return respond(std::move(r));
                      }
                      if (s.code() == StatusCode::kInvalidArgument) {
                        return respond(SetupPage(400, "Installation link invalid", s.message()));
                      }
                      if (s.code() == StatusCode::kResourceExhausted) {
                        return respond(SetupUnavailable(
                            "Too many installations are in progress; reload this page in a few "
                            "seconds."));
                      }
                      log::Warn("installation via redirect failed",
                                {{"source", name}, {"installation", uuid}, {"error", s.message()}});
                      respond(SetupPage(502, "Sentry refused the installation", s.message()));
                    });
}

void HookHandler::HandleHook(const config::Config& config, const config::SourceConfig& source_cfg,
                             http::Request request, http::Respond respond) {
  const config::Config* cfg = &config;
  const config::SourceConfig* source = &source_cfg;
  const std::string& name = source->name;
  auto reject = [&](int status, std::string_view reason, std::string_view message) {
    CountRejected(name, request, status, reason);
    respond(http::Response::Error(status, message));
  };

  if (request.method != "POST") {
    http::Response r = http::Response::Error(405, "method not allowed");
    r.headers.emplace_back("Allow", "POST");
    respond(std::move(r));
    return;
  }
  if (stopping_) {
    metrics_.WebhookRejected(name, "unavailable");
    respond(Unavailable503("shutting down"));
    return;
  }

  // 1. Authenticity first: nothing about an unauthenticated body is looked at.
  std::string_view signature = request.Header("sentry-hook-signature");
  if (signature.empty()) signature = request.Header("sentry-app-signature");
  if (source->client_secret.empty()) {
    reject(401, "signature", "source has no client_secret configured; cannot verify signatures");
    return;
  }
  if (signature.empty()) {
    reject(401, "signature", "missing Sentry-Hook-Signature header");
    return;
  }
  if (!crypto::VerifyHmacSha256Hex(source->client_secret, request.body, signature)) {
    reject(401, "signature", "signature does not match the body");
    return;
  }
  if (source->max_clock_skew.count() > 0) {
    std::string_view ts = request.Header("sentry-hook-timestamp");
    int64_t secs = 0;
    auto [p, ec] = std::from_chars(ts.data(), ts.data() + ts.size(), secs);
    // Seconds since the epoch, bounded (2^40 s is ~34,800 years) before they become
    // milliseconds, so no header value can overflow the arithmetic.
    constexpr int64_t kMaxSecs = int64_t{1} << 40;
    const bool parsed = !ts.empty() && ec == std::errc() && p == ts.data() + ts.size() &&
                        secs >= 0 && secs <= kMaxSecs;
    // Sentry sends int(time()): the moment it signed lies anywhere in [secs, secs + 1).
    const int64_t now_ms = clock_.NowMillis();
    const int64_t skew = source->max_clock_skew.count();
    if (!parsed || now_ms < secs * 1000 - skew || now_ms > secs * 1000 + 999 + skew) {
      reject(401, "timestamp", "Sentry-Hook-Timestamp missing or outside max_clock_skew");
      return;
    }
  }

  // 2. Shape.
  std::string_view resource = request.Header("sentry-hook-resource");
  if (resource.empty()) {
    reject(400, "missing_resource", "missing Sentry-Hook-Resource header");
    return;
  }
  if (resource.size() > 64) {
    reject(400, "malformed", "Sentry-Hook-Resource header too long");
    return;
  }
  if (!LooksLikeObject(request.body)) {
    reject(400, "malformed", "body must be a JSON object");
    return;
  }
  json::JsonDoc& doc = ThreadDoc(cfg->server.max_json_depth);
  if (Status s = doc.Parse(request.body); !s.ok()) {
    reject(400, "malformed", s.message());
    return;
  }

  // 3. Extract once what later stages need, and route on the same parse.
  storage::StoredEvent event;
  event.source = name;
  event.resource = std::string(resource);
  if (auto action = doc.GetString({"action"})) event.action = std::string(*action);
  if (auto uuid = doc.GetString({"installation", "uuid"})) {
    event.installation_uuid = std::string(*uuid);
  }
  if (cfg->reads_installation_org) {
    if (!source->token.empty()) {
      // An internal integration: its one organization is configured (`org` is required with
      // `token`). A public app's `org` is not its installations' organization.
      event.installation_org = source->org;
    } else if (installer_ && !event.installation_uuid.empty()) {
      event.installation_org = installer_->OrgOf(name, event.installation_uuid);
    }
  }
  std::vector<storage::NewDelivery> deliveries;
  std::vector<std::string> matched;  // routes decided now, counted once the event is stored
  if (!cfg->routes.empty()) {
    rules::EventMeta meta;
    meta.source = name;
    meta.resource = event.resource;
    meta.action = event.action;
    meta.installation_org = event.installation_org;
    meta.headers = request.headers;  // borrowed: `request` outlives the routing below
    rules::PayloadEventView view(doc, meta);
    for (const routing::RouteMatch& m :
         routing::MatchRoutes(*cfg, {name, event.resource, event.action}, view)) {
      if (!m.deferred) matched.push_back(m.route->name);
      bool counter_assigned = false;  // a deferred route's match is counted by one delivery
      for (const config::RouteTarget& t : m.route->to) {
        const config::SinkConfig* sink = cfg->FindSink(t.sink);
        if (!sink || !sink->active()) continue;
        deliveries.push_back({m.route->name, t.sink, m.deferred, m.deferred && !counter_assigned});
        counter_assigned = true;
      }
    }
  }
  std::optional<InstallationEvent> installation;
  if (event.resource == "installation" &&
      (event.action == "created" || event.action == "deleted")) {
    installation.emplace();
    installation->source = std::string(name);
    installation->action = event.action;
    if (auto v = doc.GetString({"data", "installation", "uuid"})) installation->uuid = *v;
    if (installation->uuid.empty()) installation->uuid = event.installation_uuid;
    if (auto v = doc.GetString({"data", "installation", "code"})) installation->code = *v;
    if (auto v = doc.GetString({"data", "installation", "organization", "slug"})) {
      installation->org = *v;
    }
  }
  event.received_at_ms = clock_.NowMillis();
  // Bounded by the request's header limit (server.max_header_bytes) and in number: a name
  // repeated past the bound is cut (the store reads back at most 1,024 headers).
  constexpr size_t kMaxKeptHeaders = 64;
  event.headers.reserve(cfg->kept_headers.size());
  for (const std::string& h : cfg->kept_headers) {
    for (const auto& [header, value] : request.headers) {
      if (header == h && event.headers.size() < kMaxKeptHeaders) {
        event.headers.emplace_back(header, value);
      }
    }
  }
  event.body = std::move(request.body);

  // 4. Durable, then answer.
  auto started = request.started;
  std::string request_id(request.Header("request-id").substr(0, 64));
  store_.Append(std::move(event), std::move(deliveries),
                [this, name, resource = std::string(resource), request_id, started,
                 matched = std::move(matched), installation = std::move(installation),
                 respond = std::move(respond)](
                    Result<storage::AppendResult> result) mutable {
    double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
    metrics_.ObserveIngestSeconds(seconds);
    if (!result.ok()) {
      metrics_.WebhookReceived(name, resource, "rejected");
      metrics_.WebhookRejected(name, "unavailable");
      log::Warn("webhook not stored", {{"source", name},
                                       {"request_id", request_id},
                                       {"error", result.status().message()}});
      respond(Unavailable503("storage cannot accept the webhook now; retry later"));
      return;
    }
    const storage::AppendResult& r = result.value();
    if (r.deliveries > 0 && on_deliveries_) on_deliveries_();
    if (!r.duplicate) {
      for (const std::string& route : matched) metrics_.RouteMatched(route);
    }

    metrics_.WebhookReceived(name, resource, r.duplicate ? "duplicate" : "accepted");
    log::Info(r.duplicate ? "webhook duplicate" : "webhook accepted",
              {{"source", name},
               {"resource", resource},
               {"id", r.id},
               {"request_id", request_id},
               {"deliveries", std::to_string(r.deliveries)}});
    if (r.duplicate) {
      respond(http::Response::Json(200, "{\"id\":\"" + r.id + "\",\"duplicate\":true}"));
      // Sentry retries an uninstall it saw fail (a daemon stopping after storing it, before the
      // tokens were deleted, never answered): forgetting is idempotent, so a duplicate forgets
      // too. A duplicate install is not repeated: its grant code is single-use.
      if (installation && installation->action == "deleted" && installer_) {
        installer_->OnInstallationEvent(std::move(*installation));
      }
    } else {
      respond(http::Response::Json(202, "{\"id\":\"" + r.id + "\"}"));
      // An installation webhook's side effects (grant exchange, uninstall) happen after the
      // answer, never inside it; a crash in between is covered by the installer's start-up scan.
      if (installation && installer_) installer_->OnInstallationEvent(std::move(*installation));
    }
  });
}

}  // namespace switchyard::ingest
