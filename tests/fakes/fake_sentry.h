// FakeSentry: a real HTTP server on 127.0.0.1 implementing the parts of Sentry's API a Sentry app
// uses (sentry-protocol.md §3, §6), with Sentry's semantics and error bodies:
//
// POST /api/0/sentry-app-installations/<uuid>/authorizations/ (JSON body)
//   - client_id/client_secret must match: else 401 {"detail":"Invalid Client ID / Secret pair"}
//     (an empty body: 401 {"detail":"Invalid request"}); 401s carry WWW-Authenticate.
//   - grant_type=authorization_code: the code must exist and be unused (401 "Could not find grant
//     for given code"), not older than the grant lifetime (401 "Grant has already expired"), and
//     belong to <uuid> (401 "Forbidden grant"). Single use: a used code is deleted.
//   - grant_type=refresh_token: the refresh token must be the installation's current one (401
//     "Given refresh token does not exist"); success deletes the old pair (old access and refresh
//     tokens stop working at once) and issues a new one.
//   - grant_type=urn:sentry:params:oauth:grant-type:jwt-bearer (manual refresh), authorized by
//     "Authorization: Bearer <JWT>" alone (no client_id/secret in the body): the JWT must be
//     HS256 under the client secret (401 "Could not validate JWT, got error: ..."), unexpired,
//     not issued in the future (401 "...The token is not yet valid (iat)"), not used before
//     (401 "JWT has already been used"), with iss = client_id (401 "JWT is not valid for this
//     application"). Then, unless SetManualRefresh(true), 403 "Manual token refresh is not
//     enabled for this organization" (Sentry's feature flag); an installation without a current
//     pair gets 401 "Installation does not have a token"; else that pair is deleted and a new one
//     issued.
//   - other grant types: 403 {"detail":"Invalid grant_type"}.
//   - success: 201 {"id","token","refreshToken","expiresAt","dateCreated","state":null,
//     "application":null}; tokens expire after the configured token lifetime (8 h by default).
// PUT /api/0/sentry-app-installations/<uuid>/ {"status":"installed"} with the installation's
//   bearer token → 200 with the serialized installation; other bodies 400.
// GET /api/0/organizations/<org>/issues/<id>/ with a bearer token: 401 {"detail":"Invalid
//   token"} for an unknown token, 401 {"detail":"Token expired"} for an expired one; the
//   registered issue JSON (200) or 404 {"detail":"The requested resource does not exist"}.
//
// Scriptable faults (FIFO, each consumed by one matching request before any checks): FailNext.
// Thread-safe; the handler runs on the server's I/O thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "fakes/test_http_server.h"

namespace switchyard::testing {

struct FakeSentryOptions {
  std::string client_id = "fake-client-id";
  std::string client_secret = "fake-client-secret-4b1d";
  std::chrono::milliseconds token_lifetime = std::chrono::hours(8);
  std::chrono::milliseconds grant_lifetime = std::chrono::minutes(10);
};

// A scripted answer for the next request whose path contains `path_part` (and method matches,
// if set).
struct ScriptedFault {
  std::string method;  // empty = any
  std::string path_part;
  int status = 500;
  std::string body = R"({"detail":"Internal Error"})";
  std::vector<std::pair<std::string, std::string>> headers;
  std::chrono::milliseconds delay{0};
  // Handle the request normally (no scripted status), only answer after `delay`.
  bool pass_through = false;
};

class FakeSentry {
 public:
  explicit FakeSentry(FakeSentryOptions options = {});
  ~FakeSentry();
  FakeSentry(const FakeSentry&) = delete;
  FakeSentry& operator=(const FakeSentry&) = delete;

  uint16_t port() const;
  std::string url() const;  // http://127.0.0.1:<port> (the api_url to configure)
  const FakeSentryOptions& options() const { return options_; }

