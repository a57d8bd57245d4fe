#include "cli/cli.h"

#include <CLI/CLI.hpp>
#include <boost/json.hpp>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>

#include "app/daemon.h"
#include "cli/admin_client.h"
#include "cli/manifest.h"
#include "cli/samples.h"
#include "common/clock.h"
#include "common/crypto.h"
#include "common/ids.h"
#include "common/utf8.h"
#include "config/config.h"

namespace switchyard::cli {
namespace {

// Prints the dead letters as a table (or the raw JSON).
void PrintDlqHeader() {
  printf("%-26s  %-16s  %-24s  %8s  %s\n", "ID", "SINK", "ROUTE", "ATTEMPTS", "LAST ERROR");
}

void PrintDlqRow(const boost::json::object& o) {
  auto str = [&](const char* k) -> std::string {
    auto* x = o.if_contains(k);
    return x && x->is_string() ? std::string(x->get_string()) : std::string();
  };
  auto* attempts = o.if_contains("attempts");
  printf("%-26s  %-16s  %-24s  %8lld  %s\n", str("id").c_str(), str("sink").c_str(),
         str("route").c_str(),
         attempts && attempts->is_int64() ? (long long)attempts->get_int64() : 0LL,
         str("last_error").c_str());
}

// An answer quoted in an error: one line, at most 200 bytes (a proxy's HTML page or a 64 MiB
// body is not copied to the terminal).
std::string Excerpt(const std::string& body) {
  std::string out(Utf8Prefix(body, 200));
  for (char& c : out) {
    // Control bytes (an escape sequence from whatever answered) never reach the terminal.
    if (static_cast<uint8_t>(c) < 0x20 || c == 0x7f) c = ' ';
  }
  if (body.size() > out.size()) out += "...";
  return out;
}

// One request to the admin listener of the config's daemon (or `admin_override`). Returns the
// process exit code: 0 with the 200 body in *out, 1 for a usage/config/auth problem, 2 when the
// daemon cannot be reached or fails.
int AdminRequest(const std::string& config_path, const std::string& admin_override,
                 const std::string& method, const std::string& target, const std::string& body,
                 std::string* out) {
  // Only `server`: an operator's shell has none of the daemon's other secrets.
  auto loaded = config::LoadConfig(config_path, config::LoadScope::kServerOnly);
  if (!loaded.config) {
    for (const auto& e : loaded.errors) fprintf(stderr, "%s\n", e.ToString().c_str());
    return 1;
  }
  const auto& server = loaded.config->server;
  std::string admin = admin_override.empty() ? server.admin_listen : admin_override;
  if (admin.ends_with(":0")) {
    fprintf(stderr, "switchyard: server.admin_listen uses port 0 (%s); pass --admin HOST:PORT\n",
            admin.c_str());
    return 1;
  }
  auto reply = CallAdmin(admin, server.admin_token, method, target, body);
  if (!reply.ok()) {
    fprintf(stderr, "switchyard: the daemon's admin listener: %s\n",
            reply.status().message().c_str());
    return 2;
  }
  if (reply->status == 401) {
    fprintf(stderr, "switchyard: the daemon refused the admin token (server.admin_token)\n");
    return 1;
  }
  if (reply->status != 200) {
    fprintf(stderr, "switchyard: the daemon answered %d: %s\n", reply->status,
            Excerpt(reply->body).c_str());
    return reply->status >= 500 ? 2 : 1;
  }
  *out = std::move(reply->body);
  return 0;
}

// `dlq list`: every dead letter, however many, fetched a page at a time (?limit=&after=) and
// printed as each page arrives (one page in memory); with --json, as one array.
int ListAllDead(const std::string& config_path, const std::string& admin_override, bool json) {
  constexpr size_t kPage = 1000;
  std::string after;
  size_t printed = 0;
  for (;;) {
    std::string target = "/admin/dlq?limit=" + std::to_string(kPage);
    if (!after.empty()) target += "&after=" + after;
    std::string reply;
    if (int rc = AdminRequest(config_path, admin_override, "GET", target, "", &reply); rc != 0) {
      if (printed > 0 && json) printf("]\n");
      return rc;
    }
    boost::system::error_code ec;
    const boost::json::value v = boost::json::parse(reply, ec);
    bool well_formed = !ec && v.is_array();
    if (well_formed) {
      for (const auto& e : v.get_array()) well_formed = well_formed && e.is_object();
    }
    if (!well_formed) {  // checked first: no partial page before the error
      if (printed > 0 && json) printf("]\n");
      fprintf(stderr, "switchyard: unexpected answer from the daemon: %s\n",
              Excerpt(reply).c_str());
      return 2;
    }
    const boost::json::array& page = v.get_array();
    std::string last;
    if (!page.empty()) {
      if (const auto* id = page.back().get_object().if_contains("id"); id && id->is_string()) {
        last = std::string(id->get_string());
      }
    }
    // A page that does not move forward (a daemon that ignores ?after answers the first page
    // again) has been printed already.
    if (!after.empty() && (last.empty() || last <= after)) break;
    for (const auto& e : page) {
      if (json) {
        printf("%s%s", printed == 0 ? "[" : ",", boost::json::serialize(e).c_str());
      } else {
        if (printed == 0) PrintDlqHeader();
        PrintDlqRow(e.get_object());
      }
      ++printed;
    }
    // A short page is the last; so is one larger than asked for (a daemon without pages).
    if (page.size() != kPage || last.empty()) break;
    after = std::move(last);
  }
  if (json) {
    printf(printed == 0 ? "[]\n" : "]\n");
  } else if (printed == 0) {
    printf("no dead letters\n");
  }
  return 0;
}

// Runs one `dlq` subcommand against the admin listener of the config's daemon.
int RunDlq(const std::string& config_path, const std::string& action,
           const std::vector<std::string>& ids, bool all, bool json,
           const std::string& admin_override) {
  std::string method = "GET", target = "/admin/dlq", body;
  if (action == "replay" || action == "drop") {
    if (ids.empty() && !(action == "replay" && all)) {
      fprintf(stderr, "switchyard: dlq %s needs delivery ids%s\n", action.c_str(),
              action == "replay" ? " or --all" : "");
      return 1;
    }
    method = "POST";
    target = "/admin/dlq/" + action;
    boost::json::object o;
    if (all) {
      o["all"] = true;
    } else {
      boost::json::array a;
      for (const auto& id : ids) a.emplace_back(id);
      o["ids"] = std::move(a);
    }
    body = boost::json::serialize(o);
  } else if (action != "list") {
    fprintf(stderr, "switchyard: dlq takes list, replay or drop\n");
    return 1;
  }
  if (action == "list") return ListAllDead(config_path, admin_override, json);
  std::string reply;
  if (int rc = AdminRequest(config_path, admin_override, method, target, body, &reply); rc != 0) {
    return rc;
  }
  // {"replayed":N} or {"dropped":N}: anything else (another service at --admin, a proxy's
  // page) is no proof that anything was done.
  boost::system::error_code ec;
  const boost::json::value v = boost::json::parse(reply, ec);
  const char* count = action == "replay" ? "replayed" : "dropped";
  const boost::json::value* n = !ec && v.is_object() ? v.as_object().if_contains(count) : nullptr;
  if (n == nullptr || !(n->is_int64() || n->is_uint64())) {
    fprintf(stderr, "switchyard: unexpected answer from the daemon: %s\n", Excerpt(reply).c_str());
    return 2;
  }
  printf("%s\n", reply.c_str());
  // Ids that were not dead letters: the others were acted on, but a typo is the user's error.
  const boost::json::value* skipped = v.as_object().if_contains("skipped");
  if (skipped && skipped->is_array() && !skipped->as_array().empty()) {
    std::string names;
    for (const boost::json::value& id : skipped->as_array()) {
      if (!names.empty()) names += ", ";
      names += id.is_string() ? std::string(id.get_string()) : boost::json::serialize(id);
    }
    fprintf(stderr, "switchyard: not dead letters (unknown, pending, or already %s): %s\n",
            action == "replay" ? "replayed or dropped" : "dropped", names.c_str());
    return 1;
  }
  return 0;
}

// GETs an admin view. Returns the exit code when the command is done (an error, or `raw` and the
// body printed as is); nullopt with the parsed JSON in *out for the caller to render.
std::optional<int> GetAdminView(const std::string& config_path, const std::string& admin_override,
                                const std::string& target, boost::json::kind kind, bool raw,
                                boost::json::value* out) {
  std::string reply;
  if (int rc = AdminRequest(config_path, admin_override, "GET", target, "", &reply); rc != 0) {
    return rc;
  }
  boost::system::error_code ec;
  *out = boost::json::parse(reply, ec);
  if (ec || out->kind() != kind) {  // also for --json: not printed as if it were the view
    fprintf(stderr, "switchyard: unexpected answer from %s: %s\n", target.c_str(),
            Excerpt(reply).c_str());
    return 2;
  }
  if (raw) {
    printf("%s\n", reply.c_str());
    return 0;
  }
  return std::nullopt;
}

// `switchyard queue`: pending and dead deliveries, per sink.
int RunQueue(const std::string& config_path, bool json, const std::string& admin_override) {
  boost::json::value v;
  if (auto rc = GetAdminView(config_path, admin_override, "/admin/queue", boost::json::kind::object,
                             json, &v)) {
    return *rc;
  }
  auto num = [](const boost::json::value* x) -> long long {
    return x && x->is_int64() ? static_cast<long long>(x->get_int64()) : 0LL;
  };
  const auto& o = v.as_object();
  printf("%-24s  %10s  %10s\n", "SINK", "PENDING", "DEAD");
  if (const auto* sinks = o.if_contains("sinks"); sinks && sinks->is_object()) {
    for (const auto& [name, counts] : sinks->get_object()) {
      const auto* c = counts.if_object();
      printf("%-24s  %10lld  %10lld\n", std::string(name).c_str(),
             num(c ? c->if_contains("pending") : nullptr), num(c ? c->if_contains("dead") : nullptr));
    }
  }
  printf("%-24s  %10lld  %10lld\n", "(total)", num(o.if_contains("pending")),
         num(o.if_contains("dead")));
  return 0;
}

// `switchyard installations`: the Sentry app installations the daemon holds (never a token).
int RunInstallations(const std::string& config_path, bool json,
                     const std::string& admin_override) {
  boost::json::value v;
  if (auto rc = GetAdminView(config_path, admin_override, "/admin/installations",
                             boost::json::kind::array, json, &v)) {
    return *rc;
  }
  printf("%-12s  %-36s  %-20s  %-15s  %s\n", "SOURCE", "INSTALLATION", "ORG", "STATUS",
         "TOKEN EXPIRES");
  for (const auto& e : v.get_array()) {
    const auto* o = e.if_object();
    if (!o) continue;
    auto str = [&](const char* k) -> std::string {
      auto* x = o->if_contains(k);
      return x && x->is_string() ? std::string(x->get_string()) : std::string("-");
    };
    printf("%-12s  %-36s  %-20s  %-15s  %s\n", str("source").c_str(), str("uuid").c_str(),
           str("org").c_str(), str("status").c_str(), str("expires_at").c_str());
  }
  return 0;
}

// Posts a signed sample webhook, as Sentry would, to the daemon (or to --url).
int RunSendTest(const std::string& config_path, const std::string& source_name,
                const std::string& what, const std::string& url) {
  auto loaded = config::LoadConfig(config_path);
  if (!loaded.config) {
    for (const auto& e : loaded.errors) fprintf(stderr, "%s\n", e.ToString().c_str());
    return 1;
  }
  const config::Config& cfg = *loaded.config;
  const config::SourceConfig* source = cfg.FindSource(source_name);
  if (!source) {
    fprintf(stderr, "switchyard: no source \"%s\" in %s\n", source_name.c_str(),
            config_path.c_str());
    return 1;
  }
  if (source->client_secret.empty()) {
    fprintf(stderr, "switchyard: source \"%s\" has no client_secret to sign with\n",
            source_name.c_str());
    return 1;
  }
  auto dot = what.find('.');
  if (dot == std::string::npos || dot == 0 || dot + 1 == what.size()) {
    fprintf(stderr, "switchyard: expected RESOURCE.ACTION, e.g. issue.created\n");
    return 1;
  }
  std::string resource = what.substr(0, dot), action = what.substr(dot + 1);
  auto sample = SampleBody(resource);
  if (!sample) {
    std::string known;
    for (const auto& r : SampleResources()) known += (known.empty() ? "" : ", ") + r;
    fprintf(stderr, "switchyard: no sample for resource \"%s\" (known: %s)\n", resource.c_str(),
            known.c_str());
    return 1;
  }
  // The requested action, and a fresh marker so a repeated test is not taken for a duplicate.
  boost::json::value body = boost::json::parse(*sample);
  body.as_object()["action"] = action;
  body.as_object()["switchyard_test"] = NewUlid(SystemClock().NowMillis());
  std::string raw = boost::json::serialize(body);

  std::string address, target = "/hooks/" + source_name;
  if (url.empty()) {
    address = cfg.server.listen;
    if (address.ends_with(":0")) {
      fprintf(stderr, "switchyard: server.listen uses port 0; pass --url\n");
      return 1;
    }
  } else {
    if (!url.starts_with("http://")) {
      fprintf(stderr, "switchyard: --url must be an http:// URL (put TLS in front, not here)\n");
      return 1;
    }
    std::string rest = url.substr(7);
    auto slash = rest.find('/');
    address = rest.substr(0, slash);
    if (slash != std::string::npos) target = rest.substr(slash);
    if (address.find(':') == std::string::npos) address += ":80";
  }
  crypto::Sha256Digest mac;
  if (!crypto::HmacSha256(source->client_secret, raw, &mac)) {
    fprintf(stderr, "switchyard: cannot compute the signature\n");
    return 2;
  }
  auto reply = CallHttp(address, "POST", target,
                        {{"Content-Type", "application/json"},
                         {"Request-ID", NewUlid(SystemClock().NowMillis())},
                         {"Sentry-Hook-Resource", resource},
                         {"Sentry-Hook-Timestamp", std::to_string(SystemClock().NowMillis() / 1000)},
                         {"Sentry-Hook-Signature", crypto::HexLower(mac)}},
                        raw);
  if (!reply.ok()) {
    fprintf(stderr, "switchyard: %s\n", reply.status().message().c_str());
    return 2;
  }
  printf("%s.%s -> %d %s\n", resource.c_str(), action.c_str(), reply->status, reply->body.c_str());
  if (reply->status >= 200 && reply->status < 300) return 0;
  return reply->status >= 500 ? 2 : 1;
}

}  // namespace

int Main(int argc, char** argv) {
  CLI::App app{"switchyard: a durable webhook relay and router for Sentry integrations"};
  app.require_subcommand(1);
  app.fallthrough();  // -c may stand anywhere on the line

  std::string config_path;
  if (const char* env = getenv("SWITCHYARD_CONFIG"); env && *env) {
    config_path = env;
  } else {
    config_path = "./routes.yaml";
  }
  app.add_option("-c,--config", config_path, "config file (default $SWITCHYARD_CONFIG or ./routes.yaml)");

  auto* run = app.add_subcommand("run", "run the daemon in the foreground");
  auto* check = app.add_subcommand("check", "validate the config file");
  auto* version = app.add_subcommand("version", "print the version");
  auto* manifest = app.add_subcommand("manifest", "print the Sentry integration settings (JSON)");
  auto* send_test = app.add_subcommand("send-test", "post a signed sample webhook to the daemon");
  std::string st_source, st_what, st_url;
  send_test->add_option("source", st_source, "source name from the config")->required();
  send_test->add_option("what", st_what, "RESOURCE.ACTION, e.g. issue.created")->required();
  send_test->add_option("--url", st_url, "where to post (default: http://<server.listen>/hooks/<source>)");
  auto* dlq = app.add_subcommand("dlq", "list, replay or drop dead letters (via the admin listener)");
  std::string dlq_action;
  std::vector<std::string> dlq_ids;
  bool dlq_all = false, dlq_json = false;
  dlq->add_option("action", dlq_action, "list | replay | drop")->required()
      ->check(CLI::IsMember({"list", "replay", "drop"}));
  dlq->add_option("ids", dlq_ids, "delivery ids");
  dlq->add_flag("--all", dlq_all, "replay every dead letter");
  dlq->add_flag("--json", dlq_json, "print the raw JSON");
  std::string dlq_admin;
  dlq->add_option("--admin", dlq_admin, "admin listener HOST:PORT (default: server.admin_listen)");
  bool view_json = false;
  std::string view_admin;
  auto* queue = app.add_subcommand("queue", "show pending and dead deliveries per sink");
  auto* installations = app.add_subcommand(
      "installations", "show the Sentry app installations and their token status");
  for (auto* view : {queue, installations}) {
    view->add_flag("--json", view_json, "print the raw JSON");
    view->add_option("--admin", view_admin,
                     "admin listener HOST:PORT (default: server.admin_listen)");
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    fprintf(stderr, "switchyard: %s\n", e.what());
    return 1;
  }

  if (version->parsed()) {
    printf("switchyard %s\n", SWITCHYARD_VERSION);
    return 0;
  }
  if (check->parsed()) return app::CheckConfig(config_path);
  if (manifest->parsed()) {
    auto loaded = config::LoadConfig(config_path);
    if (!loaded.config) {
      for (const auto& e : loaded.errors) fprintf(stderr, "%s\n", e.ToString().c_str());
      return 1;
    }
    std::string warning;
    std::string json = BuildManifest(*loaded.config, &warning);
    if (!warning.empty()) fprintf(stderr, "switchyard: %s\n", warning.c_str());
    printf("%s", json.c_str());
    return 0;
  }
  if (send_test->parsed()) return RunSendTest(config_path, st_source, st_what, st_url);
  if (dlq->parsed()) return RunDlq(config_path, dlq_action, dlq_ids, dlq_all, dlq_json, dlq_admin);
  if (queue->parsed()) return RunQueue(config_path, view_json, view_admin);
  if (installations->parsed()) return RunInstallations(config_path, view_json, view_admin);
  if (run->parsed()) return app::RunDaemon(config_path);
  return 1;
}

}  // namespace switchyard::cli
