#include "admin/admin_handler.h"

#include <openssl/crypto.h>

#include <algorithm>
#include <boost/json.hpp>
#include <charconv>
#include <set>

#include "common/ascii.h"
#include "common/clock.h"
#include "common/json_escape.h"
#include "common/time_format.h"

namespace switchyard::admin {
namespace {

constexpr size_t kMaxDlqListed = 10000;

http::Response MethodNotAllowed(const char* allow) {
  http::Response r = http::Response::Error(405, "method not allowed");
  r.headers.emplace_back("Allow", allow);
  return r;
}

bool TokenMatches(std::string_view header, const std::string& token) {
  // The scheme is case-insensitive (RFC 9110 11.1): "bearer" and "BEARER" are "Bearer".
  constexpr std::string_view kBearer = "bearer ";
  if (AsciiLower(header.substr(0, kBearer.size())) != kBearer) return false;
  std::string_view got = header.substr(kBearer.size());
  if (got.size() != token.size()) return false;
  return CRYPTO_memcmp(got.data(), token.data(), token.size()) == 0;
}

std::string Timestamp(int64_t ms) { return ms > 0 ? JsonQuote(FormatRfc3339Millis(ms)) : "null"; }

std::string QueueJson(const storage::QueueCounts& c) {
  std::string out = "{\"pending\":" + std::to_string(c.pending) +
                    ",\"dead\":" + std::to_string(c.dead) + ",\"sinks\":{";
  bool first = true;
  for (const auto& [name, s] : c.sinks) {
    if (!first) out += ',';
    first = false;
    out += JsonQuote(name) + ":{\"pending\":" + std::to_string(s.pending) +
           ",\"dead\":" + std::to_string(s.dead) + "}";
  }
  out += "}}";
  return out;
}

std::string DlqJson(const std::vector<storage::DeliveryRecord>& dead) {
  std::string out = "[";
  for (size_t i = 0; i < dead.size(); ++i) {
    const auto& d = dead[i];
    if (i) out += ',';
    out += "{\"id\":" + JsonQuote(d.id) + ",\"sink\":" + JsonQuote(d.sink) +
           ",\"route\":" + JsonQuote(d.route) + ",\"event_id\":" + JsonQuote(d.event_id) +
           ",\"attempts\":" + std::to_string(d.attempts) +
           ",\"last_error\":" + JsonQuote(d.last_error) +
           ",\"first_attempt_at\":" + Timestamp(d.first_attempt_ms) +
           ",\"last_attempt_at\":" + Timestamp(d.last_attempt_ms) +
           ",\"dead_at\":" + Timestamp(d.due_ms) + "}";
  }
  out += "]";
  return out;
}

// Parses {"ids":[...]} and/or {"all":true}. Returns an error message, or "" on success.
// Delivery ids are ULIDs, upper-case in the store; ULIDs ignore case. Upper-cases `id` and checks
// it is letters and digits, at most 64 (what may name a key; the store says whether it exists).
bool NormalizeDeliveryId(std::string& id) {
  AsciiUpperInPlace(id);
  return id.size() <= 64 && std::all_of(id.begin(), id.end(), [](char c) {
           return (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z');
         });
}

std::string ParseIds(const std::string& body, std::vector<std::string>* ids, bool* all) {
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(body, ec);
  if (ec || !v.is_object()) return "body must be a JSON object like {\"ids\":[\"...\"]}";
  const auto& o = v.get_object();
  if (auto* a = o.if_contains("all")) {
    if (!a->is_bool()) return "\"all\" must be true or false";
    *all = a->get_bool();
  }
  if (auto* list = o.if_contains("ids")) {
    if (!list->is_array()) return "\"ids\" must be an array of strings";
    std::set<std::string> seen;
    for (const auto& id : list->get_array()) {
      if (!id.is_string()) return "\"ids\" must be an array of strings";
      // A repeated id is acted on once (its second mention would find it replayed, and be
      // reported skipped).
      std::string s(id.get_string());
      if (s.empty() || !NormalizeDeliveryId(s)) {
        return "\"ids\" must be delivery ids (letters and digits, at most 64)";
      }
      if (seen.insert(s).second) ids->push_back(std::move(s));
    }
  }
  if (!*all && ids->empty()) return "give \"ids\" (non-empty) or \"all\": true";
  return "";
}

}  // namespace

AdminHandler::AdminHandler(const config::ConfigHolder& config, metrics::Metrics& metrics,
                           const std::atomic<bool>& ready, storage::Store& store,
                           BlockingPool& pool, AdminHooks hooks)
    : config_(config), metrics_(metrics), ready_(ready), store_(store), pool_(pool),
      hooks_(std::move(hooks)) {}

void AdminHandler::Handle(http::Request request, http::Respond respond) {
  std::string path(request.Path());
  const bool get = request.method == "GET" || request.method == "HEAD";
  if (path == "/healthz") {
    respond(get ? http::Response::Json(200, "{\"status\":\"ok\"}") : MethodNotAllowed("GET"));
    return;
  }
  if (path == "/readyz") {
    if (!get) return respond(MethodNotAllowed("GET"));
    if (!ready_) return respond(http::Response::Json(503, "{\"status\":\"not ready\"}"));
    // Storage that refuses every webhook (disk below min_free_bytes) is not up.
    if (Status storage = store_.Accepting(); !storage.ok()) {
      return respond(http::Response::Json(
          503, "{\"status\":\"not ready\",\"reason\":" + JsonQuote(storage.message()) + "}"));
    }
    respond(http::Response::Json(200, "{\"status\":\"ready\"}"));
    return;
  }
  if (path == "/metrics") {
    if (!get) return respond(MethodNotAllowed("GET"));
    respond(http::Response::Text(200, metrics_.Serialize(),
                                 "text/plain; version=0.0.4; charset=utf-8"));
    return;
  }
  if (path.starts_with("/admin/")) {
    auto cfg = config_.Get();
    if (!cfg->server.admin_token.empty() &&
        !TokenMatches(request.Header("authorization"), cfg->server.admin_token)) {
      http::Response r = http::Response::Error(401, "missing or wrong admin token");
      r.headers.emplace_back("WWW-Authenticate", "Bearer");
      respond(std::move(r));
      return;
    }
    HandleAdmin(path, std::move(request), std::move(respond));
    return;
  }
  respond(http::Response::Error(404, "not found"));
}

void AdminHandler::HandleAdmin(const std::string& path, http::Request request,
                               http::Respond respond) {
  const bool get = request.method == "GET";
  const bool post = request.method == "POST";
  if (path == "/admin/queue") {
    if (!get) return respond(MethodNotAllowed("GET"));
    storage::QueueCounts counts = store_.Counts();
    // Every configured sink is listed, at zero until it has had a delivery; a sink no longer
    // configured is listed while the store counts it (it holds, or held since the start,
    // deliveries).
    // The snapshot is held for the loop: a range-for over `Get()->sinks` would drop it before
    // the body (C++20), and a reload could free the Config while it is read.
    const std::shared_ptr<const config::Config> cfg = config_.Get();
    for (const auto& sink : cfg->sinks) counts.sinks.try_emplace(sink.name);
    respond(http::Response::Json(200, QueueJson(counts)));
    return;
  }
  if (path == "/admin/dlq") {
    if (!get) return respond(MethodNotAllowed("GET"));
    // Pages (additions): ?limit=N (1-10000, default 10000) and ?after=ID (the last id of the
    // previous page). When more follow, a Link header names the next page (RFC 8288), so a
    // list cut at the limit says so.
    size_t limit = kMaxDlqListed;
    if (const std::string l = request.QueryParam("limit"); !l.empty()) {
      const auto [end, ec] = std::from_chars(l.data(), l.data() + l.size(), limit);
      if (ec != std::errc() || end != l.data() + l.size() || limit == 0 || limit > kMaxDlqListed) {
        return respond(http::Response::Error(400, "limit must be 1 to 10000"));
      }
    }
    std::string after = request.QueryParam("after");  // empty: from the first
    if (!NormalizeDeliveryId(after)) {
      return respond(http::Response::Error(400, "after must be a dead letter's id"));
    }
    pool_.Post([this, limit, after = std::move(after), respond = std::move(respond)] {
      auto dead = store_.ListDead(limit + 1, after);  // one more: are there more?
      if (!dead.ok()) return respond(http::Response::Error(503, dead.status().message()));
      std::vector<storage::DeliveryRecord>& page = dead.value();
      const bool more = page.size() > limit;
      if (more) page.resize(limit);
      http::Response r = http::Response::Json(200, DlqJson(page));
      if (more) {
        r.headers.emplace_back("Link", "</admin/dlq?after=" + page.back().id +
                                           "&limit=" + std::to_string(limit) + ">; rel=\"next\"");
      }
      respond(std::move(r));
    });
    return;
  }
  if (path == "/admin/dlq/replay" || path == "/admin/dlq/drop") {
    if (!post) return respond(MethodNotAllowed("POST"));
    std::vector<std::string> ids;
    bool all = false;
    if (std::string err = ParseIds(request.body, &ids, &all); !err.empty()) {
      return respond(http::Response::Error(400, err));
    }
    const bool replay = path == "/admin/dlq/replay";
    if (!replay && all) return respond(http::Response::Error(400, "drop takes \"ids\" only"));
    pool_.Post([this, replay, ids = std::move(ids), all, respond = std::move(respond)] {
      std::vector<std::string> skipped;
      // With "all", a dead letter purged between the store's scan and its replay is no caller's
      // mistake: nothing is reported skipped.
      auto n = replay ? store_.Replay(ids, all, SystemClock().NowMillis(), all ? nullptr : &skipped)
                      : store_.Drop(ids, &skipped);
      if (!n.ok()) return respond(http::Response::Error(503, n.status().message()));
      if (replay && hooks_.replayed) hooks_.replayed();
      // Addition: the given ids that were not dead letters (a typo, or replayed already), so a
      // caller can tell "nothing to do" from "no such id". Absent when there are none.
      std::string body =
          std::string(replay ? "{\"replayed\":" : "{\"dropped\":") + std::to_string(n.value());
      if (!skipped.empty()) {
        boost::json::array a;
        for (std::string& id : skipped) a.emplace_back(std::move(id));
        body += ",\"skipped\":" + boost::json::serialize(a);
      }
      respond(http::Response::Json(200, body + "}"));
    });
    return;
  }
  if (path == "/admin/reload") {
    if (!post) return respond(MethodNotAllowed("POST"));
    if (!hooks_.reload) return respond(http::Response::Error(503, "reload unavailable"));
    pool_.Post([this, respond = std::move(respond)] {
      Result<std::vector<std::string>> reloaded = hooks_.reload();
      if (!reloaded.ok()) {
        return respond(http::Response::Error(503, reloaded.status().message()));
      }
      const std::vector<std::string>& errors = reloaded.value();
      if (errors.empty()) return respond(http::Response::Json(200, "{\"reloaded\":true}"));
      std::string body = "{\"error\":\"config rejected; the running config is unchanged\","
                         "\"errors\":[";
      for (size_t i = 0; i < errors.size(); ++i) {
        if (i) body += ',';
        body += JsonQuote(errors[i]);
      }
      body += "]}";
      respond(http::Response::Json(400, std::move(body)));
    });
    return;
  }
  if (path == "/admin/installations") {
    if (!get) return respond(MethodNotAllowed("GET"));
    boost::json::array rows;
    if (hooks_.installations) {
      for (const InstallationRow& r : hooks_.installations()) {
        boost::json::object o;
        o["source"] = r.source;
        o["uuid"] = r.uuid;
        o["org"] = r.org;
        o["status"] = r.status;
        if (r.expires_at_ms > 0) {
          o["expires_at"] = FormatRfc3339Millis(r.expires_at_ms);
        } else {
          o["expires_at"] = nullptr;
        }
        rows.push_back(std::move(o));
      }
    }
    respond(http::Response::Json(200, boost::json::serialize(rows)));
    return;
  }
  respond(http::Response::Error(404, "not found"));
}

}  // namespace switchyard::admin
