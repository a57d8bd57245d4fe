#include "fakes/fake_sentry.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <boost/json.hpp>
#include <cstdio>
#include <ctime>
#include <random>

namespace switchyard::testing {
namespace {

std::string RandomHex(size_t bytes) {
  static thread_local std::mt19937_64 rng(std::random_device{}());
  std::string out;
  char buf[3];
  for (size_t i = 0; i < bytes; ++i) {
    snprintf(buf, sizeof buf, "%02x", static_cast<unsigned>(rng() & 0xff));
    out += buf;
  }
  return out;
}

std::string Iso8601(std::chrono::system_clock::time_point t) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  time_t secs = static_cast<time_t>(ms / 1000);
  struct tm tm;
  gmtime_r(&secs, &tm);
  char buf[64];
  snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
           tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
           static_cast<int>(ms % 1000));
  return buf;
}

ServerReply Detail(int status, const std::string& detail) {
  ServerReply r;
  r.status = status;
  r.headers = {{"Content-Type", "application/json"}};
  if (status == 401) r.headers.emplace_back("WWW-Authenticate", "xBasic realm=\"api\"");
  boost::json::object o;
  o["detail"] = detail;
  r.body = boost::json::serialize(o);
  return r;
}

ServerReply Json(int status, std::string body) {
  ServerReply r;
  r.status = status;
  r.headers = {{"Content-Type", "application/json"}};
  r.body = std::move(body);
  return r;
}

std::string Base64UrlDecode(std::string_view in) {
  static constexpr std::string_view kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    const size_t v = kAlphabet.find(c);
    if (v == std::string_view::npos) return "";
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return out;
}

std::string Base64UrlEncode(const unsigned char* data, size_t n) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < n; ++i) {
    acc = (acc << 8) | data[i];
    bits += 8;
    while (bits >= 6) {
      bits -= 6;
      out.push_back(kAlphabet[(acc >> bits) & 0x3f]);
    }
  }
  if (bits > 0) out.push_back(kAlphabet[(acc << (6 - bits)) & 0x3f]);
  return out;
}

std::string Bearer(const ReceivedRequest& request) {
  std::string auth = request.Header("Authorization");
  if (auth.rfind("Bearer ", 0) != 0) return "";
  return auth.substr(7);
}

// Splits "/a/b/c/" into {"a","b","c"}.
std::vector<std::string> Segments(const std::string& target) {
  std::string path = target.substr(0, target.find('?'));
  std::vector<std::string> out;
  size_t pos = 0;
  while (pos < path.size()) {
    size_t next = path.find('/', pos);
    if (next == std::string::npos) next = path.size();
    if (next > pos) out.push_back(path.substr(pos, next - pos));
    pos = next + 1;
  }
  return out;
}

}  // namespace

FakeSentry::FakeSentry(FakeSentryOptions options)
    : options_(std::move(options)), token_lifetime_(options_.token_lifetime) {
  server_ = std::make_unique<TestHttpServer>(
      [this](const ReceivedRequest& r) { return Handle(r); });
}

FakeSentry::~FakeSentry() { server_.reset(); }

uint16_t FakeSentry::port() const { return server_->port(); }
std::string FakeSentry::url() const { return "http://127.0.0.1:" + std::to_string(port()); }

std::string FakeSentry::IssueGrant(const std::string& uuid, const std::string& org) {
  std::lock_guard lock(mu_);
  std::string code = RandomHex(32);
  grants_[code] = {uuid, org, std::chrono::steady_clock::now()};
  org_of_[uuid] = org;
  return code;
}

void FakeSentry::AddIssue(const std::string& org, const std::string& id, std::string json) {
  std::lock_guard lock(mu_);
  issues_[org + "/" + id] = std::move(json);
}

void FakeSentry::AddStaticToken(const std::string& token) {
  std::lock_guard lock(mu_);
  static_tokens_.insert(token);
}

void FakeSentry::ExpireAccessToken(const std::string& uuid) {
  std::lock_guard lock(mu_);
  for (auto& [token, pair] : access_) {
    if (pair.uuid == uuid) pair.expires = std::chrono::steady_clock::now() - std::chrono::seconds(1);
  }
}

void FakeSentry::RevokeTokens(const std::string& uuid) {
  std::lock_guard lock(mu_);
  DeletePairsLocked(uuid);
}

