#include "common/ids.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace switchyard {
namespace {

constexpr int64_t kMs = 1700000000123;

bool IsCrockford(const std::string& id) {
  return std::all_of(id.begin(), id.end(), [](char c) {
    return std::string_view("0123456789ABCDEFGHJKMNPQRSTVWXYZ").find(c) != std::string::npos;
  });
}

TEST(NewUlid, CarriesItsMillisecondAndOnlyCrockfordCharacters) {
  const std::string id = NewUlid(kMs);
  EXPECT_EQ(id.size(), 26u);
  EXPECT_TRUE(IsCrockford(id)) << id;
  EXPECT_EQ(UlidMillis(id), kMs);
  EXPECT_EQ(UlidLowerBound(kMs), id.substr(0, 10) + std::string(16, '0'));
}

TEST(NewUlid, IdsOfOneMillisecondSortInTheOrderTheyWereMade) {
  std::vector<std::string> ids;
  for (int i = 0; i < 10000; ++i) ids.push_back(NewUlid(kMs));
  EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));
  EXPECT_EQ(std::set<std::string>(ids.begin(), ids.end()).size(), ids.size());
  for (const auto& id : ids) ASSERT_EQ(UlidMillis(id), kMs);
}

TEST(NewUlid, ALaterMillisecondSortsAfterAndStartsFromFreshRandomBits) {
  const std::string a1 = NewUlid(kMs), a2 = NewUlid(kMs);
  const std::string b1 = NewUlid(kMs + 1), b2 = NewUlid(kMs + 1);
  EXPECT_LT(a1, a2);
  EXPECT_LT(a2, b1);
  EXPECT_LT(b1, b2);
  // A new millisecond draws a new start: the random part is not a continuation of the last one.
  // (Equal random parts would be a 1 in 2^80 accident.)
  EXPECT_NE(a2.substr(10), b1.substr(10));
}

TEST(NewUlid, ThreadsMakeDistinctIds) {
  std::vector<std::vector<std::string>> per_thread(4);
  std::vector<std::thread> threads;
  for (auto& ids : per_thread) {
    threads.emplace_back([&ids] {
      for (int i = 0; i < 2000; ++i) ids.push_back(NewUlid(kMs));
    });
  }
  for (auto& t : threads) t.join();
  std::set<std::string> all;
  for (const auto& ids : per_thread) {
    EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));
    all.insert(ids.begin(), ids.end());
  }
  EXPECT_EQ(all.size(), 4u * 2000u);
}

}  // namespace
}  // namespace switchyard
