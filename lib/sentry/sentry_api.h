// SentryApi: the requests switchyard makes to Sentry (sentry-protocol.md §3, §6), built on the
// one HttpClient. Stateless: which token to use, and refresh-and-retry, are the
// InstallationManager's business. Every request has a deadline (the client's timeout).
//
// Error mapping (Status codes) for any Sentry answer that is not a success:
//   kPermissionDenied   401 (grant unknown/used/expired, token expired or invalid, bad client
//                       secret) — Sentry's "detail" text is kept in the message;
//   kNotFound           404;
//   kFailedPrecondition other 4xx (400, 403): Sentry refused; retrying the same request fails
//                       again (kInvalidArgument is kept for our own checks of the input);
//   kUnavailable        429, 5xx, connection errors (retryable), with retry_after from 429/503;
//   kDeadlineExceeded   timeout (retryable);
//   kInternal           a 2xx whose body is not what the protocol says.
// ManualRefresh only: 403 "Manual token refresh is not enabled for this organization" (Sentry's
// feature flag) maps like any 403, to kFailedPrecondition; a 401 from Sentry's check of the JWT
// itself ("Could not validate JWT, ...": clocks apart; "JWT has already been used": a resent
// request) is kUnavailable, since a new JWT later may pass.
// Refresh only: a refusal of the refresh token itself (401 "Given refresh token does not exist",
// 400 "Token does not belong to the application") or of the installation (404) is kNotFound:
// the pair is dead. Sentry's other refusals (401 "Invalid Client ID / Secret pair" or "Invalid
// request", 400 field errors, 403) concern the app's credentials or the request, not the pair,
// and keep the mapping above.
// Callbacks run on a client thread and must not block.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"
#include "config/config.h"
#include "httpclient/http_client.h"
#include "metrics/metrics.h"

namespace switchyard::sentry {

struct TokenGrant {
  std::string access_token;
  std::string refresh_token;
  int64_t expires_at_ms = 0;
};

struct ApiReply {
  int http_status = 0;
  std::string body;
};

// The result, and on failure, how long Sentry asked us to wait (Retry-After on 429/503).
template <typename T>
using ApiCallback = std::function<void(Result<T>, std::optional<std::chrono::milliseconds>)>;

// Input checks for values that end up in API paths (they come from webhooks and query strings).
bool ValidUuid(std::string_view s);       // hex digits and '-', 1..64
bool ValidOrgSlug(std::string_view s);    // [A-Za-z0-9_.-], 1..100
bool ValidIssueId(std::string_view s);    // digits, 1..20

// The bearer JWT of a manual refresh (sentry-protocol.md §3): HS256 under the client secret,
// claims iss = sub = client_id, iat = now_s - 30, exp = now_s + 60, and a random jti. (Sentry's
// PyJWT refuses an iat ahead of its own clock, with no leeway: 30 s of ours fast is allowed.)
std::string ClientSecretJwt(std::string_view client_id, std::string_view client_secret,
                            int64_t now_s);

class SentryApi {
 public:
  SentryApi(httpclient::HttpClient& client, metrics::Metrics& metrics,
            std::chrono::milliseconds timeout = std::chrono::seconds(10))
      : client_(client), metrics_(metrics), timeout_(timeout) {}

  // POST …/sentry-app-installations/<uuid>/authorizations/ grant_type=authorization_code.
  void ExchangeGrant(const config::SourceConfig& source, const std::string& uuid,
                     const std::string& code, ApiCallback<TokenGrant> done);
  // POST …/authorizations/ grant_type=refresh_token. Sentry invalidates the old pair on success.
  // kNotFound means Sentry refused the pair itself (see the mapping above).
  void Refresh(const config::SourceConfig& source, const std::string& uuid,
               const std::string& refresh_token, ApiCallback<TokenGrant> done);
  // POST …/authorizations/ grant_type=urn:sentry:params:oauth:grant-type:jwt-bearer, authorized
  // by ClientSecretJwt: Sentry deletes the installation's current pair, whatever it is, and
  // issues a new one. The way back from a pair lost in transit (a refresh Sentry answered but
  // whose answer never arrived); Sentry allows it only for organizations with the
  // "sentry-app-manual-token-refresh" feature.
  void ManualRefresh(const config::SourceConfig& source, const std::string& uuid,
                     ApiCallback<TokenGrant> done);
  // PUT …/sentry-app-installations/<uuid>/ {"status":"installed"}.
  void VerifyInstall(const config::SourceConfig& source, const std::string& uuid,
                     const std::string& access_token, ApiCallback<bool> done);
  // GET <api_url><path> with the bearer token; a 2xx reply, or the mapped error. `what` labels
  // the metric ("issue", ...).
  void Get(const config::SourceConfig& source, const std::string& path,
           const std::string& access_token, std::string_view what, ApiCallback<ApiReply> done);

 private:
  void Send(const config::SourceConfig& source, std::string_view what,
            httpclient::ClientRequest request, ApiCallback<ApiReply> done);
  void TokenRequest(const config::SourceConfig& source, const std::string& uuid, std::string body,
                    std::string authorization, std::string_view what, ApiCallback<TokenGrant> done);

  httpclient::HttpClient& client_;
  metrics::Metrics& metrics_;
  std::chrono::milliseconds timeout_;
};

}  // namespace switchyard::sentry
