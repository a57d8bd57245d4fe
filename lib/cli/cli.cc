#include "cli/cli.h"

#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>

#include <boost/json.hpp>

#include "app/daemon.h"
#include "cli/admin_client.h"
#include "config/config.h"

namespace switchyard::cli {
namespace {

// Prints the dead letters as a table (or the raw JSON).
int PrintDlq(const std::string& body, bool json) {
  if (json) {
    printf("%s\n", body.c_str());
    return 0;
  }
  boost::system::error_code ec;
  auto v = boost::json::parse(body, ec);
  if (ec || !v.is_array()) {
    fprintf(stderr, "switchyard: unexpected answer from the daemon: %s\n", body.c_str());
    return 2;
  }
  if (v.get_array().empty()) {
    printf("no dead letters\n");
    return 0;
  }
  printf("%-26s  %-16s  %-24s  %8s  %s\n", "ID", "SINK", "ROUTE", "ATTEMPTS", "LAST ERROR");
  for (const auto& e : v.get_array()) {
    const auto& o = e.as_object();
    auto str = [&](const char* k) -> std::string {
      auto* x = o.if_contains(k);
      return x && x->is_string() ? std::string(x->get_string()) : std::string();
    };
    auto* attempts = o.if_contains("attempts");
    printf("%-26s  %-16s  %-24s  %8lld  %s\n", str("id").c_str(), str("sink").c_str(),
           str("route").c_str(), attempts && attempts->is_int64() ? (long long)attempts->get_int64() : 0LL,
           str("last_error").c_str());
  }
  return 0;
}

// Runs one `dlq` subcommand against the admin listener of the config's daemon.
int RunDlq(const std::string& config_path, const std::string& action,
           const std::vector<std::string>& ids, bool all, bool json,
           const std::string& admin_override) {
  auto loaded = config::LoadConfig(config_path);
  if (!loaded.config) {
    for (const auto& e : loaded.errors) fprintf(stderr, "%s\n", e.ToString().c_str());
    return 1;
  }
  const auto& server = loaded.config->server;
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
  std::string admin = admin_override.empty() ? server.admin_listen : admin_override;
  if (admin.ends_with(":0")) {
    fprintf(stderr, "switchyard: server.admin_listen uses port 0 (%s); pass --admin HOST:PORT\n",
            admin.c_str());
    return 1;
  }
  auto reply = CallAdmin(admin, server.admin_token, method, target, body);
  if (!reply.ok()) {
    fprintf(stderr, "switchyard: %s\n", reply.status().message().c_str());
    return 2;
  }
  if (reply->status == 401) {
    fprintf(stderr, "switchyard: the daemon refused the admin token (server.admin_token)\n");
    return 1;
  }
  if (reply->status != 200) {
    fprintf(stderr, "switchyard: the daemon answered %d: %s\n", reply->status, reply->body.c_str());
    return reply->status >= 500 ? 2 : 1;
  }
  if (action == "list") return PrintDlq(reply->body, json);
  printf("%s\n", reply->body.c_str());
  return 0;
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
  if (dlq->parsed()) return RunDlq(config_path, dlq_action, dlq_ids, dlq_all, dlq_json, dlq_admin);
  if (run->parsed()) return app::RunDaemon(config_path);
  return 1;
}

}  // namespace switchyard::cli
