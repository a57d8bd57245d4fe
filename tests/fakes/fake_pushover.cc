#include "fakes/fake_pushover.h"

#include <boost/json.hpp>
#include <charconv>
#include <cstdio>
#include <optional>
#include <random>

namespace switchyard::testing {
namespace {

std::string NewUuid() {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  const uint64_t a = rng();
  const uint64_t b = rng();
  char buf[37];
  snprintf(buf, sizeof(buf), "%08x-%04x-4%03x-%04x-%012llx", static_cast<unsigned>(a >> 32),
           static_cast<unsigned>((a >> 16) & 0xFFFF), static_cast<unsigned>(a & 0xFFF),
           static_cast<unsigned>(0x8000 | ((b >> 48) & 0x3FFF)),
           static_cast<unsigned long long>(b & 0xFFFFFFFFFFFFull));
  return buf;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string Decode(std::string_view s) {
  std::string out;
  for (size_t i = 0; i < s.size(); ++i) {
    if (s[i] == '+') {
      out += ' ';
    } else if (s[i] == '%' && i + 2 < s.size() && HexValue(s[i + 1]) >= 0 &&
               HexValue(s[i + 2]) >= 0) {
      out += static_cast<char>(HexValue(s[i + 1]) * 16 + HexValue(s[i + 2]));
      i += 2;
    } else {
      out += s[i];
    }
  }
  return out;
}

std::optional<int64_t> ToInt(const std::string& s) {
  int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

// {"<field>":"invalid"?, "errors":[error], "status":0, "request":uuid}
std::string ErrorBody(const std::string& field, const std::string& error) {
  boost::json::object o;
  if (!field.empty()) o[field] = "invalid";
  o["errors"] = boost::json::array{boost::json::string(error)};
  o["status"] = 0;
  o["request"] = NewUuid();
  return boost::json::serialize(o);
}

}  // namespace

std::map<std::string, std::string> ParseForm(const std::string& body) {
  std::map<std::string, std::string> form;
  size_t start = 0;
  while (start <= body.size()) {
    size_t end = body.find('&', start);
    if (end == std::string::npos) end = body.size();
    const std::string_view pair = std::string_view(body).substr(start, end - start);
    if (!pair.empty()) {
      const size_t eq = pair.find('=');
      std::string name = Decode(pair.substr(0, eq));
      std::string value = eq == std::string_view::npos ? "" : Decode(pair.substr(eq + 1));
      form.emplace(std::move(name), std::move(value));
    }
    start = end + 1;
  }
  return form;
}

size_t CountUtf8CodePoints(const std::string& s) {
  size_t n = 0;
  for (char c : s) {
    if ((static_cast<unsigned char>(c) & 0xC0) != 0x80) ++n;
  }
  return n;
}

FakePushover::FakePushover(FakePushoverOptions options)
    : options_(std::move(options)), remaining_(options_.quota_limit) {
  server_ = std::make_unique<TestHttpServer>(
      [this](const ReceivedRequest& request) { return Handle(request); });
}

FakePushover::~FakePushover() { server_.reset(); }

uint16_t FakePushover::port() const { return server_->port(); }

std::string FakePushover::url() const {
  return "http://127.0.0.1:" + std::to_string(port()) + "/1/messages.json";
}

void FakePushover::FailNext(int n, int status, std::string retry_after) {
  std::lock_guard<std::mutex> lock(mu_);
  for (int i = 0; i < n; ++i) faults_.push_back({Fault::kStatus, status, retry_after, {}});
}

void FakePushover::HangNext(int n, std::chrono::milliseconds delay) {
  std::lock_guard<std::mutex> lock(mu_);
  for (int i = 0; i < n; ++i) faults_.push_back({Fault::kHang, 0, "", delay});
}

void FakePushover::CloseNext(int n) {
  std::lock_guard<std::mutex> lock(mu_);
  for (int i = 0; i < n; ++i) faults_.push_back({Fault::kClose, 0, "", {}});
}

void FakePushover::SetQuotaRemaining(int64_t remaining) {
  std::lock_guard<std::mutex> lock(mu_);
  remaining_ = remaining;
}

std::vector<PushoverMessage> FakePushover::messages() const {
  std::lock_guard<std::mutex> lock(mu_);
  return messages_;
}

std::vector<PushoverRequest> FakePushover::requests() const {
  std::lock_guard<std::mutex> lock(mu_);
  return requests_;
}

size_t FakePushover::message_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return messages_.size();
}

size_t FakePushover::request_count() const {
  std::lock_guard<std::mutex> lock(mu_);
  return requests_.size();
}

bool FakePushover::WaitFor(size_t count, std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return messages_.size() >= count; });
}

