#include "cli/cli.h"

#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "app/daemon.h"

namespace switchyard::cli {

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
  if (run->parsed()) return app::RunDaemon(config_path);
  return 1;
}

}  // namespace switchyard::cli
