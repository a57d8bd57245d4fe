// Fuzz target: the public listener's request path. Raw bytes are parsed as HTTP/1.1 the way
// lib/http/server.cc parses them (Beast's request_parser with the config's header and body limits,
// chunked bodies reassembled, pipelined requests in order) and every complete request is handed to
// the real ingest::HookHandler: signature check → simdjson parse → routing → an in-memory store.
//
// Input layout: byte 0 is a set of flags (kFlag* below), the rest is what a client sends on one
// connection. The flags let the fuzzer get past the signature check: with kFlagSign the harness
// replaces the request's signature headers by the correct HMAC of the body it sent, as Sentry
// would.
//
// Invariants checked (any violation aborts, which libFuzzer reports as a crash):
//   - the handler answers every request exactly once, synchronously (the fake store is);
//   - the status is one of the contract's codes for the path (CONTRACT.md §4); the only 5xx are
//     503 (with Retry-After) and /setup's 502 (Sentry refused the grant);
//   - 2xx only for a POST whose signature header is the HMAC-SHA256 of the body under the source's
//     client_secret (checked independently here) and whose body was stored byte for byte;
//   - stored events never carry signature headers; deliveries name configured, active sinks;
//   - the installer hears of an installation webhook only after its 202 (an uninstall also after
//     its 200 duplicate), and /setup redirects
//     only after the installer succeeded, to the source's after_install_url; setup pages escape
//     what came from the query string;
//   - a response never contains a client secret or the expected signature, and its JSON body is
//     valid JSON;
//   - framing errors answer 431 / 413 / 400 exactly as the server maps them.
#include <algorithm>
#include <atomic>
#include <boost/asio/buffer.hpp>
#include <boost/beast/http.hpp>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "common/clock.h"
#include "common/crypto.h"
#include "common/log.h"
#include "config/config.h"
#include "config/config_holder.h"
#include "fake_event_store.h"
#include "http/message.h"
#include "http/request_framing.h"
#include "ingest/hook_handler.h"
#include "ingest/installer.h"
#include "json/json_doc.h"
#include "metrics/metrics.h"
#include "routing/router.h"
#include "rules/event_view.h"

namespace {

namespace bhttp = boost::beast::http;
using switchyard::fuzz::FakeEventStore;
namespace http = switchyard::http;
namespace config = switchyard::config;

// Flags in the input's first byte.
constexpr uint8_t kFlagSign = 1 << 0;          // replace signature headers by the correct HMAC
constexpr uint8_t kFlagAppSignature = 1 << 1;  // ... as Sentry-App-Signature instead
constexpr uint8_t kFlagUpperHex = 1 << 2;      // ... in upper-case hex
constexpr uint8_t kFlagStoreShift = 3;         // 2 bits: store outcome
constexpr uint8_t kFlagStopping = 1 << 5;      // the daemon is stopping: 503
constexpr uint8_t kFlagTimestamp = 1 << 6;     // set Sentry-Hook-Timestamp to the clock's now
constexpr uint8_t kFlagNoInstaller = 1 << 7;   // the handler has no installer (/setup: 503)

constexpr int64_t kNowMillis = 1700000000000;  // the FakeClock's time
constexpr size_t kMaxRequestsPerInput = 8;

constexpr char kSecret[] = "fuzz-sentry-client-secret-7f3a9c";
constexpr char kStrictSecret[] = "fuzz-strict-client-secret-41d8e2";

// The daemon's config for this harness. The limits are smaller than the defaults so that the
// fuzzer reaches them within its input sizes; the parser takes them from the config exactly as
// the server does.
constexpr char kConfigYaml[] = R"yaml(
server:
  max_body_bytes: 8192
  max_header_bytes: 4096
  max_json_depth: 32
sources:
  sentry:
    type: sentry
    client_secret: "fuzz-sentry-client-secret-7f3a9c"
    after_install_url: https://example.com/installed?from=switchyard
  strict:
    type: sentry
    client_secret: "fuzz-strict-client-secret-41d8e2"
    max_clock_skew: 5m
  nosecret:
    type: sentry
    client_secret: ""
  internal:
    type: sentry
    client_secret: ""
    token: fuzz-internal-token
    org: acme
sinks:
  phone:
    type: pushover
    token: fuzz-token
    user: fuzz-user
  idle-phone:
    type: pushover
    token: ""
    user: ""
  ops:
    type: http
    url: http://127.0.0.1:9/ingest
    headers: {X-Source: "{{ $source }}"}
  archive:
    type: file
    path: /nonexistent/fuzz-events.jsonl
routes:
  - name: issue-alerts
    source: sentry
    resource: [issue, event_alert]
    action: [created, triggered, resolved]
    match:
      - 'data.issue.level =~ "error|fatal|warning"'
      - '$header.user-agent !~ "(?i)curl.*"'
    to:
      - sink: phone
        title: '{{ data.issue.title | truncate(40) | default("(no title)") }}'
        message: '{{ data.issue.culprit | upper }} {{ $header.request-id }}'
        url: 'https://sentry.io/?q={{ data.issue.shortId | urlencode }}'
  - name: errors-json
    resource: error
    match_any:
      - 'data.error.tags.0.1 =~ "Chrome .*"'
      - 'data.error.level = "fatal"'
    to:
      - sink: ops
        body: '{"title": {{ data.error.title | json }}, "n": {{ data.error.issue_id | json }}}'
  - name: enriched
    source: sentry
    resource: issue
    enrich: [issue]
    match: ['$issue.status != "ignored"']
    to: [idle-phone]
  - name: installs-stop
    resource: installation
    stop: true
    to: [archive]
  - name: everything
    to: [archive, idle-phone]
)yaml";

