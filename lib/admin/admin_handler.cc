#include "admin/admin_handler.h"

#include <openssl/crypto.h>

namespace switchyard::admin {
namespace {

http::Response MethodNotAllowed(const char* allow) {
  http::Response r = http::Response::Error(405, "method not allowed");
  r.headers.emplace_back("Allow", allow);
  return r;
}

bool TokenMatches(std::string_view header, const std::string& token) {
  constexpr std::string_view kBearer = "Bearer ";
  if (!header.starts_with(kBearer)) return false;
  std::string_view got = header.substr(kBearer.size());
  if (got.size() != token.size()) return false;
  return CRYPTO_memcmp(got.data(), token.data(), token.size()) == 0;
}

}  // namespace

AdminHandler::AdminHandler(const config::ConfigHolder& config, metrics::Metrics& metrics,
                           const std::atomic<bool>& ready)
    : config_(config), metrics_(metrics), ready_(ready) {}

void AdminHandler::Handle(http::Request request, http::Respond respond) {
  std::string_view path = request.Path();
  const bool get = request.method == "GET" || request.method == "HEAD";
  if (path == "/healthz") {
    respond(get ? http::Response::Json(200, "{\"status\":\"ok\"}") : MethodNotAllowed("GET"));
    return;
  }
  if (path == "/readyz") {
    if (!get) return respond(MethodNotAllowed("GET"));
    respond(ready_ ? http::Response::Json(200, "{\"status\":\"ready\"}")
                   : http::Response::Json(503, "{\"status\":\"not ready\"}"));
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
    // TODO(switchyard): queue, dlq, installations and reload endpoints (issues 3-5).
    respond(http::Response::Error(404, "not found"));
    return;
  }
  respond(http::Response::Error(404, "not found"));
}

}  // namespace switchyard::admin
