#include "sinks/pushover_sink.h"

#include <algorithm>
#include <boost/json.hpp>
#include <charconv>
#include <mutex>
#include <optional>

#include "httpclient/http_client.h"
#include "sinks/sink_util.h"
#include "sinks/utf8.h"

namespace switchyard::sinks {
namespace {

using httpclient::ClientResponse;

// Response bodies larger than this are not parsed (the outcome then rests on the status code).
constexpr size_t kMaxParsedBody = 64 * 1024;
constexpr size_t kMaxResponseBytes = 1 << 20;

struct FieldSpec {
  std::string_view name;
  size_t limit;  // code points; 0 = no limit
};
constexpr FieldSpec kOptionalFields[] = {
    {"title", kPushoverMaxTitle},
    {"url", kPushoverMaxUrl},
    {"url_title", kPushoverMaxUrlTitle},
    {"priority", 0},
    {"sound", 0},
    {"device", 0},
    {"html", 0},
    {"ttl", 0},
    {"retry", 0},
    {"expire", 0},
};

std::optional<int64_t> ParseInt(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

// What we read from a Pushover JSON body.
struct ApiReply {
  std::optional<int64_t> status;
  std::string errors;   // the `errors` array joined with "; "
  std::string request;  // request id (Pushover support asks for it)
};

ApiReply ParseReply(const std::string& body) {
  ApiReply reply;
  if (body.empty() || body.size() > kMaxParsedBody) return reply;
  boost::json::error_code ec;
  boost::json::value v = boost::json::parse(body, ec);
  if (ec || !v.is_object()) return reply;
  const boost::json::object& o = v.get_object();
  if (const auto* s = o.if_contains("status")) {
    if (s->is_int64()) {
      reply.status = s->get_int64();
    } else if (s->is_uint64()) {
      reply.status = s->get_uint64() == 1 ? 1 : 0;
    } else if (s->is_string()) {
      reply.status = s->get_string() == "1" ? 1 : 0;
    } else {
      reply.status = 0;
    }
  }
  if (const auto* e = o.if_contains("errors"); e && e->is_array()) {
    for (const auto& item : e->get_array()) {
      if (!reply.errors.empty()) reply.errors += "; ";
      if (item.is_string()) {
        reply.errors.append(item.get_string().data(), item.get_string().size());
      } else {
        reply.errors += boost::json::serialize(item);
      }
    }
  }
  if (const auto* r = o.if_contains("request"); r && r->is_string()) {
    reply.request = std::string(r->get_string().data(), r->get_string().size());
  }
  return reply;
}

// State shared with in-flight callbacks, so the sink may be destroyed (config reload) while
// requests are still running.
struct State {
  config::PushoverSinkConfig config;
  mutable std::mutex mu;
  std::optional<PushoverQuota> quota;  // guarded by mu

  // Keeps the response's quota headers as the sink's latest quota, and returns them (nullopt when
  // the response carried none).
  std::optional<PushoverQuota> RecordQuota(const ClientResponse& res) {
    const auto limit = FindHeader(res.headers, "x-limit-app-limit");
    const auto remaining = FindHeader(res.headers, "x-limit-app-remaining");
    const auto reset = FindHeader(res.headers, "x-limit-app-reset");
    if (limit.empty() && remaining.empty() && reset.empty()) return std::nullopt;
    PushoverQuota q;
    q.limit = ParseInt(limit).value_or(-1);
    q.remaining = ParseInt(remaining).value_or(-1);
    q.reset = ParseInt(reset).value_or(-1);
    std::lock_guard<std::mutex> lock(mu);
    quota = q;
    return q;
  }

  std::string Describe(std::string prefix, const ApiReply& reply) const {
    if (!reply.errors.empty()) prefix += ": " + reply.errors;
    if (!reply.request.empty()) prefix += " (request " + reply.request + ")";
    return Redact(std::move(prefix), {config.token, config.user});
  }

  Outcome HandleResult(const Result<ClientResponse>& result) {
    if (!result.ok()) {
      Outcome out = ClassifyTransportError(result.status());
      out.error = Redact("pushover: " + out.error, {config.token, config.user});
      if (out.kind == Outcome::Kind::kRetry) {
        out.retry_after = kPushoverMinRetry;
        out.min_retry = kPushoverMinRetry;
      }
      return out;
    }
    const ClientResponse& res = result.value();
    const std::optional<PushoverQuota> quota_now = RecordQuota(res);
    const ApiReply reply = ParseReply(res.body);
    Outcome out;
    out.http_status = res.status;
    if (res.status >= 200 && res.status <= 299) {
      if (reply.status == 1) return out;  // kSuccess
      out.kind = Outcome::Kind::kPermanent;
      out.error = Describe(
          reply.status ? "pushover: status " + std::to_string(*reply.status)
                       : "pushover: HTTP " + std::to_string(res.status) + " without status 1",
          reply);
      return out;
    }
    out.error = Describe("pushover: HTTP " + std::to_string(res.status), reply);
    if (res.status >= 400 && res.status <= 499 && res.status != 429) {
      out.kind = Outcome::Kind::kPermanent;
      return out;
    }
    // 429, 5xx and anything else: retry, never sooner than 5 s.
    const auto now = std::chrono::system_clock::now();
    const Outcome http =
        ClassifyHttpStatus(res.status, FindHeader(res.headers, "retry-after"), now);
    out.kind = Outcome::Kind::kRetry;
    out.retry_after = std::max(kPushoverMinRetry, http.retry_after.value_or(kPushoverMinRetry));
    out.min_retry = kPushoverMinRetry;
    if (res.status == 429) {
      // Over the monthly quota until X-Limit-App-Reset: retrying sooner only earns more 4xx
      // answers (which get the sender's IP blocked). The dispatcher caps it at max_delay.
      const int64_t now_s =
          std::chrono::duration_cast<std::chrono::seconds>(now.time_since_epoch()).count();
      // At most the longest configurable duration, as every Retry-After (no overflow below).
      constexpr int64_t kMaxWaitSeconds =
          std::chrono::duration_cast<std::chrono::seconds>(config::kMaxDuration).count();
      if (quota_now && quota_now->reset > now_s) {
        const std::chrono::milliseconds wait =
            std::chrono::seconds(std::min(quota_now->reset - now_s, kMaxWaitSeconds));
        out.retry_after = std::max(*out.retry_after, wait);
      }
    }
    return out;
  }
};

class PushoverSinkImpl final : public PushoverSink {
 public:
  PushoverSinkImpl(const config::PushoverSinkConfig& config, httpclient::HttpClient& client)
      : state_(std::make_shared<State>()), client_(client) {
    state_->config = config;
  }

  void Deliver(const Delivery& delivery, DeliverCallback done) override {
    if (!active()) {
      done(Outcome{Outcome::Kind::kRetry, "pushover: token or user not configured", 0,
                   kPushoverMinRetry});
      return;
    }
    httpclient::ClientRequest request;
    request.method = "POST";
    request.timeout = kPushoverTimeout;
    request.max_response_bytes = kMaxResponseBytes;
    bool built = false;
    try {
      request.url = state_->config.api_url;
      request.headers = {{"Content-Type", "application/x-www-form-urlencoded"},
                         {"Accept", "application/json"}};
      request.body = FormUrlEncode(PushoverFormFields(state_->config, delivery));
      built = true;
    } catch (const std::exception&) {  // allocation failure
    }
    if (!built) {
      done(Outcome{Outcome::Kind::kRetry, "pushover: internal error", 0, kPushoverMinRetry});
      return;
    }
    auto callback = [state = state_, done = std::move(done)](Result<ClientResponse> result) {
      Outcome out;
      try {
        out = state->HandleResult(result);
      } catch (const std::exception&) {
        out = Outcome{Outcome::Kind::kRetry, "pushover: internal error", 0, kPushoverMinRetry};
      }
      done(std::move(out));
    };
    client_.Send(std::move(request), std::move(callback));
  }

  bool active() const override {
    return !state_->config.token.empty() && !state_->config.user.empty();
  }

  std::optional<PushoverQuota> quota() const override {
    std::lock_guard<std::mutex> lock(state_->mu);
    return state_->quota;
  }

 private:
  const std::shared_ptr<State> state_;
  httpclient::HttpClient& client_;
};

}  // namespace

std::vector<std::pair<std::string, std::string>> PushoverFormFields(
    const config::PushoverSinkConfig& config, const Delivery& delivery) {
  std::vector<std::pair<std::string, std::string>> form;
  form.emplace_back("token", config.token);
  form.emplace_back("user", config.user);
  std::string_view message = "(no title)";
  if (auto it = delivery.fields.find("message");
      it != delivery.fields.end() && !it->second.empty()) {
    message = it->second;
  } else if (!delivery.default_title.empty()) {
    message = delivery.default_title;
  }
  form.emplace_back("message", TruncateCodePoints(message, kPushoverMaxMessage));
  for (const FieldSpec& spec : kOptionalFields) {
    auto it = delivery.fields.find(std::string(spec.name));
    if (it == delivery.fields.end() || it->second.empty()) continue;
    form.emplace_back(spec.name, spec.limit ? TruncateCodePoints(it->second, spec.limit)
                                            : SanitizeUtf8(it->second));
  }
  return form;
}

std::string FormUrlEncode(const std::vector<std::pair<std::string, std::string>>& fields) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  auto append = [&out](std::string_view s) {
    for (char ch : s) {
      const auto c = static_cast<unsigned char>(ch);
      if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '*' ||
          c == '-' || c == '.' || c == '_') {
        out += ch;
      } else if (c == ' ') {
        out += '+';
      } else {
        out += '%';
        out += kHex[c >> 4];
        out += kHex[c & 0xF];
      }
    }
  };
  for (const auto& [name, value] : fields) {
    if (!out.empty()) out += '&';
    append(name);
    out += '=';
    append(value);
  }
  return out;
}

std::unique_ptr<PushoverSink> NewPushoverSink(const config::PushoverSinkConfig& config,
                                              httpclient::HttpClient& client) {
  return std::make_unique<PushoverSinkImpl>(config, client);
}

std::optional<PushoverQuota> PushoverQuotaOf(const Sink* sink) {
  const auto* pushover = dynamic_cast<const PushoverSink*>(sink);
  if (pushover == nullptr) return std::nullopt;
  return pushover->quota();
}

}  // namespace switchyard::sinks
