#include "cli/manifest.h"

#include <unistd.h>

#include <boost/json.hpp>
#include <cstdio>
#include <set>

#include "common/listen_address.h"

namespace switchyard::cli {
namespace {

// Resources an integration subscribes to with a checkbox (sentry-protocol.md §2). installation
// is always sent; event_alert and metric_alert come through "Alert Rule Action".
const std::set<std::string> kSubscribable = {"issue", "error", "comment", "seer",
                                             "preprod_artifact"};

void Pretty(std::string& out, const boost::json::value& v, int indent) {
  const std::string pad(indent, ' ');
  if (v.is_object()) {
    const auto& o = v.get_object();
    if (o.empty()) {
      out += "{}";
      return;
    }
    out += "{\n";
    size_t i = 0;
    for (const auto& kv : o) {
      out += pad + "  " + boost::json::serialize(boost::json::value(kv.key())) + ": ";
      Pretty(out, kv.value(), indent + 2);
      out += ++i < o.size() ? ",\n" : "\n";
    }
    out += pad + "}";
  } else if (v.is_array() && !v.get_array().empty()) {
    out += "[";
    size_t i = 0;
    for (const auto& e : v.get_array()) {
      out += boost::json::serialize(e);
      if (++i < v.get_array().size()) out += ", ";
    }
    out += "]";
  } else {
    out += boost::json::serialize(v);
  }
}

}  // namespace

std::string BuildManifest(const config::Config& config, std::string* warning) {
  std::string base = config.server.public_url;
  if (base.empty()) {
    // server.listen as a URL authority; a wildcard (every interface) is no host: this machine's
    // name stands in for it.
    std::string authority = config.server.listen;
    if (Result<ListenAddress> a = ParseListenAddress(config.server.listen);
        a.ok() && IsWildcard(*a)) {
      char host[256] = {};
      if (gethostname(host, sizeof host - 1) != 0 || host[0] == '\0') {
        std::snprintf(host, sizeof host, "localhost");
      }
      authority = std::string(host) + ":" + std::to_string(a->port);
    }
    base = "http://" + authority;
    *warning =
        "server.public_url is not set: the URLs below use server.listen; Sentry needs the "
        "public https:// address of this daemon (behind your TLS proxy)";
  }
  while (!base.empty() && base.back() == '/') base.pop_back();

  boost::json::object sources;
  for (const config::SourceConfig& src : config.sources) {
    std::set<std::string> resources;
    bool alerts = false, enrich = false, any = false;
    for (const config::RouteConfig& r : config.routes) {
      if (r.source && *r.source != src.name) continue;
      if (!r.enrich.empty()) enrich = true;
      if (r.resources.empty()) any = true;
      for (const auto& res : r.resources) {
        if (kSubscribable.count(res)) resources.insert(res);
        if (res == "event_alert" || res == "metric_alert") alerts = true;
      }
    }
    if (any) resources.insert(kSubscribable.begin(), kSubscribable.end());
    boost::json::object permissions;
    bool events = enrich;
    for (const auto& res : resources) events |= res != "preprod_artifact";
    if (events) permissions["Issue & Event"] = "Read";
    if (resources.count("preprod_artifact")) permissions["Project"] = "Read";

    boost::json::object m;
    m["kind"] = src.token.empty() ? "public integration (OAuth install)" : "internal integration";
    m["webhook_url"] = base + "/hooks/" + src.name;
    if (src.token.empty()) {
      m["redirect_url"] = base + "/setup/" + src.name;
      m["verify_install"] = src.verify_install;
    }
    boost::json::array subs;
    for (const auto& res : resources) subs.emplace_back(res);
    m["webhooks"] = std::move(subs);
    m["alert_rule_action"] = alerts || any;
    m["permissions"] = std::move(permissions);
    sources[src.name] = std::move(m);
  }
  boost::json::object root;
  root["sources"] = std::move(sources);
  std::string out;
  Pretty(out, root, 0);
  out += "\n";
  return out;
}

}  // namespace switchyard::cli
