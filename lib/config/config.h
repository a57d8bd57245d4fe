// Typed configuration: the whole routes.yaml schema of CONTRACT.md §3. A Config is built once by
// LoadConfig and is immutable afterwards; it is shared (via shared_ptr<const Config>) between
// threads and swapped whole on reload.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "common/status.h"
#include "rules/matcher.h"
#include "rules/template.h"

namespace switchyard::config {

using Duration = std::chrono::milliseconds;
// The longest duration a config may set (36500d, 100 years): sums of a few of them, and of them
// with a clock reading, cannot overflow. Waits taken from outside (Retry-After) saturate here too.
inline constexpr Duration kMaxDuration = std::chrono::hours(24 * 36500);

struct ServerConfig {
  std::string listen = "127.0.0.1:8080";
  std::string admin_listen = "127.0.0.1:9090";
  std::string admin_token;  // secret: never logged
  int threads = 0;          // 0 = number of cores
  uint64_t max_body_bytes = 1048576;
  uint64_t max_header_bytes = 16384;  // addition: request line + headers
  Duration header_timeout = std::chrono::seconds(10);
  Duration body_timeout = std::chrono::seconds(30);  // addition: whole body after the head
  Duration idle_timeout = std::chrono::seconds(60);
  uint32_t max_connections = 10000;  // addition: per listener; further accepts wait
  uint32_t max_json_depth = 128;     // addition: deeper payloads get 400
  std::string public_url;
  Duration shutdown_timeout = std::chrono::seconds(15);
};

struct StorageConfig {
  std::string path = "./var";
  bool sync = true;
  Duration dedupe_window = std::chrono::hours(1);  // 0 = off
  Duration dlq_retention = std::chrono::hours(24 * 7);
  // Addition: below this much free space on the store's filesystem new webhooks get 503, so the
  // store never runs into ENOSPC (RocksDB's own ENOSPC handling is not safe to rely on). 0 = off.
  uint64_t min_free_bytes = 128ull << 20;
  // Addition: past this many bytes of store (table files + memtables), new webhooks get 503, so
  // an undrainable backlog is bounded before the disk is. 0 = unlimited.
  uint64_t max_disk_bytes = 0;
};

struct SourceConfig {
  std::string name;
  std::string type = "sentry";
  std::string client_id;
  std::string client_secret;  // secret
  std::string api_url = "https://sentry.io";
  bool verify_install = true;
  std::string token;  // secret; internal integration when set
  std::string org;
  Duration refresh_before = std::chrono::hours(1);
  std::string after_install_url = "https://sentry.io/settings/";
  Duration max_clock_skew = Duration(0);  // 0 = do not check Sentry-Hook-Timestamp
};

struct RetryConfig {
  Duration initial = std::chrono::seconds(1);
  double multiplier = 2.0;
  Duration max_delay = std::chrono::minutes(10);
  double jitter = 0.2;
  uint32_t max_attempts = 12;
  Duration max_age = std::chrono::hours(24);
};

// Partial retry block: a per-sink override of RetryConfig; unset fields inherit.
struct RetryOverride {
  std::optional<Duration> initial;
  std::optional<double> multiplier;
  std::optional<Duration> max_delay;
  std::optional<double> jitter;
  std::optional<uint32_t> max_attempts;
  std::optional<Duration> max_age;
  RetryConfig ApplyTo(const RetryConfig& base) const;
};

struct Rate {
  double per_second = 0;  // 0 = unlimited
  double burst = 1;
};

struct PushoverSinkConfig {
  std::string token;  // secret
  std::string user;   // secret
  std::string api_url = "https://api.pushover.net/1/messages.json";
};

struct HttpSinkConfig {
  std::string url;  // as configured (a template's text when url_template is set)
  std::string method = "POST";
  std::vector<std::pair<std::string, std::string>> headers;  // values may be secrets
  Duration timeout = std::chrono::seconds(5);
  // Set when `url` has placeholders: the dispatcher renders it per delivery (Delivery::url) and
  // the sink sends that. Its scheme and host are literal (placeholders come after the host).
  std::optional<rules::Template> url_template;
  // The header values that have placeholders, by header name as configured (also in `headers`,
  // as their template text): rendered per delivery into Delivery::headers.
  std::map<std::string, rules::Template> header_templates;
  // The sink's own `body` template: the body of every route target that sets none.
  std::optional<rules::Template> body;
};

struct FileSinkConfig {
  std::string path;
};

inline constexpr uint32_t kPushoverDefaultConcurrency = 2;
// A file sink's lines in flight wait for one grouped fdatasync (storage.sync): the group is at
// most this many lines, so it bounds the sink's rate at about concurrency / sync latency.
inline constexpr uint32_t kFileDefaultConcurrency = 64;

struct SinkConfig {
  std::string name;
  std::string type;  // "pushover" | "http" | "file"
  Rate rate;
  // In-flight attempts at once. 4 unless set, but 2 for pushover sinks (the loader applies
  // kPushoverDefaultConcurrency): Pushover allows at most 2 concurrent connections; and 64 for
  // file sinks (kFileDefaultConcurrency).
  uint32_t concurrency = 4;
  RetryOverride retry;
  std::variant<PushoverSinkConfig, HttpSinkConfig, FileSinkConfig> settings;
  int line = 0;  // 1-based position of the sink's key, for messages

