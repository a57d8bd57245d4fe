#include "sinks/http_sink.h"

#include <string_view>

#include "httpclient/http_client.h"
#include "sinks/sink_util.h"
#include "sinks/utf8.h"

namespace switchyard::sinks {
namespace {

// The first kExcerptCodePoints of a receiver's error body, as valid UTF-8 on one line, with
// `secrets` redacted before the cut (a secret across the cut would no longer match whole).
constexpr size_t kExcerptCodePoints = 200;
std::string BodyExcerpt(std::string_view body, const std::vector<std::string>& secrets) {
  constexpr size_t kWindow = 64 * 1024;  // redacting all of a large body is not needed
  std::string out = TruncateCodePoints(
      Redact(std::string(body.substr(0, kWindow)), secrets, kWindow), kExcerptCodePoints);
  for (char& c : out) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = ' ';
  }
  return out;
}

using httpclient::ClientResponse;

constexpr std::string_view kOurHeaders[] = {
    "Idempotency-Key",    "X-Switchyard-Source", "X-Switchyard-Resource", "X-Switchyard-Action",
    "X-Switchyard-Route", "Content-Length",      "Transfer-Encoding",
};

bool IsOurs(std::string_view name) {
  for (std::string_view ours : kOurHeaders) {
    if (EqualsIgnoreCase(name, ours)) return true;
  }
  return false;
}

// Values that must never appear in an error string: header values (Authorization and friends)
// and the URL's userinfo and query. Adds them to `secrets`. `headers`: (name, value) pairs.
template <class Headers>
void AddSecrets(std::string_view url, const Headers& headers,
                std::vector<std::string>* secrets_out) {
  std::vector<std::string>& secrets = *secrets_out;
  // Whole values, and the parts a receiver may echo alone (a bearer token without its scheme, a
  // query parameter's value, a password without its user).
  auto add_part = [&secrets](std::string_view part) {
    if (part.size() >= 4) secrets.emplace_back(part);
  };
  for (const auto& [name, value] : headers) {
    add_part(value);
    if (size_t space = value.rfind(' '); space != std::string::npos) {
      add_part(std::string_view(value).substr(space + 1));
    }
  }
  if (size_t q = url.find('?'); q != std::string::npos && url.size() - q > 1) {
    const std::string_view query = url.substr(q + 1, url.find('#', q) - q - 1);
    secrets.emplace_back(query);
    for (size_t pos = 0; pos <= query.size();) {
      size_t amp = query.find('&', pos);
      if (amp == std::string_view::npos) amp = query.size();
      const std::string_view param = query.substr(pos, amp - pos);
      if (size_t eq = param.find('='); eq != std::string_view::npos) add_part(param.substr(eq + 1));
      pos = amp + 1;
    }
  }
  if (size_t scheme = url.find("://"); scheme != std::string::npos) {
    const size_t start = scheme + 3;
    const size_t end = url.find_first_of("/?#", start);
    const std::string_view authority =
        std::string_view(url).substr(start, end == std::string::npos ? end : end - start);
    if (size_t at = authority.rfind('@'); at != std::string_view::npos && at > 0) {
      const std::string_view userinfo = authority.substr(0, at);
      secrets.emplace_back(userinfo);
      if (size_t colon = userinfo.find(':'); colon != std::string_view::npos) {
        add_part(userinfo.substr(colon + 1));
      }
    }
  }
}

std::vector<std::string> SecretsOf(const config::HttpSinkConfig& config) {
  std::vector<std::string> secrets;
  AddSecrets(config.url, config.headers, &secrets);
  return secrets;
}

// Header values from the payload (e.g. the action) must not be able to inject header lines: control
// characters other than tab become spaces.
std::string SafeHeaderValue(std::string_view value) {
  std::string out(value);
  for (char& c : out) {
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\t') || u == 0x7F) c = ' ';
  }
  return out;
}

class HttpSink final : public Sink {
 public:
  HttpSink(const config::HttpSinkConfig& config, httpclient::HttpClient& client)
      : config_(config),
        secrets_(std::make_shared<std::vector<std::string>>(SecretsOf(config))),
        client_(client) {}

