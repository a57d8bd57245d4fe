#include "sentry/sentry_api.h"

#include <boost/json.hpp>
#include <memory>

#include "common/crypto.h"
#include "common/time_format.h"
#include "sinks/sink.h"

namespace switchyard::sentry {
namespace {

constexpr size_t kMaxDetail = 200;

std::string BaseUrl(const config::SourceConfig& source) {
  std::string base = source.api_url;
  while (!base.empty() && base.back() == '/') base.pop_back();
  return base;
}

std::string_view StatusClass(int status) {
  if (status >= 200 && status < 300) return "2xx";
  if (status >= 400 && status < 500) return "4xx";
  if (status >= 500 && status < 600) return "5xx";
  return "other";
}

// Sentry's error text ({"detail": "..."}), bounded and printable; never a token (Sentry's
// messages are fixed strings), but bounded anyway so a hostile peer cannot flood our logs.
std::string Detail(const std::string& body) {
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(body, ec);
  std::string out;
  if (!ec && v.is_object()) {
    if (const boost::json::value* d = v.as_object().if_contains("detail"); d && d->is_string()) {
      out = std::string(d->get_string());
    }
  }
  if (out.size() > kMaxDetail) out.resize(kMaxDetail);
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || c == '"' || c == '\\') c = ' ';
  }
  return out;
}

bool AllOf(std::string_view s, size_t max, bool (*ok)(char)) {
  if (s.empty() || s.size() > max) return false;
  for (char c : s) {
    if (!ok(c)) return false;
  }
  return true;
}

// Whether a refused refresh says the pair itself is dead (sentry-protocol.md §3, "Refresh
// rotates"): the installation is gone (404 with Sentry's own detail for it), the refresh token is
// unknown or already used, or it belongs to another application. Send keeps Sentry's detail, a
// fixed string, in the message. Any other 404 (a wrong api_url, a proxy) says nothing of the pair.
bool RefreshTokenRefused(const Status& s) {
  const std::string& m = s.message();
  return (s.code() == StatusCode::kNotFound &&
          m.find("\"Could not find given sentry app installation\"") != std::string::npos) ||
         (s.code() == StatusCode::kPermissionDenied &&
          m.find("\"Given refresh token does not exist\"") != std::string::npos) ||
         (s.code() == StatusCode::kFailedPrecondition &&
          m.find("\"Token does not belong to the application\"") != std::string::npos);
}

}  // namespace

bool ValidUuid(std::string_view s) {
  return AllOf(s, 64, [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || c == '-';
  });
}

bool ValidOrgSlug(std::string_view s) {
  return AllOf(s, 100, [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
           c == '-' || c == '_' || c == '.';
  }) && s != "." && s != "..";
}

bool ValidIssueId(std::string_view s) {
  return AllOf(s, 20, [](char c) { return c >= '0' && c <= '9'; });
}

void SentryApi::Send(const config::SourceConfig& source, std::string_view what,
                     httpclient::ClientRequest request, ApiCallback<ApiReply> done) {
  request.timeout = timeout_;
  request.headers.emplace_back("Accept", "application/json");
  request.headers.emplace_back("User-Agent", "switchyard");
  client_.Send(std::move(request), [this, source_name = source.name, what = std::string(what),
                                    done = std::move(done)](
                                       Result<httpclient::ClientResponse> result) {
    if (!result.ok()) {
      metrics_.SentryApiCall(source_name, what, "error");
      const Status& s = result.status();
      // Transport failures are transient whatever the client called them (except a bad URL).
      if (s.code() == StatusCode::kInvalidArgument) return done(s, std::nullopt);
      if (s.retryable()) return done(s, std::nullopt);
      return done(Unavailable("sentry " + what + ": " + s.message()), std::nullopt);
    }
    httpclient::ClientResponse& r = result.value();
    metrics_.SentryApiCall(source_name, what, StatusClass(r.status));
    if (r.status >= 200 && r.status < 300) {
      return done(ApiReply{r.status, std::move(r.body)}, std::nullopt);
    }
    std::string message = "sentry " + what + ": HTTP " + std::to_string(r.status);
    if (std::string detail = Detail(r.body); !detail.empty()) message += " \"" + detail + "\"";
    if (r.status == 401) return done(PermissionDenied(message), std::nullopt);
    if (r.status == 404) return done(NotFound(message), std::nullopt);
    sinks::Outcome o =
        sinks::ClassifyHttpStatus(r.status, r.Header("retry-after"), std::chrono::system_clock::now());
    if (o.kind == sinks::Outcome::Kind::kRetry) return done(Unavailable(message), o.retry_after);
    // Sentry refused the request (400, 403, ...): not the caller's input being malformed, which
    // is InvalidArgument (/setup answers 400 for that and 502 for this).
    return done(FailedPrecondition(message), std::nullopt);
  });
}