bool FakePushover::WaitForRequests(size_t count, std::chrono::milliseconds timeout) const {
  std::unique_lock<std::mutex> lock(mu_);
  return cv_.wait_for(lock, timeout, [&] { return requests_.size() >= count; });
}

ServerReply FakePushover::JsonReply(int status, const std::string& body) const {
  ServerReply reply;
  reply.status = status;
  reply.body = body;
  reply.headers = {{"Content-Type", "application/json; charset=utf-8"},
                   {"X-Limit-App-Limit", std::to_string(options_.quota_limit)},
                   {"X-Limit-App-Remaining", std::to_string(std::max<int64_t>(remaining_, 0))},
                   {"X-Limit-App-Reset", std::to_string(options_.quota_reset)}};
  return reply;
}

ServerReply FakePushover::Handle(const ReceivedRequest& request) {
  std::lock_guard<std::mutex> lock(mu_);
  ServerReply reply;
  std::chrono::milliseconds delay{0};
  const std::string path = request.target.substr(0, request.target.find('?'));
  if (path != "/1/messages.json") {
    reply = ServerReply{
        404, {{"Content-Type", "application/json"}}, ErrorBody("", "resource not found")};
  } else if (request.method != "POST") {
    reply = ServerReply{405, {{"Allow", "POST"}}, ErrorBody("", "method not allowed")};
  } else {
    std::optional<Fault> fault;
    if (!faults_.empty()) {
      fault = faults_.front();
      faults_.pop_front();
    }
    if (fault && fault->kind == Fault::kStatus) {
      reply = JsonReply(fault->status,
                        ErrorBody("", fault->status == 429 ? "application is over its quota"
                                                           : "internal server error"));
      if (!fault->retry_after.empty())
        reply.headers.emplace_back("Retry-After", fault->retry_after);
    } else if (fault && fault->kind == Fault::kClose) {
      reply.close = true;
    } else {
      if (fault) delay = fault->delay;
      const std::string type = request.Header("content-type");
      if (type.rfind("application/x-www-form-urlencoded", 0) != 0) {
        reply = JsonReply(400, ErrorBody("", "the fake only accepts form-encoded requests"));
      } else {
        reply = Validate(ParseForm(request.body));
      }
    }
  }
  reply.delay = delay;
  requests_.push_back({request, reply.close ? 0 : reply.status});
  cv_.notify_all();
  return reply;
}

// mu_ held.
ServerReply FakePushover::Validate(const std::map<std::string, std::string>& form) {
  auto get = [&form](const std::string& name) -> std::string {
    auto it = form.find(name);
    return it == form.end() ? "" : it->second;
  };
  if (get("token") != options_.token) {
    return JsonReply(400, ErrorBody("token", "application token is invalid"));
  }
  if (get("user") != options_.user) {
    return JsonReply(400, ErrorBody("user", "user identifier is invalid"));
  }
  if (get("message").empty()) {
    return JsonReply(400, ErrorBody("message", "message cannot be blank"));
  }
  static const std::pair<const char*, size_t> kLimits[] = {
      {"message", 1024}, {"title", 250}, {"url", 512}, {"url_title", 100}};
  for (const auto& [field, limit] : kLimits) {
    if (CountUtf8CodePoints(get(field)) > limit) {
      return JsonReply(400, ErrorBody(field, std::string(field) + " cannot be longer than " +
                                                 std::to_string(limit) + " characters"));
    }
  }
  if (form.count("priority")) {
    const auto priority = ToInt(get("priority"));
    if (!priority || *priority < -2 || *priority > 2) {
      return JsonReply(400, ErrorBody("priority", "priority is invalid"));
    }
    if (*priority == 2) {
      const auto retry = ToInt(get("retry"));
      const auto expire = ToInt(get("expire"));
      if (!retry || !expire) {
        return JsonReply(
            400, ErrorBody("", "retry and expire parameters must be supplied with priority=2"));
      }
      if (*retry < 30) return JsonReply(400, ErrorBody("retry", "retry must be at least 30"));
      if (*expire > 10800) {
        return JsonReply(400, ErrorBody("expire", "expire must be at most 10800"));
      }
    }
  }
  if (remaining_ <= 0) {
    return JsonReply(429, ErrorBody("", "application is over its message quota"));
  }
  --remaining_;
  messages_.push_back(form);
  boost::json::object ok;
  ok["status"] = 1;
  ok["request"] = NewUuid();
  return JsonReply(200, boost::json::serialize(ok));
}

}  // namespace switchyard::testing
