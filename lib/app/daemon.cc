#include "app/daemon.h"

#include <sys/prctl.h>
#include <sys/resource.h>
#include <systemd/sd-daemon.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>

#include "admin/admin_handler.h"
#include "app/early_signals.h"
#include "common/allocator.h"
#include "common/blocking_pool.h"
#include "common/clock.h"
#include "common/listen_address.h"
#include "common/log.h"
#include "config/config.h"
#include "config/config_holder.h"
#include "delivery/dispatcher.h"
#include "http/server.h"
#include "httpclient/http_client.h"
#include "ingest/hook_handler.h"
#include "metrics/metrics.h"
#include "sentry/installations.h"
#include "sentry/issue_enricher.h"
#include "sentry/token_store.h"
#include "sinks/sink.h"
#include "storage/crc32c.h"
#include "storage/event_store.h"

namespace switchyard::app {
namespace {

void PrintErrors(const std::vector<config::ConfigError>& errors) {
  for (const auto& e : errors) fprintf(stderr, "%s\n", e.ToString().c_str());
}

http::ListenerOptions PublicListenerOptions(const config::ServerConfig& s) {
  http::ListenerOptions o;
  o.name = "public";
  o.address = s.listen;
  o.max_header_bytes = s.max_header_bytes;
  o.max_body_bytes = s.max_body_bytes;
  o.header_timeout = s.header_timeout;
  o.body_timeout = s.body_timeout;
  o.idle_timeout = s.idle_timeout;
  o.max_connections = s.max_connections;
  return o;
}

http::ListenerOptions AdminListenerOptions(const config::ServerConfig& s) {
  http::ListenerOptions o = PublicListenerOptions(s);
  o.name = "admin";
  o.serve_while_draining = true;  // /readyz says 503 and /metrics answers until the end
  o.address = s.admin_listen;
  o.max_body_bytes = 1 << 20;
  o.max_connections = 256;
  return o;
}

// Events the main thread waits for; set from signal handlers on I/O threads.
class MainLoopEvents {
 public:
  void RequestStop() { Set(&stop_); }
  void RequestReload() { Set(&reload_); }
  // Blocks until an event; returns true for stop, false for reload.
  bool Wait() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [this] { return stop_ || reload_; });
    if (stop_) return true;
    reload_ = false;
    return false;
  }

 private:
  void Set(bool* flag) {
    std::lock_guard lock(mu_);
    *flag = true;
    cv_.notify_all();
  }
  std::mutex mu_;
  std::condition_variable cv_;
  bool stop_ = false;
  bool reload_ = false;
};

}  // namespace

int CheckConfig(const std::string& config_path) {
  auto loaded = config::LoadConfig(config_path);
  if (!loaded.config) {
    PrintErrors(loaded.errors);
    return 1;
  }
  const auto& c = *loaded.config;
  printf("%s: OK (%zu sources, %zu sinks, %zu routes)\n", config_path.c_str(), c.sources.size(),
         c.sinks.size(), c.routes.size());
  return 0;
}