  void Deliver(const Delivery& delivery, DeliverCallback done) override {
    if (delivery.event == nullptr) {
      done(Outcome{Outcome::Kind::kPermanent, "delivery has no event", 0, std::nullopt});
      return;
    }
    if (config_.url_template) {
      // The URL is the template rendered for this event; one that is not a URL never will be
      // (the same event renders it the same way), so this is permanent, and says why.
      if (!delivery.url) {
        done(Outcome{Outcome::Kind::kPermanent,
                     "the url template was not rendered (the event body is not JSON)", 0,
                     std::nullopt});
        return;
      }
      if (Status s = httpclient::ValidateUrl(*delivery.url); !s.ok()) {
        done(Outcome{Outcome::Kind::kPermanent,
                     "the url template rendered an invalid URL for this event (" + s.message() +
                         "; use | urlencode for values in a path or query)",
                     0, std::nullopt});
        return;
      }
    }
    for (const auto& [name, tmpl] : config_.header_templates) {
      if (!delivery.headers.contains(name)) {
        done(Outcome{
            Outcome::Kind::kPermanent,
            "the template of header " + name + " was not rendered (the event body is not JSON)", 0,
            std::nullopt});
        return;
      }
    }
    httpclient::ClientRequest request;
    std::shared_ptr<const std::vector<std::string>> secrets = secrets_;
    bool built = false;
    try {
      request = BuildRequest(delivery);
      if (config_.url_template || !config_.header_templates.empty()) {
        // What was rendered for this event may hold secrets too (a token in the query...).
        auto all = std::make_shared<std::vector<std::string>>(*secrets_);
        AddSecrets(request.url, delivery.headers, all.get());
        secrets = std::move(all);
      }
      built = true;
    } catch (const std::exception&) {  // allocation failure
    }
    if (!built) {
      done(Outcome{Outcome::Kind::kRetry, "internal error", 0, std::nullopt});
      return;
    }
    auto callback = [secrets = std::move(secrets),
                     done = std::move(done)](Result<ClientResponse> result) {
      Outcome out;
      try {
        if (result.ok()) {
          out = ClassifyHttpStatus(result->status, FindHeader(result->headers, "retry-after"),
                                   std::chrono::system_clock::now());
          if (out.kind != Outcome::Kind::kSuccess && !result->body.empty()) {
            // The receiver's reason, for `dlq list`: its start, on one line, without secrets.
            out.error += ": " + BodyExcerpt(result->body, *secrets);
          }
        } else {
          out = ClassifyTransportError(result.status());
          out.error = Redact(std::move(out.error), *secrets);
        }
      } catch (const std::exception&) {
        out = Outcome{Outcome::Kind::kRetry, "internal error", 0, std::nullopt};
      }
      done(std::move(out));
    };
    client_.Send(std::move(request), std::move(callback));
  }

 private:
  httpclient::ClientRequest BuildRequest(const Delivery& delivery) const {
    const storage::StoredEvent& event = *delivery.event;
    httpclient::ClientRequest request;
    request.method = config_.method.empty() ? "POST" : config_.method;
    request.url = config_.url_template ? *delivery.url : config_.url;
    request.timeout = config_.timeout;
    request.max_response_bytes = kHttpSinkMaxResponseBytes;
    // Only the status and Retry-After matter: a 2xx with a huge body is still a delivery.
    request.discard_oversized_body = true;
    const auto templated = delivery.fields.find("body");
    const bool has_template = templated != delivery.fields.end();
    bool configured_content_type = false;
    request.headers.reserve(config_.headers.size() + 6);
    for (const auto& [name, value] : config_.headers) {
      if (IsOurs(name)) continue;
      if (EqualsIgnoreCase(name, "Content-Type")) {
        if (!has_template) continue;  // the raw payload is always application/json
        configured_content_type = true;
      }
      if (config_.header_templates.contains(name)) {
        // Rendered from the payload: it must not be able to inject header lines.
        request.headers.emplace_back(name, SafeHeaderValue(delivery.headers.at(name)));
      } else {
        request.headers.emplace_back(name, value);
      }
    }
    if (!configured_content_type) request.headers.emplace_back("Content-Type", "application/json");
    request.headers.emplace_back("Idempotency-Key", SafeHeaderValue(delivery.id));
    request.headers.emplace_back("X-Switchyard-Source", SafeHeaderValue(event.source));
    request.headers.emplace_back("X-Switchyard-Resource", SafeHeaderValue(event.resource));
    request.headers.emplace_back("X-Switchyard-Action", SafeHeaderValue(event.action));
    request.headers.emplace_back("X-Switchyard-Route", SafeHeaderValue(delivery.route));
    request.body = has_template ? templated->second : event.body;
    return request;
  }

  const config::HttpSinkConfig config_;
  const std::shared_ptr<const std::vector<std::string>> secrets_;
  httpclient::HttpClient& client_;
};

}  // namespace

std::unique_ptr<Sink> NewHttpSink(const config::HttpSinkConfig& config,
                                  httpclient::HttpClient& client) {
  return std::make_unique<HttpSink>(config, client);
}

}  // namespace switchyard::sinks