void SentryApi::TokenRequest(const config::SourceConfig& source, const std::string& uuid,
                             std::string body, std::string authorization, std::string_view what,
                             ApiCallback<TokenGrant> done) {
  if (!ValidUuid(uuid)) return done(InvalidArgument("invalid installation uuid"), std::nullopt);
  httpclient::ClientRequest req;
  req.method = "POST";
  req.url = BaseUrl(source) + "/api/0/sentry-app-installations/" + uuid + "/authorizations/";
  req.headers.emplace_back("Content-Type", "application/json");
  if (!authorization.empty()) req.headers.emplace_back("Authorization", std::move(authorization));
  req.body = std::move(body);
  req.max_response_bytes = 64 * 1024;
  Send(source, what, std::move(req),
       [what = std::string(what), done = std::move(done)](
           Result<ApiReply> reply, std::optional<std::chrono::milliseconds> retry_after) {
         if (!reply.ok()) return done(reply.status(), retry_after);
         boost::system::error_code ec;
         boost::json::value v = boost::json::parse(reply->body, ec);
         const boost::json::object* o = ec ? nullptr : v.if_object();
         auto str = [&](const char* name) -> std::string {
           const boost::json::value* f = o ? o->if_contains(name) : nullptr;
           return f && f->is_string() ? std::string(f->get_string()) : std::string();
         };
         TokenGrant g;
         g.access_token = str("token");
         g.refresh_token = str("refreshToken");
         auto expires = ParseRfc3339Millis(str("expiresAt"));
         if (g.access_token.empty() || g.refresh_token.empty() || !expires) {
           return done(Internal("sentry " + what + ": the answer has no token, refreshToken or "
                                "expiresAt"),
                       std::nullopt);
         }
         g.expires_at_ms = *expires;
         done(std::move(g), std::nullopt);
       });
}

// The token endpoint's JSON body: the grant and the app's credentials (sentry-protocol.md §3).
static std::string TokenBody(const config::SourceConfig& source, std::string_view grant_type,
                             std::string_view field, const std::string& value) {
  boost::json::object body;
  body["grant_type"] = grant_type;
  body[field] = value;
  body["client_id"] = source.client_id;
  body["client_secret"] = source.client_secret;
  return boost::json::serialize(body);
}

void SentryApi::ExchangeGrant(const config::SourceConfig& source, const std::string& uuid,
                              const std::string& code, ApiCallback<TokenGrant> done) {
  TokenRequest(source, uuid, TokenBody(source, "authorization_code", "code", code), "", "exchange",
               std::move(done));
}

void SentryApi::Refresh(const config::SourceConfig& source, const std::string& uuid,
                        const std::string& refresh_token, ApiCallback<TokenGrant> done) {
  TokenRequest(source, uuid, TokenBody(source, "refresh_token", "refresh_token", refresh_token), "",
               "refresh",
               [done = std::move(done)](Result<TokenGrant> grant,
                                        std::optional<std::chrono::milliseconds> retry_after) {
                 if (!grant.ok() && RefreshTokenRefused(grant.status())) {
                   return done(NotFound(grant.status().message()), retry_after);
                 }
                 if (!grant.ok() && grant.status().code() == StatusCode::kNotFound) {
                   // Not the pair: kept, retried with backoff, and at once after a reload.
                   return done(FailedPrecondition(grant.status().message() +
                                                  " (not Sentry's answer for an uninstalled app; "
                                                  "check the source's api_url)"),
                               retry_after);
                 }
                 done(std::move(grant), retry_after);
               });
}

