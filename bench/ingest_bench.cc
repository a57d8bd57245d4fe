// Micro-benchmarks of the ingest hot path's pieces: signature check, JSON parse, route
// evaluation (1, 100, 1,000 routes), and event encoding. Run: build/bench/switchyard_microbench
#include <benchmark/benchmark.h>

#include <fstream>
#include <sstream>

#include "common/crypto.h"
#include "config/config.h"
#include "json/json_doc.h"
#include "routing/router.h"
#include "rules/event_view.h"
#include "storage/event.h"

namespace {

std::string Payload() {
  std::ifstream in(std::string(SWITCHYARD_PAYLOADS_DIR) + "/error.created.json");
  std::stringstream ss;
  ss << in.rdbuf();
  switchyard::json::JsonDoc doc;
  (void)doc.Parse(ss.str());
  return *doc.GetJson(std::initializer_list<std::string_view>{});  // compact, as Sentry sends
}

void BM_VerifySignature(benchmark::State& state) {
  std::string body = Payload();
  switchyard::crypto::Sha256Digest d;
  (void)switchyard::crypto::HmacSha256("secret", body, &d);
  std::string sig = switchyard::crypto::HexLower(d);
  for (auto _ : state) {
    benchmark::DoNotOptimize(switchyard::crypto::VerifyHmacSha256Hex("secret", body, sig));
  }
  state.SetBytesProcessed(state.iterations() * body.size());
}
BENCHMARK(BM_VerifySignature);

void BM_ParseJson(benchmark::State& state) {
  std::string body = Payload();
  switchyard::json::JsonDoc doc;
  for (auto _ : state) {
    benchmark::DoNotOptimize(doc.Parse(body).ok());
    benchmark::DoNotOptimize(doc.GetString({"action"}));
  }
  state.SetBytesProcessed(state.iterations() * body.size());
}
BENCHMARK(BM_ParseJson);

// N routes that do not match (a resource filter that fits and a matcher that fails, the
// expensive case), then one that does.
void BM_MatchRoutes(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  std::string yaml = "sinks:\n  s:\n    type: file\n    path: /dev/null\nroutes:\n";
  for (int i = 0; i < n - 1; ++i) {
    yaml += "  - name: r" + std::to_string(i) + "\n    resource: error\n    match: ['data.error.title = \"nope " +
            std::to_string(i) + "\"', 'data.error.level =~ \"fatal|critical\"']\n    to: [s]\n";
  }
  yaml += "  - name: last\n    resource: error\n    match: ['data.error.level = \"error\"']\n    to: [s]\n";
  auto loaded = switchyard::config::LoadConfigFromString(yaml, "bench.yaml");
  if (!loaded.config) {
    state.SkipWithError(loaded.errors.front().ToString().c_str());
    return;
  }
  std::string body = Payload();
  switchyard::json::JsonDoc doc;
  (void)doc.Parse(body);
  switchyard::rules::EventMeta meta{"sentry", "error", "created", "", {}};
  switchyard::rules::PayloadEventView view(doc, meta);
  size_t matched = 0;
  for (auto _ : state) {
    auto m = switchyard::routing::MatchRoutes(*loaded.config, {"sentry", "error", "created"}, view);
    matched += m.size();
    benchmark::DoNotOptimize(m);
  }
  if (matched != static_cast<size_t>(state.iterations())) state.SkipWithError("wrong match count");
  state.counters["routes"] = n;
}
BENCHMARK(BM_MatchRoutes)->Arg(1)->Arg(100)->Arg(1000);

void BM_EncodeEvent(benchmark::State& state) {
  switchyard::storage::StoredEvent e;
  e.id = "01M8CK3YFAYG2JB7V4YTGFETDS";
  e.source = "sentry";
  e.resource = "error";
  e.action = "created";
  e.body = Payload();
  for (auto _ : state) benchmark::DoNotOptimize(switchyard::storage::EncodeEvent(e));
  state.SetBytesProcessed(state.iterations() * e.body.size());
}
BENCHMARK(BM_EncodeEvent);

}  // namespace
