// Fuzz target: the config loader. The input is the text of a routes.yaml, loaded with
// config::LoadConfigFromString (yaml-cpp → schema checks → ${...} interpolation → matcher and
// template compilation → cross-references).
//
// Invariants checked (any violation aborts, which libFuzzer reports as a crash):
//   - exactly one of: a config, or at least one error;
//   - every error has a 1-based line and column, names the file and says something;
//   - no error message contains a secret read through ${env:...} or ${credential:...} (unless the
//     input itself spells the secret out);
//   - a loaded config has no dangling references: every route's source and sinks exist, names are
//     unique, and every compiled matcher and template compiles again from its own text.
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>
#include <string_view>

#include "common/log.h"
#include "config/config.h"
#include "rules/matcher.h"
#include "rules/template.h"

namespace {

namespace config = switchyard::config;

// Values only reachable through interpolation: an error message that shows one leaks a secret.
constexpr char kEnvSecret[] = "env-secret-Qm7v2LpX9w";
constexpr char kCredentialSecret[] = "cred-secret-Hs4k8ZtN1c";
constexpr char kFile[] = "fuzz.yaml";

std::filesystem::path* g_credentials_dir = nullptr;

[[noreturn]] void Fail(const char* what, const std::string& detail) {
  std::fprintf(stderr, "fuzz_config invariant violated: %s\n  %s\n", what, detail.c_str());
  std::abort();
}

#define FUZZ_CHECK(cond, detail)        \
  do {                                  \
    if (!(cond)) Fail(#cond, (detail)); \
  } while (0)

// The input as error messages show its text: control characters as \n or \xNN (lower-case hex).
// Escaping can spell a secret the input does not hold ("\x1c" + "red-secret-..." shows
// "cred-secret-..."): that is the input's own text, not a leak.
std::string ShownLikeErrors(const std::string& text) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : text) {
    if (c == '\n') {
      out += "\\n";
    } else if (c < 0x20 || c == 0x7f) {
      out += "\\x";
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

void RemoveCredentialsDir() {
  if (g_credentials_dir == nullptr) return;
  std::error_code ec;
  std::filesystem::remove_all(*g_credentials_dir, ec);
}

void CheckLoaded(const config::Config& cfg) {
  std::set<std::string> names;
  for (const auto& s : cfg.sources) {
    FUZZ_CHECK(names.insert("source/" + s.name).second, "duplicate source " + s.name);
  }
  for (const auto& s : cfg.sinks) {
    FUZZ_CHECK(names.insert("sink/" + s.name).second, "duplicate sink " + s.name);
  }
  for (const auto& r : cfg.routes) {
    if (r.source) FUZZ_CHECK(cfg.FindSource(*r.source) != nullptr, "route source " + *r.source);
    for (const auto& t : r.to) {
      FUZZ_CHECK(cfg.FindSink(t.sink) != nullptr, "route " + r.name + " sink " + t.sink);
      for (const auto& [field, tmpl] : t.fields) {
        FUZZ_CHECK(switchyard::rules::Template::Parse(tmpl.text()).ok(), tmpl.text());
      }
    }
    for (const auto* list : {&r.match, &r.match_any}) {
      for (const auto& m : *list) {
        FUZZ_CHECK(switchyard::rules::Matcher::Parse(m.text()).ok(), m.text());
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* /*argc*/, char*** /*argv*/) {
  switchyard::log::Configure(switchyard::log::Level::kError, switchyard::log::Format::kText);
  // A credentials directory of this process only, removed at exit.
  std::string tmpl = (std::filesystem::temp_directory_path() / "switchyard-fuzz-config-XXXXXX");
  if (mkdtemp(tmpl.data()) == nullptr) {
    std::perror("mkdtemp");
    std::abort();
  }
  g_credentials_dir = new std::filesystem::path(tmpl);
  std::ofstream(*g_credentials_dir / "token") << kCredentialSecret << "\n";
  std::atexit(RemoveCredentialsDir);
  setenv("CREDENTIALS_DIRECTORY", g_credentials_dir->c_str(), 1);
  setenv("FUZZ_SECRET", kEnvSecret, 1);
  setenv("SENTRY_CLIENT_SECRET", kEnvSecret, 1);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  config::LoadResult result = config::LoadConfigFromString(text, kFile);

  FUZZ_CHECK((result.config != nullptr) == result.errors.empty(),
             std::to_string(result.errors.size()) + " errors");
  const std::string shown_input = ShownLikeErrors(text);
  const bool input_has_secret = shown_input.find(kEnvSecret) != std::string::npos ||
                                shown_input.find(kCredentialSecret) != std::string::npos;
  for (const config::ConfigError& e : result.errors) {
    const std::string shown = e.ToString();
    FUZZ_CHECK(e.file == kFile, shown);
    FUZZ_CHECK(e.line >= 1 && e.column >= 1, shown);
    FUZZ_CHECK(!e.message.empty(), shown);
    if (!input_has_secret) {
      FUZZ_CHECK(shown.find(kEnvSecret) == std::string::npos, shown);
      FUZZ_CHECK(shown.find(kCredentialSecret) == std::string::npos, shown);
    }
  }
  if (result.config) CheckLoaded(*result.config);
  return 0;
}