void FakeSentry::RotateTokens(const std::string& uuid) {
  std::lock_guard lock(mu_);
  DeletePairsLocked(uuid);
  NewPairLocked(uuid);
}

void FakeSentry::SetManualRefresh(bool enabled) {
  std::lock_guard lock(mu_);
  manual_refresh_ = enabled;
}

std::string FakeSentry::LastJwtClaims() const {
  std::lock_guard lock(mu_);
  return last_jwt_claims_;
}

void FakeSentry::DeletePairsLocked(const std::string& uuid) {
  for (auto it = access_.begin(); it != access_.end();) {
    if (it->second.uuid == uuid) {
      refresh_.erase(it->second.refresh);
      it = access_.erase(it);
    } else {
      ++it;
    }
  }
}

void FakeSentry::Uninstall(const std::string& uuid) {
  std::lock_guard lock(mu_);
  uninstalled_.insert(uuid);
}

void FakeSentry::FailNext(ScriptedFault fault) {
  std::lock_guard lock(mu_);
  faults_.push_back(std::move(fault));
}

size_t FakeSentry::PendingFaults() const {
  std::lock_guard lock(mu_);
  return faults_.size();
}

void FakeSentry::SetTokenLifetime(std::chrono::milliseconds lifetime) {
  std::lock_guard lock(mu_);
  token_lifetime_ = lifetime;
}

FakeSentry::Stats FakeSentry::stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

std::vector<std::string> FakeSentry::AllTokens() const {
  std::lock_guard lock(mu_);
  return all_tokens_;
}

std::string FakeSentry::CurrentAccessToken(const std::string& uuid) const {
  std::lock_guard lock(mu_);
  for (const auto& [token, pair] : access_) {
    if (pair.uuid == uuid) return token;
  }
  return "";
}

bool FakeSentry::Verified(const std::string& uuid) const {
  std::lock_guard lock(mu_);
  return verified_.count(uuid) > 0;
}

std::vector<std::string> FakeSentry::IssueAuthorizations() const {
  std::lock_guard lock(mu_);
  return issue_auth_;
}

std::vector<std::chrono::steady_clock::time_point> FakeSentry::IssueRequestTimes() const {
  std::lock_guard lock(mu_);
  return issue_times_;
}

ServerReply FakeSentry::Handle(const ReceivedRequest& request) {
  std::lock_guard lock(mu_);
  const std::vector<std::string> seg = Segments(request.target);
  const bool issue_get = seg.size() == 6 && seg[0] == "api" && seg[1] == "0" &&
                         seg[2] == "organizations" && seg[4] == "issues";
  if (issue_get) {
    issue_times_.push_back(std::chrono::steady_clock::now());
    issue_auth_.push_back(request.Header("Authorization"));
  }
  for (auto it = faults_.begin(); it != faults_.end(); ++it) {
    if ((it->method.empty() || it->method == request.method) &&
        request.target.find(it->path_part) != std::string::npos) {
      if (it->pass_through) {
        auto delay = it->delay;
        faults_.erase(it);
        ServerReply r = Route(request, seg, issue_get);
        r.delay = delay;
        return r;
      }
      ServerReply r = Json(it->status, it->body);
      for (auto& h : it->headers) r.headers.push_back(h);
      r.delay = it->delay;
      faults_.erase(it);
      return r;
    }
  }
  return Route(request, seg, issue_get);
}