std::string ClientSecretJwt(std::string_view client_id, std::string_view client_secret,
                            int64_t now_s) {
  uint8_t nonce[16];
  if (!crypto::RandomBytes(nonce, sizeof nonce)) return "";
  boost::json::object claims;
  claims["iss"] = client_id;
  claims["sub"] = client_id;
  claims["iat"] = now_s - 30;
  claims["exp"] = now_s + 60;
  claims["jti"] = crypto::HexLower(nonce, sizeof nonce);
  std::string jwt = crypto::Base64Url(R"({"alg":"HS256","typ":"JWT"})") + "." +
                    crypto::Base64Url(boost::json::serialize(claims));
  crypto::Sha256Digest mac;
  if (!crypto::HmacSha256(client_secret, jwt, &mac)) return "";
  return jwt + "." +
         crypto::Base64Url(std::string_view(reinterpret_cast<const char*>(mac.data()), mac.size()));
}

void SentryApi::ManualRefresh(const config::SourceConfig& source, const std::string& uuid,
                              ApiCallback<TokenGrant> done) {
  const int64_t now_s = std::chrono::duration_cast<std::chrono::seconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
  std::string jwt = ClientSecretJwt(source.client_id, source.client_secret, now_s);
  if (jwt.empty()) return done(Internal("cannot sign the manual refresh's JWT"), std::nullopt);
  TokenRequest(source, uuid, R"({"grant_type":"urn:sentry:params:oauth:grant-type:jwt-bearer"})",
               "Bearer " + jwt, "manual_refresh",
               [done = std::move(done)](Result<TokenGrant> grant,
                                        std::optional<std::chrono::milliseconds> retry_after) {
                 const std::string& m = grant.status().message();
                 if (!grant.ok() && grant.status().code() == StatusCode::kPermissionDenied &&
                     (m.find("\"Could not validate JWT") != std::string::npos ||
                      m.find("\"JWT has already been used\"") != std::string::npos)) {
                   return done(Unavailable(m + " (is this machine's clock right?)"), retry_after);
                 }
                 done(std::move(grant), retry_after);
               });
}

void SentryApi::VerifyInstall(const config::SourceConfig& source, const std::string& uuid,
                              const std::string& access_token, ApiCallback<bool> done) {
  if (!ValidUuid(uuid)) return done(InvalidArgument("invalid installation uuid"), std::nullopt);
  httpclient::ClientRequest req;
  req.method = "PUT";
  req.url = BaseUrl(source) + "/api/0/sentry-app-installations/" + uuid + "/";
  req.headers.emplace_back("Content-Type", "application/json");
  req.headers.emplace_back("Authorization", "Bearer " + access_token);
  req.body = R"({"status":"installed"})";
  req.max_response_bytes = 64 * 1024;
  Send(source, "verify", std::move(req),
       [done = std::move(done)](Result<ApiReply> reply,
                                std::optional<std::chrono::milliseconds> retry_after) {
         if (!reply.ok()) return done(reply.status(), retry_after);
         done(true, std::nullopt);
       });
}

void SentryApi::Get(const config::SourceConfig& source, const std::string& path,
                    const std::string& access_token, std::string_view what,
                    ApiCallback<ApiReply> done) {
  httpclient::ClientRequest req;
  req.method = "GET";
  req.url = BaseUrl(source) + path;
  req.headers.emplace_back("Authorization", "Bearer " + access_token);
  Send(source, what, std::move(req), std::move(done));
}

}  // namespace switchyard::sentry