  // False for a sink that cannot deliver at all (a Pushover sink without token or user): routes
  // skip it at ingest instead of queueing deliveries that could never be attempted.
  bool active() const {
    if (const auto* p = std::get_if<PushoverSinkConfig>(&settings)) {
      return !p->token.empty() && !p->user.empty();
    }
    return true;
  }
};

// One destination of a route: a sink plus per-route templated fields
// (pushover: title, message, url, url_title, priority, sound, device, html, ttl, retry, expire;
//  http: body, which overrides the sink's own `body`).
struct RouteTarget {
  std::string sink;
  std::map<std::string, rules::Template> fields;
};

struct RouteConfig {
  std::string name;
  std::optional<std::string> source;  // unset = any source
  std::vector<std::string> resources;  // empty = any
  std::vector<std::string> actions;    // empty = any
  std::vector<rules::Matcher> match;      // all must hold
  std::vector<rules::Matcher> match_any;  // at least one must hold (when non-empty)
  std::vector<std::string> enrich;        // "issue"
  bool stop = false;
  std::vector<RouteTarget> to;
  int line = 0;
};

struct Config {
  std::string file;  // the path it was loaded from
  ServerConfig server;
  StorageConfig storage;
  std::vector<SourceConfig> sources;
  std::vector<SinkConfig> sinks;
  RetryConfig retry;
  std::vector<RouteConfig> routes;

  // Derived from the routes at load. The lower-case names of the request headers stored with
  // each event: request-id, sentry-hook-resource, sentry-hook-timestamp, content-type,
  // user-agent, and every $header.<name> a route reads, so templates and the checks made after
  // an enrichment fetch see what ingest saw. Credentials are never among them (the loader
  // rejects routes that read them).
  std::vector<std::string> kept_headers;
  // True if a route reads $installation.org (ingest then looks the organization up).
  bool reads_installation_org = false;

  const SourceConfig* FindSource(std::string_view name) const;
  const SinkConfig* FindSink(std::string_view name) const;
};

// One problem found in a config file, reported as FILE:LINE:COL: message (1-based).
struct ConfigError {
  std::string file;
  int line = 0;
  int column = 0;
  std::string message;
  std::string ToString() const;
};

// Loads and validates `path`. On failure returns every error found (at least one), in file order.
// Reads the environment, files named by ${file:...} and $CREDENTIALS_DIRECTORY.
// Thread-safe (no shared state) but does blocking file I/O: call off the I/O threads.
struct LoadResult {
  std::shared_ptr<const Config> config;  // null when errors is non-empty
  std::vector<ConfigError> errors;
};
// kServerOnly: the YAML and its top-level keys are checked, but only `server` is read (and
// interpolated); the rest of the Config keeps its defaults. For the CLI's admin commands, which
// need the admin address and token only and must work where the daemon's other secrets
// (${credential:...}, ${env:...}) are not available, as in an operator's shell.
enum class LoadScope { kAll, kServerOnly };
LoadResult LoadConfig(const std::string& path, LoadScope scope = LoadScope::kAll);
// Same, from text in memory (`file` names it in messages).
LoadResult LoadConfigFromString(const std::string& text, const std::string& file,
                                LoadScope scope = LoadScope::kAll);

// Parses "250ms", "5s", "10m", "8h", "7d" (and "0"). Returns nullopt if malformed.
std::optional<Duration> ParseDuration(std::string_view text);

}  // namespace switchyard::config