ServerReply FakeSentry::Route(const ReceivedRequest& request, const std::vector<std::string>& seg,
                              bool issue_get) {
  // /api/0/sentry-app-installations/<uuid>/[authorizations/]
  if (seg.size() >= 4 && seg[0] == "api" && seg[1] == "0" &&
      seg[2] == "sentry-app-installations") {
    const std::string& uuid = seg[3];
    if (uninstalled_.count(uuid))
      return Detail(404, "Could not find given sentry app installation");
    if (seg.size() == 5 && seg[4] == "authorizations") {
      if (request.method != "POST") return Detail(405, "Method not allowed");
      return Authorizations(uuid, request);
    }
    if (seg.size() == 4) {
      if (request.method != "PUT") return Detail(405, "Method not allowed");
      auto it = access_.find(Bearer(request));
      if (it == access_.end() || it->second.uuid != uuid) {
        ++stats_.unauthorized;
        return Detail(401, "Invalid token");
      }
      if (it->second.expires < std::chrono::steady_clock::now()) {
        ++stats_.unauthorized;
        return Detail(401, "Token expired");
      }
      boost::system::error_code ec;
      boost::json::value v = boost::json::parse(request.body, ec);
      const boost::json::value* status =
          !ec && v.is_object() ? v.as_object().if_contains("status") : nullptr;
      if (!status || !status->is_string() || status->get_string() != "installed") {
        return Json(400, R"({"status":["Invalid value for status"]})");
      }
      ++stats_.verifies;
      verified_.insert(uuid);
      boost::json::object o;
      o["uuid"] = uuid;
      o["status"] = "installed";
      o["organization"] = boost::json::object{{"slug", org_of_[uuid]}};
      o["app"] = boost::json::object{{"uuid", "2ebf071f-28df-4989-aca9-c37c763b278f"},
                                     {"slug", "switchyard-test"}};
      return Json(200, boost::json::serialize(o));
    }
  }
  if (issue_get) {
    if (request.method != "GET") return Detail(405, "Method not allowed");
    const std::string token = Bearer(request);
    if (!static_tokens_.count(token)) {
      auto it = access_.find(token);
      if (it == access_.end()) {
        ++stats_.unauthorized;
        return Detail(401, "Invalid token");
      }
      if (it->second.expires < std::chrono::steady_clock::now()) {
        ++stats_.unauthorized;
        return Detail(401, "Token expired");
      }
    }
    auto issue = issues_.find(seg[3] + "/" + seg[5]);
    if (issue == issues_.end()) return Detail(404, "The requested resource does not exist");
    ++stats_.issue_gets;
    return Json(200, issue->second);
  }
  return Detail(404, "The requested resource does not exist");
}

ServerReply FakeSentry::Authorizations(const std::string& uuid, const ReceivedRequest& request) {
  if (request.body.empty()) return Detail(401, "Invalid request");
  boost::system::error_code ec;
  boost::json::value v = boost::json::parse(request.body, ec);
  if (ec || !v.is_object()) return Detail(401, "Invalid request");
  const boost::json::object& o = v.as_object();
  auto str = [&](const char* name) -> std::string {
    const boost::json::value* f = o.if_contains(name);
    return f && f->is_string() ? std::string(f->get_string()) : std::string();
  };
  if (str("grant_type") == "urn:sentry:params:oauth:grant-type:jwt-bearer") {
    // Authenticated by the JWT alone (JWTClientSecretAuthentication), then the feature flag.
    if (auto refused = RefuseManualRefresh(request)) {
      ++stats_.manual_refreshes_refused;
      return *refused;
    }
    if (!manual_refresh_) {
      ++stats_.manual_refreshes_refused;
      return Detail(403, "Manual token refresh is not enabled for this organization");
    }
    bool has_pair = false;
    for (const auto& [token, pair] : access_) has_pair = has_pair || pair.uuid == uuid;
    if (!has_pair) {
      ++stats_.manual_refreshes_refused;
      return Detail(401, "Installation does not have a token");
    }
    DeletePairsLocked(uuid);
    ++stats_.manual_refreshes_ok;
    return NewPairLocked(uuid);
  }
  if (str("client_id") != options_.client_id || str("client_secret") != options_.client_secret) {
    return Detail(401, "Invalid Client ID / Secret pair");
  }
  const std::string grant_type = str("grant_type");
  if (grant_type == "authorization_code") {
    const std::string code = str("code");
    if (code.empty()) return Json(400, R"({"code":["This field is required."]})");
    auto it = grants_.find(code);
    if (it == grants_.end()) {
      ++stats_.exchanges_refused;
      return Detail(401, "Could not find grant for given code");
    }
    if (std::chrono::steady_clock::now() - it->second.created > options_.grant_lifetime) {
      ++stats_.exchanges_refused;
      return Detail(401, "Grant has already expired");
    }
    if (it->second.uuid != uuid) {
      ++stats_.exchanges_refused;
      return Detail(401, "Forbidden grant");
    }
    grants_.erase(it);  // single use
    ++stats_.exchanges_ok;
  } else if (grant_type == "refresh_token") {
    const std::string refresh = str("refresh_token");
    if (refresh.empty()) return Json(400, R"({"refresh_token":["This field is required."]})");
    auto it = refresh_.find(refresh);
    auto acc = it == refresh_.end() ? access_.end() : access_.find(it->second);
    if (acc == access_.end() || acc->second.uuid != uuid) {
      ++stats_.refreshes_refused;
      return Detail(401, "Given refresh token does not exist");
    }
    // Rotation: the old pair dies the moment Sentry answers.
    access_.erase(acc);
    refresh_.erase(it);
    ++stats_.refreshes_ok;
  } else {
    return Detail(403, "Invalid grant_type");
  }
  return NewPairLocked(uuid);
}