[[noreturn]] void Fail(const char* what, const std::string& detail) {
  std::fprintf(stderr, "fuzz_request invariant violated: %s\n  %s\n", what, detail.c_str());
  std::abort();
}

#define FUZZ_CHECK(cond, detail)        \
  do {                                  \
    if (!(cond)) Fail(#cond, (detail)); \
  } while (0)

// Completes Setup synchronously: a grant code starting with "bad" is refused as invalid, one
// starting with "err" fails as Sentry's refusal would (502); any other succeeds. The messages
// repeat the installation id and org, as real ones may, so the page must escape them.
class FakeInstaller : public switchyard::ingest::Installer {
 public:
  void Setup(const std::string& source, const std::string& uuid, const std::string& code,
             const std::string& org, std::function<void(switchyard::Status)> done) override {
    ++setup_calls;
    last_setup_source = source;
    if (code.starts_with("bad")) {
      done(switchyard::InvalidArgument("unknown installation " + uuid + " of " + org));
    } else if (code.starts_with("err")) {
      done(switchyard::Unavailable("Sentry answered 500 for " + org + "/" + uuid));
    } else {
      done(switchyard::Status::Ok());
    }
  }
  void OnInstallationEvent(switchyard::ingest::InstallationEvent event) override {
    FUZZ_CHECK(*responded, "installer told before the webhook was answered");
    events.push_back(std::move(event));
  }
  std::string OrgOf(const std::string&, const std::string& uuid) const override {
    return uuid.empty() ? "" : "org-of-" + uuid;
  }

  const bool* responded = nullptr;  // set by the harness: the current request was answered
  size_t setup_calls = 0;
  std::string last_setup_source;
  std::vector<switchyard::ingest::InstallationEvent> events;
};

struct Harness {
  std::shared_ptr<const config::Config> cfg;
  std::unique_ptr<config::ConfigHolder> holder;
  FakeEventStore store;
  switchyard::metrics::Metrics metrics;
  switchyard::FakeClock clock{kNowMillis};
  std::atomic<bool> stopping{false};
  size_t on_deliveries_calls = 0;
  FakeInstaller installer;
  bool responded = false;
  std::unique_ptr<switchyard::ingest::HookHandler> handler;  // with the installer
  std::unique_ptr<switchyard::ingest::HookHandler> handler_without_installer;
  switchyard::json::JsonDoc check_doc{switchyard::json::JsonDoc::kDefaultMaxDepth};
  std::vector<std::string> secrets;
  bool verbose = false;  // FUZZ_VERBOSE=1: print each request's status (to check seeds)
};

Harness* g_harness = nullptr;

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string Upper(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(toupper(static_cast<unsigned char>(c)));
  return out;
}

std::string HmacHex(std::string_view key, std::string_view body) {
  switchyard::crypto::Sha256Digest d;
  if (!switchyard::crypto::HmacSha256(key, body, &d)) Fail("HmacSha256 failed", "");
  return switchyard::crypto::HexLower(d);
}

bool Contains(std::string_view haystack, std::string_view needle) {
  return !needle.empty() && haystack.find(needle) != std::string_view::npos;
}

// Feeds data[*pos, size) to `parser` until `done()` holds, as the server feeds its buffer.
// Returns false if the input ends first (the server would wait for more bytes and time out,
// answering nothing); *ec is a parse error.
template <typename Done>
bool Feed(http::RequestParser& parser, const uint8_t* data, size_t size, size_t* pos,
          boost::system::error_code* ec, Done done) {
  *pos += http::ParseBuffered(
      parser, boost::asio::buffer(data + *pos, size - *pos),
      [&](const http::RequestParser&) { return done(); }, *ec);
  return *ec || done();
}

// A framing answer (ReadErrorResponse / FramingError) the server sends before closing.
void CheckFramingAnswer(const std::optional<std::pair<int, std::string>>& answer) {
  if (!answer) return;
  const int status = answer->first;
  if (g_harness->verbose)
    std::fprintf(stderr, "framing -> %d %s\n", status, answer->second.c_str());
  FUZZ_CHECK(status == 400 || status == 413 || status == 431 || status == 501, answer->second);
  FUZZ_CHECK(answer->second.find("secret") == std::string::npos, answer->second);
}

// The statuses the contract allows for `path` on the public listener.
bool StatusAllowed(std::string_view path, int status) {
  static const std::set<int> kHooks = {200, 202, 400, 401, 404, 405, 503};
  static const std::set<int> kSetup = {302, 400, 404, 405, 502, 503};
  if (path.starts_with("/hooks/")) return kHooks.contains(status);
  if (path.starts_with("/setup/")) return kSetup.contains(status);
  return status == 404;
}

void ApplyFlags(uint8_t flags, const config::Config& cfg, http::Request* req) {
  if (flags & kFlagTimestamp) {
    std::erase_if(req->headers, [](const auto& h) { return h.first == "sentry-hook-timestamp"; });
    req->headers.emplace_back("sentry-hook-timestamp", std::to_string(kNowMillis / 1000));
  }
  if (flags & kFlagSign) {
    std::string_view path = req->Path();
    std::string key = kSecret;
    if (path.starts_with("/hooks/")) {
      if (const config::SourceConfig* s = cfg.FindSource(path.substr(7))) key = s->client_secret;
    }
    std::string sig = HmacHex(key, req->body);
    if (flags & kFlagUpperHex) sig = Upper(sig);
    std::erase_if(req->headers, [](const auto& h) {
      return h.first == "sentry-hook-signature" || h.first == "sentry-app-signature";
    });
    req->headers.insert(
        req->headers.begin(),
        {(flags & kFlagAppSignature) ? "sentry-app-signature" : "sentry-hook-signature", sig});
  }
}

// Checks what the handler did with `req` (a copy of what it was given).
void CheckResponse(Harness& h, const http::Request& req, const http::Response& resp) {
  const std::string_view path = req.Path();
  const std::string where =
      req.method + " " + req.target + " -> " + std::to_string(resp.status) + " " + resp.body;
  FUZZ_CHECK(StatusAllowed(path, resp.status), where);
  if (resp.status == 503) {
    FUZZ_CHECK(std::any_of(resp.headers.begin(), resp.headers.end(),
                           [](const auto& kv) { return kv.first == "Retry-After"; }),
               where);
  }
  if (resp.status == 405) {
    FUZZ_CHECK(std::any_of(resp.headers.begin(), resp.headers.end(),
                           [](const auto& kv) { return kv.first == "Allow"; }),
               where);
  }

  // Never a secret or the expected signature in what goes back to the client, unless the client
  // sent that text itself where it may come back (a setup page repeats query parameters; the
  // signature header alone is never repeated).
  std::string everything = resp.body;
  for (const auto& [k, v] : resp.headers) everything += k + ": " + v + "\n";
  std::string sent = req.target + "\n" + req.body;
  const std::string sent_lower = Lower(sent);
  for (const auto& [k, v] : req.headers) sent += k + ": " + v + "\n";
  for (const std::string& secret : h.secrets) {
    if (!Contains(sent, secret)) FUZZ_CHECK(!Contains(everything, secret), where);
    const std::string signature = HmacHex(secret, req.body);
    if (!Contains(sent_lower, signature)) {
      FUZZ_CHECK(!Contains(Lower(everything), signature), where);
    }
  }
  if (resp.content_type == "application/json") {
    FUZZ_CHECK(h.check_doc.Parse(resp.body).ok(), where);
  }
  if (path.starts_with("/setup/")) {
    const config::SourceConfig* source = h.cfg->FindSource(path.substr(7));
    if (resp.status == 302) {
      FUZZ_CHECK(source != nullptr && h.installer.setup_calls == 1, where);
      FUZZ_CHECK(h.installer.last_setup_source == source->name, where);
      FUZZ_CHECK(std::any_of(resp.headers.begin(), resp.headers.end(),
                             [&](const auto& kv) {
                               return kv.first == "Location" &&
                                      kv.second == source->after_install_url;
                             }),
                 where);
    }
    if (resp.status == 502) FUZZ_CHECK(h.installer.setup_calls == 1, where);
    return;
  }
  FUZZ_CHECK(h.installer.setup_calls == 0, where);

  // Only an accepted webhook reaches the installer, or a duplicate uninstall (forgetting is
  // idempotent, and Sentry's retry of a failed uninstall is a duplicate).
  for (const auto& e : h.installer.events) {
    FUZZ_CHECK(resp.status == 202 || (resp.status == 200 && e.action == "deleted"),
               where + " installer told of a " + std::to_string(resp.status) + " " + e.action);
  }
  for (const auto& e : h.installer.events) {
    FUZZ_CHECK(req.Header("sentry-hook-resource") == "installation", where);
    FUZZ_CHECK(e.action == "created" || e.action == "deleted", where + " action " + e.action);
    FUZZ_CHECK(h.store.last_event() && e.source == h.store.last_event()->source, where);
  }
  FUZZ_CHECK(h.installer.events.size() <= 1, where);

  if (resp.status != 200 && resp.status != 202) return;

  // Authenticity: a 2xx only for a POST signed with the source's secret.
  FUZZ_CHECK(req.method == "POST", where);
  FUZZ_CHECK(path.starts_with("/hooks/"), where);
  const config::SourceConfig* source = h.cfg->FindSource(path.substr(7));
  FUZZ_CHECK(source != nullptr && !source->client_secret.empty(), where);
  std::string_view sig = req.Header("sentry-hook-signature");
  if (sig.empty()) sig = req.Header("sentry-app-signature");
  FUZZ_CHECK(Lower(sig) == HmacHex(source->client_secret, req.body), where);
  FUZZ_CHECK(!req.Header("sentry-hook-resource").empty(), where);

  // Stored byte for byte, without credentials.
  const auto& event = h.store.last_event();
  FUZZ_CHECK(event.has_value(), where);
  FUZZ_CHECK(event->body == req.body, where);
  FUZZ_CHECK(event->source == source->name, where);
  FUZZ_CHECK(event->resource == req.Header("sentry-hook-resource"), where);
  FUZZ_CHECK(Contains(resp.body, event->id), where);
  for (const auto& [name, value] : event->headers) {
    FUZZ_CHECK(name != "sentry-hook-signature" && name != "sentry-app-signature" &&
                   name != "authorization",
               where + " stored header " + name);
    FUZZ_CHECK(value.size() <= h.cfg->server.max_header_bytes, where + " stored header " + name);
  }

  // The stored body parses again (the dispatcher re-parses it) and renders every field template
  // of the routes it was queued for, as the dispatcher does.
  switchyard::json::JsonDoc doc(h.cfg->server.max_json_depth);
  FUZZ_CHECK(doc.Parse(event->body).ok(), where);
  switchyard::rules::EventMeta meta;
  meta.source = event->source;
  meta.resource = event->resource;
  meta.action = event->action;
  meta.headers = event->headers;
  switchyard::rules::PayloadEventView view(doc, meta);
  for (const switchyard::storage::NewDelivery& d : h.store.last_deliveries()) {
    const config::SinkConfig* sink = h.cfg->FindSink(d.sink);
    FUZZ_CHECK(sink != nullptr && sink->active(), where + " delivery to " + d.sink);
    const config::RouteConfig* route = nullptr;
    for (const auto& r : h.cfg->routes) {
      if (r.name == d.route) route = &r;
    }
    FUZZ_CHECK(route != nullptr, where + " delivery for route " + d.route);
    if (switchyard::routing::RouteNeedsIssue(*route)) FUZZ_CHECK(d.deferred, where);
    if (d.deferred) {
      (void)switchyard::routing::RouteSelected(
          *h.cfg, {event->source, event->resource, event->action}, view, d.route, true);
    }
    for (const config::RouteTarget& t : route->to) {
      if (t.sink != d.sink) continue;
      for (const auto& [field, tmpl] : t.fields) (void)tmpl.Render(view);
    }
  }
}

// A setup page escapes what came from the query string: the same request with harmless
// parameter values (same emptiness, same installer outcome) gets the same status and a page with
// exactly as many '<' and '>'.
void CheckSetupPageEscaping(Harness& h, http::Handler& handler, const http::Request& req,
                            const http::Response& resp) {
  if (!req.Path().starts_with("/setup/") || !resp.content_type.starts_with("text/html")) return;
  const std::string code = req.QueryParam("code");
  std::string query;
  if (!code.empty()) {
    query += code.starts_with("bad") ? "code=bad" : code.starts_with("err") ? "code=err" : "code=c";
  }
  if (!req.QueryParam("installationId").empty()) query += "&installationId=u";
  if (!req.QueryParam("orgSlug").empty()) query += "&orgSlug=o";
  http::Request benign = req;
  benign.target = std::string(req.Path()) + "?" + query;
  h.installer.setup_calls = 0;
  std::optional<http::Response> other;
  handler.Handle(std::move(benign), [&](http::Response r) { other = std::move(r); });
  const std::string where = req.target + " -> " + std::to_string(resp.status) + " " + resp.body;
  FUZZ_CHECK(other.has_value() && other->status == resp.status, where);
  for (char c : {'<', '>'}) {
    FUZZ_CHECK(std::count(resp.body.begin(), resp.body.end(), c) ==
                   std::count(other->body.begin(), other->body.end(), c),
               where + "\n  vs " + other->body);
  }
}

// Parses and handles the requests in `data`, in order, like one connection of the server.
void RunConnection(Harness& h, uint8_t flags, const uint8_t* data, size_t size) {
  const config::ServerConfig& server = h.cfg->server;
  size_t pos = 0;
  for (size_t n_req = 0; n_req < kMaxRequestsPerInput && pos < size; ++n_req) {
    // As HttpServer's session: the head (then FramingError), then the body; a read error or a
    // framing answer closes the connection.
    http::RequestParser parser;
    parser.header_limit(static_cast<uint32_t>(server.max_header_bytes));
    parser.body_limit(server.max_body_bytes);
    boost::system::error_code ec;
    if (!Feed(parser, data, size, &pos, &ec, [&] { return parser.is_header_done(); })) return;
    if (ec) return CheckFramingAnswer(http::ReadErrorResponse(ec));
    if (auto answer = http::FramingError(parser)) return CheckFramingAnswer(answer);
    parser.eager(true);
    if (!Feed(parser, data, size, &pos, &ec, [&] { return parser.is_done(); })) return;
    if (ec) return CheckFramingAnswer(http::ReadErrorResponse(ec));

    const bool keep_alive = parser.keep_alive();
    http::Request request = std::move(parser.request());
    request.remote = "127.0.0.1:40000";
    request.started = std::chrono::steady_clock::now();
    FUZZ_CHECK(request.body.size() <= server.max_body_bytes, "body over the limit was accepted");
    ApplyFlags(flags, *h.cfg, &request);

    h.store.Reset();
    h.installer.setup_calls = 0;
    h.installer.events.clear();
    h.responded = false;
    const http::Request copy = request;
    std::optional<http::Response> response;
    int calls = 0;
    auto* handler =
        (flags & kFlagNoInstaller) ? h.handler_without_installer.get() : h.handler.get();
    handler->Handle(std::move(request), [&](http::Response r) {
      ++calls;
      h.responded = true;
      response = std::move(r);
    });
    FUZZ_CHECK(calls == 1, "respond called " + std::to_string(calls) + " times");
    if (h.verbose) {
      std::fprintf(stderr, "%s %s -> %d %s\n", copy.method.c_str(), copy.target.c_str(),
                   response->status, response->body.substr(0, 120).c_str());
    }
    CheckResponse(h, copy, *response);
    CheckSetupPageEscaping(h, *handler, copy, *response);
    if (!keep_alive || h.stopping) return;
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  switchyard::log::Configure(switchyard::log::Level::kError, switchyard::log::Format::kText);
  auto* h = new Harness();
  config::LoadResult loaded = config::LoadConfigFromString(kConfigYaml, "fuzz_request.yaml");
  if (!loaded.config) {
    for (const auto& e : loaded.errors) std::fprintf(stderr, "%s\n", e.ToString().c_str());
    std::abort();
  }
  h->cfg = loaded.config;
  h->holder = std::make_unique<config::ConfigHolder>(h->cfg);
  h->installer.responded = &h->responded;
  h->handler = std::make_unique<switchyard::ingest::HookHandler>(
      *h->holder, h->store, h->metrics, h->clock, h->stopping, [h] { ++h->on_deliveries_calls; },
      &h->installer);
  h->handler_without_installer = std::make_unique<switchyard::ingest::HookHandler>(
      *h->holder, h->store, h->metrics, h->clock, h->stopping);
  for (const auto& s : h->cfg->sources) {
    if (!s.client_secret.empty()) h->secrets.push_back(s.client_secret);
  }
  if (h->secrets.size() != 2 || h->secrets[0] != kSecret || h->secrets[1] != kStrictSecret) {
    std::fprintf(stderr, "fuzz_request: config secrets are not the harness's\n");
    std::abort();
  }
  h->verbose = std::getenv("FUZZ_VERBOSE") != nullptr;
  g_harness = h;
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  Harness& h = *g_harness;
  const uint8_t flags = data[0];
  switch ((flags >> kFlagStoreShift) & 3) {
    case 2:
      h.store.set_outcome(FakeEventStore::Outcome::kDuplicate);
      break;
    case 3:
      h.store.set_outcome(FakeEventStore::Outcome::kUnavailable);
      break;
    default:
      h.store.set_outcome(FakeEventStore::Outcome::kStored);
  }
  h.stopping = (flags & kFlagStopping) != 0;
  RunConnection(h, flags, data + 1, size - 1);
  return 0;
}
