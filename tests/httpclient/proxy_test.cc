#include "httpclient/proxy.h"

#include <gtest/gtest.h>

#include <map>
#include <string>

namespace switchyard::httpclient {
namespace {

// Settings from a fake environment.
Result<ProxySettings> FromEnv(std::map<std::string, std::string> env) {
  return ProxySettingsFromEnvironment([&env](const char* name) -> const char* {
    auto it = env.find(name);
    return it == env.end() ? nullptr : it->second.c_str();
  });
}

Target T(const std::string& url) { return ParseUrl(url).value(); }

TEST(ProxySettingsTest, NoVariablesMeansEveryRequestGoesDirect) {
  auto s = FromEnv({});
  ASSERT_TRUE(s.ok());
  EXPECT_TRUE(s->empty());
  EXPECT_EQ(s->For(T("https://api.pushover.net/1/messages.json")), nullptr);
  EXPECT_EQ(s->For(T("http://receiver.internal/hook")), nullptr);
}

TEST(ProxySettingsTest, EachSchemeUsesItsOwnVariableAndLowerCaseWins) {
  auto s = FromEnv({{"HTTPS_PROXY", "http://upper:3128"},
                    {"https_proxy", "http://lower:3129"},
                    {"HTTP_PROXY", "plain:8080"}});
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  const Proxy* https = s->For(T("https://sentry.io/api/0/"));
  ASSERT_NE(https, nullptr);
  EXPECT_EQ(https->server.origin, "http://lower:3129");
  const Proxy* http = s->For(T("http://receiver/hook"));
  ASSERT_NE(http, nullptr);
  EXPECT_EQ(http->server.origin, "http://plain:8080");  // no scheme: http://, as curl
  EXPECT_TRUE(http->authorization.empty());
}

TEST(ProxySettingsTest, UserInfoBecomesBasicCredentialsPercentDecodedAndNeverLogged) {
  auto s = FromEnv({{"HTTPS_PROXY", "http://jane%40corp:p%3Ass@proxy.corp:3128/"}});
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  const Proxy* p = s->For(T("https://sentry.io/"));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(p->authorization, "Basic amFuZUBjb3JwOnA6c3M=");  // base64("jane@corp:p:ss")
  EXPECT_EQ(p->server.origin, "http://proxy.corp:3128");
  const std::string described = s->Describe();
  EXPECT_NE(described.find("http://proxy.corp:3128"), std::string::npos) << described;
  EXPECT_EQ(described.find("p%3Ass"), std::string::npos) << described;
  EXPECT_EQ(described.find("jane"), std::string::npos) << described;
}

TEST(ProxySettingsTest, UnsupportedProxiesAreErrorsThatNameTheVariableNotItsValue) {
  for (const std::string& value : {std::string("https://user:hunter2@proxy:443"),
                                   std::string("socks5://user:hunter2@proxy:1080"),
                                   std::string("http://user:hunter2@proxy:3128/some/path"),
                                   std::string("http://user:hunter2@proxy:99999")}) {
    auto s = FromEnv({{"HTTPS_PROXY", value}});
    ASSERT_FALSE(s.ok()) << value;
    EXPECT_EQ(s.status().code(), StatusCode::kInvalidArgument);
    EXPECT_EQ(s.status().message().rfind("HTTPS_PROXY: ", 0), 0u) << s.status().message();
    EXPECT_EQ(s.status().message().find("hunter2"), std::string::npos) << s.status().message();
  }
}

TEST(ProxySettingsTest, NoProxyMatchesDomainsSubdomainsAddressesRangesAndPorts) {
  auto s = FromEnv({{"HTTP_PROXY", "http://proxy:3128"},
                    {"HTTPS_PROXY", "http://proxy:3128"},
                    {"NO_PROXY",
                     " internal.example , .corp.net,*.svc,10.0.0.0/8, 192.168.1.7,"
                     "[fd00::1],fd12::/16,receiver.local:8443,localhost"}});
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  auto direct = [&](const std::string& url) { return s->For(T(url)) == nullptr; };
  EXPECT_TRUE(direct("http://internal.example/"));
  EXPECT_TRUE(direct("http://a.b.internal.example/"));
  EXPECT_FALSE(direct("http://notinternal.example/"));  // a suffix, but not a subdomain
  EXPECT_TRUE(direct("https://corp.net/"));
  EXPECT_TRUE(direct("https://git.corp.net/"));
  EXPECT_TRUE(direct("http://api.default.svc/"));
  EXPECT_TRUE(direct("http://10.20.30.40/"));
  EXPECT_FALSE(direct("http://11.0.0.1/"));
  EXPECT_TRUE(direct("http://192.168.1.7:9000/"));
  EXPECT_FALSE(direct("http://192.168.1.8/"));
  EXPECT_TRUE(direct("http://[fd00::1]/"));
  EXPECT_TRUE(direct("http://[fd12:3456::9]/"));
  EXPECT_FALSE(direct("http://[fd13::9]/"));
  EXPECT_TRUE(direct("https://receiver.local:8443/"));
  EXPECT_FALSE(direct("https://receiver.local/"));  // the rule names port 8443 only
  EXPECT_TRUE(direct("http://localhost:8080/"));
  EXPECT_FALSE(direct("https://api.pushover.net/"));
  EXPECT_FALSE(direct("http://127.0.0.1/"));  // as curl: loopback is proxied unless listed
}

TEST(ProxySettingsTest, NoProxyTakesBlanksAsSeparatorsAndFullyQualifiedNames) {
  auto s = FromEnv(
      {{"HTTPS_PROXY", "http://proxy:3128"}, {"NO_PROXY", "a.example b.example.\tc.example"}});
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->For(T("https://a.example/")), nullptr);
  EXPECT_EQ(s->For(T("https://b.example/")), nullptr);
  EXPECT_EQ(s->For(T("https://www.b.example/")), nullptr);
  EXPECT_EQ(s->For(T("https://c.example./")), nullptr);  // a trailing dot names the same host
  EXPECT_NE(s->For(T("https://d.example/")), nullptr);
}

TEST(ProxySettingsTest, NameRulesNeverMatchAddressesAndRangesTakeBrackets) {
  auto s = FromEnv({{"HTTP_PROXY", "http://proxy:3128"}, {"NO_PROXY", "0.1,[fe80::]/10"}});
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_NE(s->For(T("http://10.0.0.1/")), nullptr);  // "0.1" is a name, not a suffix of it
  EXPECT_EQ(s->For(T("http://[fe80::1234]/")), nullptr);
  s = FromEnv({{"HTTP_PROXY", "http://proxy:3128"}, {"NO_PROXY", "0.0.0.0/0"}});
  ASSERT_TRUE(s.ok()) << s.status().ToString();
  EXPECT_EQ(s->For(T("http://203.0.113.9/")), nullptr);  // /0: every IPv4 address
  EXPECT_NE(s->For(T("http://[2001:db8::1]/")), nullptr);
  EXPECT_NE(s->For(T("http://receiver.example/")), nullptr);
}

TEST(ProxySettingsTest, NoProxyStarSendsEverythingDirect) {
  auto s = FromEnv({{"https_proxy", "http://proxy:3128"}, {"no_proxy", "*"}});
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->For(T("https://sentry.io/")), nullptr);
}

TEST(ProxySettingsTest, ABadNoProxyEntryIsAnErrorNamingItsPosition) {
  auto s =
      FromEnv({{"HTTPS_PROXY", "http://proxy:3128"}, {"NO_PROXY", "good.example,10.0.0.0/40"}});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().message().rfind("NO_PROXY: entry 2: ", 0), 0u) << s.status().message();
  s = FromEnv({{"NO_PROXY", "b@d.example"}});
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().message().rfind("NO_PROXY: entry 1: ", 0), 0u) << s.status().message();
}

}  // namespace
}  // namespace switchyard::httpclient