int RunDaemon(const std::string& config_path) {
  log::ConfigureFromEnv();
  // The process holds client secrets, OAuth pairs, the token key and the admin token in memory:
  // no core file (a crash, SIGQUIT) may write them to disk, and other processes of the same
  // user may not ptrace it or read its memory.
  // A file sink on a FIFO whose reader went away gets EPIPE (a retry), not a SIGPIPE that ends
  // the process (systemd ignores SIGPIPE for its services; a shell or a container does not).
  std::signal(SIGPIPE, SIG_IGN);
  // SIGHUP/SIGTERM while starting (store recovery can take seconds) are recorded, not fatal;
  // acted on once the listener handles signals (below).
  CaptureEarlySignals();
  const struct rlimit no_core {};
  if (setrlimit(RLIMIT_CORE, &no_core) != 0 || prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) {
    log::Warn("could not disable core dumps", {{"error", std::strerror(errno)}});
  }
  auto loaded = config::LoadConfig(config_path);
  if (!loaded.config) {
    PrintErrors(loaded.errors);
    return 1;
  }
  std::shared_ptr<const config::Config> cfg = loaded.config;
  // Egress through forward proxies, as curl reads them (read once: a change needs a restart).
  // A bad value is the operator's error, like a bad config: exit 1 before anything starts.
  auto proxies = httpclient::ProxySettingsFromEnvironment(::getenv);
  if (!proxies.ok()) {
    log::Error("invalid proxy setting", {{"error", proxies.status().message()}});
    return 1;
  }
  Clock& clock = SystemClock();
  metrics::Metrics metrics;
  std::vector<std::string> source_names;
  for (const auto& s : cfg->sources) {
    source_names.push_back(s.name);
    if (s.client_secret.empty() && s.token.empty()) {
      log::Warn("source has no client_secret: its webhooks will be rejected with 401",
                {{"source", s.name}});
    }
  }
  if (cfg->server.admin_token.empty()) {
    auto admin = ParseListenAddress(cfg->server.admin_listen);
    if (admin.ok() && !IsLoopback(*admin)) {
      log::Warn(
          "admin_listen is reachable from other hosts and admin_token is empty: anyone who "
          "reaches it can reload, replay and drop dead letters; set server.admin_token",
          {{"admin_listen", cfg->server.admin_listen}});
    }
  }
  metrics.DeclareSources(source_names);
  std::vector<std::string> route_names;
  for (const auto& r : cfg->routes) route_names.push_back(r.name);
  metrics.DeclareRoutes(route_names);

  storage::StoreOptions store_options;
  store_options.path = cfg->storage.path;
  store_options.sync = cfg->storage.sync;
  store_options.dedupe_window = cfg->storage.dedupe_window;
  store_options.min_free_bytes = cfg->storage.min_free_bytes;
  store_options.max_disk_bytes = cfg->storage.max_disk_bytes;
  store_options.on_group_commit = [&metrics](size_t n) { metrics.StorageGroupCommit(n); };
  auto store = storage::OpenStore(store_options, clock);
  if (!store.ok()) {
    log::Error("cannot open storage",
               {{"path", cfg->storage.path}, {"error", store.status().message()}});
    return 2;
  }

  config::ConfigHolder holder(cfg);
  std::atomic<bool> stopping{false};
  std::atomic<bool> ready{false};

  // Installations' tokens are sealed under storage.path/token.key (created 0600 when missing).
  auto sealed = (*store)->Installations().Scan("");
  auto token_key = sealed.ok() ? sentry::LoadOrCreateTokenKey(cfg->storage.path, sealed->size())
                               : Result<std::string>(sealed.status());
  if (!token_key.ok()) {
    log::Error("cannot use the token key", {{"error", token_key.status().message()}});
    (*store)->Close();
    return 2;
  }
  std::unique_ptr<sentry::TokenStore> tokens =
      sentry::NewEncryptedTokenStore((*store)->Installations(), std::move(token_key).value());

  // Outbound: one HTTP client for every sink and the Sentry API.
  httpclient::HttpClientOptions client_options;
  client_options.threads = 1;
  // The pool keeps every connection a burst used (a pool smaller than the sinks' concurrency
  // closed most connections after each burst: a new TCP connection per delivery). It never
  // holds more than were in use at once, and idle ones close after idle_timeout; the floor
  // leaves room for sinks whose concurrency a reload raises.
  size_t concurrency = 16;  // the Sentry API's share
  for (const auto& sink : cfg->sinks) concurrency += sink.concurrency;
  client_options.max_idle_per_host = std::clamp<size_t>(concurrency, 256, 4096);
  client_options.proxies = std::move(proxies).value();
  if (!client_options.proxies.empty()) {
    log::Info("outbound requests use a proxy", {{"proxies", client_options.proxies.Describe()}});
  }
  std::unique_ptr<httpclient::HttpClient> client = httpclient::NewHttpClient(client_options);
  sentry::InstallationManager installations(holder, *tokens, *client, metrics, clock);
  if (Status s = installations.Start(store->get()); !s.ok()) {
    log::Error("cannot load installations", {{"error", s.message()}});
    client->Shutdown();
    (*store)->Close();
    return 2;
  }
  sentry::IssueEnricher enricher(installations, metrics, clock);
  delivery::Dispatcher dispatcher(
      holder, **store,
      [&client, sync = cfg->storage.sync](const config::SinkConfig& c) {
        return sinks::NewSink(c, *client, sync);
      },
      &enricher, metrics, clock);
  if (Status s = dispatcher.Start(); !s.ok()) {
    log::Error("cannot start delivery", {{"error", s.message()}});
    installations.Stop();
    client->Shutdown();
    (*store)->Close();
    return 2;
  }

  // One reload path for SIGHUP and POST /admin/reload: validate, swap whole, or keep the old.
  std::mutex reload_mu;
  auto reload = [&]() -> Result<std::vector<std::string>> {
    std::lock_guard lock(reload_mu);
    // Not while stopping: READY=1 would follow STOPPING=1 (the admin listener serves to the end).
    if (!ready) return Unavailable("switchyard is stopping; reload refused");
    sd_notify(0, "RELOADING=1");
    auto next = config::LoadConfig(config_path);
    std::vector<std::string> errors;
    if (next.config) {
      holder.Set(next.config);
      std::vector<std::string> sources, routes;
      for (const auto& s : next.config->sources) sources.push_back(s.name);
      for (const auto& r : next.config->routes) routes.push_back(r.name);
      metrics.DeclareSources(sources);
      metrics.DeclareRoutes(routes);
      dispatcher.ConfigChanged();
      metrics.ConfigReload("success");
      log::Info("config reloaded", {{"config", config_path}});
      // Listener, thread and storage settings take effect at the next restart.
    } else {
      metrics.ConfigReload("failure");
      for (const auto& e : next.errors) {
        errors.push_back(e.ToString());
        log::Error("config reload rejected; keeping the running config", {{"error", e.ToString()}});
      }
    }
    sd_notify(0, "READY=1");
    return errors;
  };

  BlockingPool admin_pool(1);
  ingest::HookHandler hooks(
      holder, **store, metrics, clock, stopping, [&dispatcher] { dispatcher.Wake(); },
      &installations);
  auto list_installations = [&installations, &holder] {
    std::vector<admin::InstallationRow> rows;
    const std::shared_ptr<const config::Config> snapshot = holder.Get();  // held for the loop
    for (const auto& s : snapshot->sources) {
      if (!s.token.empty()) rows.push_back({s.name, "", s.org, "internal", 0});
    }
    for (sentry::InstallationView& v : installations.List()) {
      rows.push_back({std::move(v.source), std::move(v.uuid), std::move(v.org), std::move(v.status),
                      v.expires_at_ms});
    }
    return rows;
  };
  admin::AdminHandler admin(holder, metrics, ready, **store, admin_pool,
                            {[&]() -> Result<std::vector<std::string>> {
                               auto reloaded = reload();
                               // The same as SIGHUP: files reopen too, whatever the config
                               // (logrotate's postrotate may use either).
                               if (reloaded.ok()) dispatcher.ReopenFiles();  // not if stopping
                               return reloaded;
                             },
                             [&dispatcher] { dispatcher.Wake(); }, list_installations});

  const int threads = cfg->server.threads > 0
                          ? cfg->server.threads
                          : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  http::HttpServer server(threads);
  for (auto [opts, handler] :
       {std::pair{PublicListenerOptions(cfg->server), static_cast<http::Handler*>(&hooks)},
        std::pair{AdminListenerOptions(cfg->server), static_cast<http::Handler*>(&admin)}}) {
    auto port = server.AddListener(opts, handler);
    if (!port.ok()) {
      log::Error("cannot start listener", {{"error", port.status().message()}});
      dispatcher.Stop(std::chrono::milliseconds(1000));
      installations.Stop();
      client->Shutdown();
      (*store)->Close();
      return 2;
    }
    std::string addr = opts.address.substr(0, opts.address.rfind(':') + 1) + std::to_string(*port);
    log::Info("listening", {{"listener", opts.name}, {"addr", addr}});
  }

  MainLoopEvents events;
  server.HandleSignals([&events](int signo) {
    if (signo == SIGHUP) {
      events.RequestReload();
    } else {
      events.RequestStop();
    }
  });
  // Those that came while starting: a stop right after the start, a reload.
  if (const EarlySignals early = TakeEarlySignals(); early.stop) {
    log::Info("stop requested while starting");
    events.RequestStop();
  } else if (early.reload) {
    events.RequestReload();
  }
  // A store that cannot take writes again until reopened (a fatal RocksDB error, such as a
  // failed WAL sync) would answer every webhook 503 for ever while /readyz and the watchdog
  // pings said nothing was wrong: exit 2 instead, so that the service manager restarts
  // switchyard and RocksDB reopens and recovers the store.
  std::atomic<int> exit_code{0};
  server.Every(std::chrono::seconds(1), [&events, &exit_code, &store] {
    if (exit_code.load() != 0) return;
    if (Status failed = (*store)->Failed(); !failed.ok()) {
      log::Error(
          "stopping: the store cannot take writes until it is reopened; exit 2 lets the "
          "service manager restart switchyard",
          {{"error", failed.message()}});
      exit_code = 2;
      events.RequestStop();
    }
  });
  uint64_t watchdog_usec = 0;
  if (sd_watchdog_enabled(0, &watchdog_usec) > 0 && watchdog_usec > 0) {
    // Pinged from the event loop, so a wedged loop stops the pings and systemd restarts us.
    // At least 1 ms: a WatchdogSec under 2 ms would otherwise make a 0 ms period, a busy loop.
    // Also withheld while the delivery loop is wedged (it goes round at least every 100 ms; a
    // minute without a pass is no slow disk): the restart resumes every delivery from the queue.
    const auto period = std::chrono::milliseconds(std::max<uint64_t>(1, watchdog_usec / 2000));
    const auto wedged_after =
        std::max<std::chrono::milliseconds>(std::chrono::seconds(60), 4 * period);
    // The store's writer likewise: webhooks waiting a minute for a group commit get no answer.
    // Each part is logged once when it wedges (both may).
    storage::EventStore& events_store = **store;
    server.Every(period, [&dispatcher, &events_store, wedged_after, delivery_told = false,
                          writer_told = false]() mutable {
      // Logs a part once when it wedges; true while it is alive.
      auto check = [&wedged_after](bool alive, bool& told, const char* what) {
        if (!alive && !told) {
          log::Error(std::string(what) +
                         "; withholding the watchdog ping so that the service manager restarts "
                         "switchyard",
                     {{"after_ms", std::to_string(wedged_after.count())}});
        }
        told = !alive;
        return alive;
      };
      const bool delivery_alive = check(dispatcher.Alive(wedged_after), delivery_told,
                                        "the delivery loop is wedged (no pass within after_ms)");
      const bool writer_alive = check(events_store.WriterAlive(wedged_after), writer_told,
                                      "the store's writer is wedged (webhooks waited after_ms "
                                      "for a group commit: a hung disk, or RocksDB stopping "
                                      "writes)");
      if (delivery_alive && writer_alive) sd_notify(0, "WATCHDOG=1");
    });
  }

  server.Start();
  ready = true;
  sd_notify(0, "READY=1");
  log::Info("switchyard started", {{"version", SWITCHYARD_VERSION},
                                   {"config", config_path},
                                   {"threads", std::to_string(threads)},
                                   {"storage", cfg->storage.path},
                                   {"sync", cfg->storage.sync ? "true" : "false"},
                                   {"allocator", AllocatorName()},
                                   {"crc32c", storage::crc32c::Implementation()}});

  while (!events.Wait()) {
    reload().status().IgnoreError();  // logged; a rejected config keeps the running one
    dispatcher.ReopenFiles();  // SIGHUP also means "reopen files" (logrotate)
  }

  log::Info("stopping", {{"timeout_ms", std::to_string(cfg->server.shutdown_timeout.count())}});
  {
    // /readyz: 503 while in-flight webhooks finish. Under reload_mu: a reload under way sends
    // its READY=1 before STOPPING=1, and none starts after.
    std::lock_guard lock(reload_mu);
    ready = false;
  }
  sd_notify(0, "STOPPING=1");
  // Everything below fits in shutdown_timeout: the public listener drains (in-flight webhooks
  // are finished and stored, new connections refused) while the dispatcher lets its in-flight
  // attempts finish, side by side. Attempts still running then stay pending and are retried
  // after a restart. Webhooks get 503 only once the listener has stopped (a request whose
  // body was still arriving at SIGTERM is in flight, not new).
  const auto budget = holder.Get()->server.shutdown_timeout;
  const auto work_budget = budget * 9 / 10;  // the rest: closing the store
  const auto stop_started = std::chrono::steady_clock::now();
  std::thread dispatcher_stop([&dispatcher, work_budget] { dispatcher.Stop(work_budget); });
  server.Shutdown(work_budget);
  dispatcher_stop.join();
  stopping = true;
  // Token requests in flight (a refresh Sentry commits the moment it answers, a single-use grant
  // code) get what is left of the work budget to complete and store their pair before the client
  // shuts down and cancels them.
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
      work_budget - (std::chrono::steady_clock::now() - stop_started));
  installations.Stop(std::max(left, std::chrono::milliseconds(0)));
  client->Shutdown();
  // Admin tasks (a DLQ listing or replay, a reload) read the store: they finish before it
  // closes. After the token requests, which must not wait for a long replay; the replay itself
  // may overrun shutdown_timeout (a kill then loses nothing: every change it made is written).
  admin_pool.Stop();
  (*store)->Close();
  log::Info("stopped", {{"exit_code", std::to_string(exit_code.load())}});
  return exit_code.load();
}

}  // namespace switchyard::app