  // A fresh single-use grant code for installation `uuid` (as Sentry creates on install).
  std::string IssueGrant(const std::string& uuid, const std::string& org = "test-org");
  // Registers the issue GET /api/0/organizations/<org>/issues/<id>/ returns.
  void AddIssue(const std::string& org, const std::string& id, std::string json);
  // A token that never expires (an internal integration's), valid for `org`.
  void AddStaticToken(const std::string& token);
  // Makes the installation's current access token expired (its refresh token stays valid).
  void ExpireAccessToken(const std::string& uuid);
  // Deletes the installation's current pair (as a revoke in Sentry's UI would).
  void RevokeTokens(const std::string& uuid);
  // Replaces the installation's pair by one switchyard never sees: Sentry's state after it
  // answered a refresh whose answer was lost on the way.
  void RotateTokens(const std::string& uuid);
  // Deletes the installation (an uninstall in Sentry's UI): every request under
  // /api/0/sentry-app-installations/<uuid>/ answers 404 "Could not find given sentry app
  // installation", as Sentry's installation endpoints do.
  void Uninstall(const std::string& uuid);
  void FailNext(ScriptedFault fault);
  // Scripted faults not yet consumed by a request.
  size_t PendingFaults() const;
  void SetTokenLifetime(std::chrono::milliseconds lifetime);
  // Sentry's "organizations:sentry-app-manual-token-refresh" feature (off by default, as there).
  void SetManualRefresh(bool enabled);

  struct Stats {
    int exchanges_ok = 0;
    int exchanges_refused = 0;
    int refreshes_ok = 0;
    int refreshes_refused = 0;
    int manual_refreshes_ok = 0;
    int manual_refreshes_refused = 0;
    int verifies = 0;
    int issue_gets = 0;     // answered 200
    int unauthorized = 0;   // API calls answered 401 (bad or expired token)
  };
  Stats stats() const;
  // Every access and refresh token ever issued (to scan for leaks).
  std::vector<std::string> AllTokens() const;
  // The installation's current access token ("" if none).
  std::string CurrentAccessToken(const std::string& uuid) const;
  bool Verified(const std::string& uuid) const;
  // The claims (JSON) of the last JWT a manual refresh accepted.
  std::string LastJwtClaims() const;
  // The Authorization headers of the issue GETs, in order.
  std::vector<std::string> IssueAuthorizations() const;
  // Times (steady clock) at which issue GETs arrived, in order (answered or not).
  std::vector<std::chrono::steady_clock::time_point> IssueRequestTimes() const;

 private:
  ServerReply Handle(const ReceivedRequest& request);
  ServerReply Route(const ReceivedRequest& request, const std::vector<std::string>& seg,
                    bool issue_get);
  ServerReply Authorizations(const std::string& uuid, const ReceivedRequest& request);
  // Checks a manual refresh's JWT; an error reply, or nullopt when it may proceed.
  std::optional<ServerReply> RefuseManualRefresh(const ReceivedRequest& request);
  void DeletePairsLocked(const std::string& uuid);
  ServerReply NewPairLocked(const std::string& uuid);  // 201 with a new pair for `uuid`

  struct Grant {
    std::string uuid;
    std::string org;
    std::chrono::steady_clock::time_point created;
  };
  struct Pair {
    std::string uuid;
    std::string refresh;
    std::chrono::steady_clock::time_point expires;
  };

  const FakeSentryOptions options_;
  mutable std::mutex mu_;
  std::chrono::milliseconds token_lifetime_;           // GUARDED_BY(mu_)
  bool manual_refresh_ = false;
  std::string last_jwt_claims_;
  std::set<std::string> used_jtis_;
  std::map<std::string, Grant> grants_;                // code -> grant
  std::map<std::string, Pair> access_;                 // access token -> pair
  std::map<std::string, std::string> refresh_;         // refresh token -> access token
  std::map<std::string, std::string> org_of_;          // uuid -> org
  std::set<std::string> static_tokens_;
  std::set<std::string> verified_;
  std::set<std::string> uninstalled_;
  std::map<std::string, std::string> issues_;          // org/id -> json
  std::deque<ScriptedFault> faults_;
  std::vector<std::string> all_tokens_;
  std::vector<std::string> issue_auth_;
  std::vector<std::chrono::steady_clock::time_point> issue_times_;
  Stats stats_;
  int next_id_ = 1;
  std::unique_ptr<TestHttpServer> server_;
};

}  // namespace switchyard::testing
