#include "sentry/sentry_api.h"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <boost/json.hpp>
#include <string>

namespace switchyard::sentry {
namespace {

std::string FromBase64Url(std::string s) {
  for (char& c : s) c = c == '-' ? '+' : c == '_' ? '/' : c;
  while (s.size() % 4 != 0) s.push_back('=');
  std::string out(s.size(), '\0');
  const int n =
      EVP_DecodeBlock(reinterpret_cast<unsigned char*>(out.data()),
                      reinterpret_cast<const unsigned char*>(s.data()), static_cast<int>(s.size()));
  if (n < 0) return "";
  out.resize(static_cast<size_t>(n) - (s.size() - s.find_last_not_of('=') - 1));
  return out;
}

struct Jwt {
  std::string header, claims, signature, signed_part;
};

Jwt Split(const std::string& jwt) {
  const size_t a = jwt.find('.'), b = jwt.rfind('.');
  EXPECT_NE(a, std::string::npos);
  EXPECT_NE(a, b);
  return {FromBase64Url(jwt.substr(0, a)), FromBase64Url(jwt.substr(a + 1, b - a - 1)),
          FromBase64Url(jwt.substr(b + 1)), jwt.substr(0, b)};
}

TEST(ClientSecretJwtTest, IsAnHs256JwtUnderTheClientSecretWithSentrysClaims) {
  const std::string jwt = ClientSecretJwt("the-client-id", "the-client-secret", 1'765'000'000);
  EXPECT_EQ(jwt.find_first_of("+/= "), std::string::npos) << "base64url without padding";
  const Jwt parts = Split(jwt);

  const boost::json::value header = boost::json::parse(parts.header);
  EXPECT_EQ(header.at("alg"), "HS256");
  EXPECT_EQ(header.at("typ"), "JWT");

  const boost::json::value claims = boost::json::parse(parts.claims);
  EXPECT_EQ(claims.at("iss"), "the-client-id");
  EXPECT_EQ(claims.at("sub"), "the-client-id");
  EXPECT_EQ(claims.at("iat").as_int64(), 1'765'000'000 - 30) << "never ahead of Sentry's clock";
  EXPECT_EQ(claims.at("exp").as_int64(), 1'765'000'060);
  EXPECT_EQ(claims.at("jti").as_string().size(), 32u);

  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int len = 0;
  const std::string key = "the-client-secret";
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(parts.signed_part.data()), parts.signed_part.size(),
       mac, &len);
  EXPECT_EQ(parts.signature, std::string(reinterpret_cast<char*>(mac), len));
}

TEST(ClientSecretJwtTest, EachJwtHasItsOwnId) {
  const Jwt a = Split(ClientSecretJwt("id", "secret", 1));
  const Jwt b = Split(ClientSecretJwt("id", "secret", 1));
  EXPECT_NE(boost::json::parse(a.claims).at("jti"), boost::json::parse(b.claims).at("jti"));
}

}  // namespace
}  // namespace switchyard::sentry