std::optional<ServerReply> FakeSentry::RefuseManualRefresh(const ReceivedRequest& request) {
  const std::string auth = request.Header("Authorization");
  if (auth.empty()) return Detail(401, "Header is in invalid form");
  if (auth.rfind("Bearer ", 0) != 0) return Detail(401, "Bearer not present in token");
  const std::string jwt = auth.substr(7);
  const size_t dot1 = jwt.find('.');
  const size_t dot2 = dot1 == std::string::npos ? dot1 : jwt.find('.', dot1 + 1);
  if (dot2 == std::string::npos) {
    return Detail(401, "Could not validate JWT, got error: Not enough segments");
  }
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mac_len = 0;
  HMAC(EVP_sha256(), options_.client_secret.data(), static_cast<int>(options_.client_secret.size()),
       reinterpret_cast<const unsigned char*>(jwt.data()), dot2, mac, &mac_len);
  if (jwt.substr(dot2 + 1) != Base64UrlEncode(mac, mac_len)) {
    return Detail(401, "Could not validate JWT, got error: Signature verification failed");
  }
  boost::system::error_code ec;
  const boost::json::value header = boost::json::parse(Base64UrlDecode(jwt.substr(0, dot1)), ec);
  if (ec || !header.is_object() || !header.as_object().contains("alg") ||
      header.as_object().at("alg") != "HS256") {
    return Detail(401, "Could not validate JWT, got error: The specified alg value is not allowed");
  }
  const std::string claims_text = Base64UrlDecode(jwt.substr(dot1 + 1, dot2 - dot1 - 1));
  const boost::json::value claims = boost::json::parse(claims_text, ec);
  if (ec || !claims.is_object()) {
    return Detail(401, "Could not validate JWT, got error: Invalid payload string");
  }
  const boost::json::object& c = claims.as_object();
  const int64_t now = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  if (const boost::json::value* exp = c.if_contains("exp");
      exp && exp->is_int64() && exp->as_int64() <= now) {
    return Detail(401, "Could not validate JWT, got error: Signature has expired");
  }
  if (const boost::json::value* iat = c.if_contains("iat");
      iat && (!iat->is_int64() || iat->as_int64() > now)) {
    return Detail(401, "Could not validate JWT, got error: The token is not yet valid (iat)");
  }
  if (const boost::json::value* jti = c.if_contains("jti"); jti && jti->is_string()) {
    if (!used_jtis_.insert(std::string(jti->get_string())).second) {
      return Detail(401, "JWT has already been used");
    }
  }
  const boost::json::value* iss = c.if_contains("iss");
  if (!iss || !iss->is_string() || iss->get_string() != options_.client_id) {
    return Detail(401, "JWT is not valid for this application");
  }
  last_jwt_claims_ = claims_text;
  return std::nullopt;
}

ServerReply FakeSentry::NewPairLocked(const std::string& uuid) {
  const std::string token = RandomHex(32);
  const std::string refresh = RandomHex(32);
  access_[token] = {uuid, refresh, std::chrono::steady_clock::now() + token_lifetime_};
  refresh_[refresh] = token;
  all_tokens_.push_back(token);
  all_tokens_.push_back(refresh);
  const auto now = std::chrono::system_clock::now();
  boost::json::object out;
  out["id"] = std::to_string(next_id_++);
  out["token"] = token;
  out["refreshToken"] = refresh;
  out["dateCreated"] = Iso8601(now);
  out["expiresAt"] = Iso8601(now + token_lifetime_);
  out["state"] = nullptr;
  out["application"] = nullptr;
  return Json(201, boost::json::serialize(out));
}

}  // namespace switchyard::testing
