#include <gtest/gtest.h>

#include "config/config.h"

namespace switchyard::config {
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using std::chrono::minutes;
using std::chrono::seconds;

TEST(ParseDurationTest, AcceptsEachUnit) {
  EXPECT_EQ(ParseDuration("250ms"), milliseconds(250));
  EXPECT_EQ(ParseDuration("5s"), seconds(5));
  EXPECT_EQ(ParseDuration("10m"), minutes(10));
  EXPECT_EQ(ParseDuration("8h"), hours(8));
  EXPECT_EQ(ParseDuration("7d"), hours(24 * 7));
}

TEST(ParseDurationTest, AcceptsZeroWithOrWithoutUnit) {
  EXPECT_EQ(ParseDuration("0"), milliseconds(0));
  EXPECT_EQ(ParseDuration("0s"), milliseconds(0));
  EXPECT_EQ(ParseDuration("0ms"), milliseconds(0));
}

TEST(ParseDurationTest, AcceptsCompoundFormsInDecreasingUnits) {
  EXPECT_EQ(ParseDuration("1h30m"), minutes(90));
  EXPECT_EQ(ParseDuration("1d2h3m4s5ms"), hours(26) + minutes(3) + seconds(4) + milliseconds(5));
  EXPECT_EQ(ParseDuration("1m30s"), seconds(90));
}

TEST(ParseDurationTest, RejectsEverythingElse) {
  for (const char* bad : {"",
                          "5",
                          "00",
                          "s",
                          "-5s",
                          "+5s",
                          "1.5s",
                          "5 s",
                          " 5s",
                          "5s ",
                          "5S",
                          "5sec",
                          "5min",
                          "1s1s",
                          "30m1h",
                          "5ms5s",
                          "1h30",
                          "1y",
                          "99999999999999999999s",
                          "9223372036854775807d"}) {
    EXPECT_EQ(ParseDuration(bad), std::nullopt) << "\"" << bad << "\"";
  }
}

TEST(RetryOverrideTest, ReplacesOnlyTheFieldsThatAreSet) {
  RetryConfig base;
  RetryOverride over;
  over.max_attempts = 3;
  over.jitter = 0;
  RetryConfig out = over.ApplyTo(base);
  EXPECT_EQ(out.max_attempts, 3u);
  EXPECT_DOUBLE_EQ(out.jitter, 0);
  EXPECT_EQ(out.initial, base.initial);
  EXPECT_DOUBLE_EQ(out.multiplier, base.multiplier);
  EXPECT_EQ(out.max_delay, base.max_delay);
  EXPECT_EQ(out.max_age, base.max_age);
}

TEST(ConfigErrorTest, FormatsAsFileLineColumnMessage) {
  ConfigError e{"routes.yaml", 12, 5, "boom"};
  EXPECT_EQ(e.ToString(), "routes.yaml:12:5: boom");
}

}  // namespace
}  // namespace switchyard::config
