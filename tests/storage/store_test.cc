// The RocksDB store (EventStore + DeliveryQueue) against a real database in a temp dir, with a
// FakeClock; and the event / delivery encodings.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <climits>
#include <future>
#include <memory>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "common/clock.h"
#include "common/ids.h"
#include "storage/codec.h"
#include "storage/delivery_record.h"
#include "storage/event.h"
#include "storage/event_store.h"
#include "storage/rocksdb_common.h"
#include "support/temp_dir.h"

namespace switchyard::storage {
namespace {

using std::chrono::hours;
using std::chrono::milliseconds;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

StoredEvent MakeEvent(std::string body, std::string source = "sentry") {
  StoredEvent e;
  e.source = std::move(source);
  e.resource = "issue";
  e.action = "created";
  e.installation_uuid = "inst-1";
  e.headers = {{"request-id", "r-1"}, {"sentry-hook-resource", "issue"}};
  e.body = std::move(body);
  return e;
}

std::vector<std::string> Ids(const std::vector<DeliveryRecord>& records) {
  std::vector<std::string> out;
  for (const auto& r : records) out.push_back(r.id);
  return out;
}

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override { Open(); }

  StoreOptions Options() const {
    StoreOptions o;
    o.path = dir_.path() + "/store";
    o.sync = false;
    o.dedupe_window = hours(1);
    o.min_free_bytes = 0;  // do not depend on the test machine's free space
    return o;
  }

  void Open() {
    auto s = OpenStore(Options(), clock_);
    ASSERT_TRUE(s.ok()) << s.status().ToString();
    store_ = std::move(s).value();
  }

  void Reopen() {
    store_->Close();
    store_.reset();
    Open();
  }

  Result<AppendResult> AppendSync(StoredEvent e, std::vector<NewDelivery> deliveries) {
    std::promise<Result<AppendResult>> p;
    auto f = p.get_future();
    store_->Append(std::move(e), std::move(deliveries),
                   [&p](Result<AppendResult> r) { p.set_value(std::move(r)); });
    return f.get();
  }

  // Appends an event with one delivery per sink name; returns the delivery records created.
  std::vector<DeliveryRecord> AppendFor(const std::vector<std::string>& sinks,
                                        const std::string& body) {
    std::vector<NewDelivery> nd;
    for (const auto& s : sinks) nd.push_back({"route-" + s, s, false});
    auto r = AppendSync(MakeEvent(body), nd);
    EXPECT_TRUE(r.ok()) << r.status().ToString();
    std::vector<DeliveryRecord> out;
    std::vector<std::string> unique;
    for (const auto& s : sinks) {
      if (std::find(unique.begin(), unique.end(), s) == unique.end()) unique.push_back(s);
    }
    for (const auto& s : unique) {
      auto due = store_->Due(s, LLONG_MAX - 1, 100000, {});
      EXPECT_TRUE(due.ok());
      for (auto& d : due.value()) {
        if (r.ok() && d.event_id == r->id) out.push_back(d);
      }
    }
    return out;
  }

  // One pending delivery for `sink` (a fresh event each time).
  DeliveryRecord One(const std::string& sink) {
    auto v = AppendFor({sink}, "{\"n\":" + std::to_string(next_body_++) + "}");
    EXPECT_EQ(v.size(), 1u);
    return v.empty() ? DeliveryRecord{} : v[0];
  }

  DeliveryRecord Get(const std::string& id) {
    auto d = store_->GetDelivery(id);
    EXPECT_TRUE(d.ok());
    EXPECT_TRUE(d.ok() && d.value().has_value()) << "delivery " << id << " not found";
    return d.ok() && d.value() ? *d.value() : DeliveryRecord{};
  }

  void ExpectCounts(const std::string& sink, uint64_t pending, uint64_t dead) {
    QueueCounts c = store_->Counts();
    auto it = c.sinks.find(sink);
    uint64_t p = it == c.sinks.end() ? 0 : it->second.pending;
    uint64_t d = it == c.sinks.end() ? 0 : it->second.dead;
    EXPECT_EQ(p, pending) << "pending of " << sink;
    EXPECT_EQ(d, dead) << "dead of " << sink;
  }

  int64_t now() const { return clock_.NowMillis(); }

  switchyard::testing::TempDir dir_;
  FakeClock clock_;
  std::unique_ptr<Store> store_;
  int next_body_ = 0;
};

TEST_F(StoreTest, AppendStoresTheEventAndItsDeliveriesAndReportsTheCount) {
  const int64_t t0 = now();
  auto r = AppendSync(MakeEvent(R"({"action":"created"})"),
                      {{"r1", "phone", false}, {"r2", "ops", true}});
  ASSERT_TRUE(r.ok()) << r.status().ToString();
  EXPECT_FALSE(r->duplicate);
  EXPECT_EQ(r->deliveries, 2u);
  EXPECT_EQ(UlidMillis(r->id), t0);

  auto e = store_->Get(r->id);
  ASSERT_TRUE(e.ok());
  ASSERT_TRUE(e.value() != nullptr);
  EXPECT_EQ(e.value()->id, r->id);
  EXPECT_EQ(e.value()->source, "sentry");
  EXPECT_EQ(e.value()->resource, "issue");
  EXPECT_EQ(e.value()->action, "created");
  EXPECT_EQ(e.value()->installation_uuid, "inst-1");
  EXPECT_EQ(e.value()->received_at_ms, t0);
  EXPECT_EQ(e.value()->body, R"({"action":"created"})");
  EXPECT_EQ(e.value()->headers.size(), 2u);

  auto phone = store_->Due("phone", t0, 10, {});
  ASSERT_TRUE(phone.ok());
  ASSERT_EQ(phone->size(), 1u);
  const DeliveryRecord& d = (*phone)[0];
  EXPECT_EQ(d.event_id, r->id);
  EXPECT_EQ(d.route, "r1");
  EXPECT_EQ(d.sink, "phone");
  EXPECT_FALSE(d.deferred);
  EXPECT_FALSE(d.dead);
  EXPECT_EQ(d.attempts, 0u);
  EXPECT_EQ(d.created_ms, t0);
  EXPECT_EQ(d.due_ms, t0);
  EXPECT_EQ(d.first_attempt_ms, 0);

  auto ops = store_->Due("ops", t0, 10, {});
  ASSERT_TRUE(ops.ok());
  ASSERT_EQ(ops->size(), 1u);
  EXPECT_TRUE((*ops)[0].deferred);
  EXPECT_EQ((*ops)[0].route, "r2");
  EXPECT_NE((*ops)[0].id, d.id);

  QueueCounts c = store_->Counts();
  EXPECT_EQ(c.pending, 2u);
  EXPECT_EQ(c.dead, 0u);
  ExpectCounts("phone", 1, 0);
  ExpectCounts("ops", 1, 0);

  StoreStats stats = store_->Stats();
  EXPECT_GE(stats.group_commits, 1u);
  EXPECT_EQ(stats.events_written, 1u);
  EXPECT_TRUE(store_->Health().ok());
}

// Regression: the dispatcher can deliver and Complete() a delivery the moment the ingest batch
// lands, before the writer thread has finished its bookkeeping; the counts must still end at 0.
// Deterministic: the deliveries are completed from inside the group-commit hook, i.e. right
// after the write became visible.
TEST_F(StoreTest, CountsStayExactWhenDeliveriesCompleteAsSoonAsTheyAreWritten) {
  store_->Close();
  store_.reset();
  StoreOptions o = Options();
  Store* raw = nullptr;
  o.on_group_commit = [&raw](size_t) {
    auto due = raw->Due("fast", LLONG_MAX - 1, 100000, {});
    ASSERT_TRUE(due.ok());
    for (const auto& d : due.value()) ASSERT_TRUE(raw->Complete(d).ok());
  };
  auto opened = OpenStore(o, clock_);
  ASSERT_TRUE(opened.ok());
  store_ = std::move(opened).value();
  raw = store_.get();
  for (int i = 0; i < 20; ++i) {
    ASSERT_TRUE(AppendSync(MakeEvent("{\"race\":" + std::to_string(i) + "}"), {{"r", "fast", false}})
                    .ok());
  }
  ExpectCounts("fast", 0, 0);
  EXPECT_EQ(store_->Counts().pending, 0u);
}

TEST_F(StoreTest, PurgeEventsBeforeRemovesOnlyOlderEvents) {
  auto old_event = AppendSync(MakeEvent("{\"age\":\"old\"}"), {});
  ASSERT_TRUE(old_event.ok());
  clock_.Advance(hours(2));
  auto new_event = AppendSync(MakeEvent("{\"age\":\"new\"}"), {});
  ASSERT_TRUE(new_event.ok());
  ASSERT_TRUE(store_->PurgeEventsBefore(now() - 3600 * 1000).ok());
  auto gone = store_->Get(old_event->id);
  auto kept = store_->Get(new_event->id);
  ASSERT_TRUE(gone.ok() && kept.ok());
  EXPECT_FALSE(gone.value() != nullptr);
  ASSERT_TRUE(kept.value() != nullptr);
  EXPECT_EQ(kept.value()->body, "{\"age\":\"new\"}");
}

// A dead letter can be replayed long after its event's age would allow a purge (replay resets
// its age): the purge must keep every event a delivery still names.
TEST_F(StoreTest, PurgeEventsBeforeKeepsEventsThatADeliveryStillNames) {
  auto unnamed = AppendSync(MakeEvent("{\"age\":\"old, no delivery\"}"), {});
  ASSERT_TRUE(unnamed.ok());
  clock_.Advance(hours(1));
  DeliveryRecord d = One("s");
  ASSERT_TRUE(store_->DeadLetter(d).ok());
  clock_.Advance(hours(24 * 30));
  auto newer = AppendSync(MakeEvent("{\"age\":\"new\"}"), {});
  ASSERT_TRUE(newer.ok());
  ASSERT_TRUE(store_->PurgeEventsBefore(now()).ok());
  Reopen();  // read RocksDB, not the store's cache of recent events
  auto gone = store_->Get(unnamed->id);
  ASSERT_TRUE(gone.ok());
  EXPECT_TRUE(gone.value() == nullptr) << "older than every delivery: purged";
  auto named = store_->Get(d.event_id);
  ASSERT_TRUE(named.ok());
  EXPECT_TRUE(named.value() != nullptr) << "its dead letter is still listed";
  auto kept = store_->Get(newer->id);
  ASSERT_TRUE(kept.ok());
  EXPECT_TRUE(kept.value() != nullptr);

  // Once the dead letter is gone, so is the bound.
  ASSERT_THAT(store_->Drop({d.id}), ::testing::Property(&Result<size_t>::ok, true));
  ASSERT_TRUE(store_->PurgeEventsBefore(now() - 1000).ok());
  Reopen();
  named = store_->Get(d.event_id);
  ASSERT_TRUE(named.ok());
  EXPECT_TRUE(named.value() == nullptr);
}

TEST_F(StoreTest, AppendWithoutDeliveriesStoresOnlyTheEvent) {
  auto r = AppendSync(MakeEvent("{}"), {});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->deliveries, 0u);
  auto e = store_->Get(r->id);
  ASSERT_TRUE(e.ok());
  EXPECT_TRUE(e.value() != nullptr);
  EXPECT_EQ(store_->Counts().pending, 0u);
}

TEST_F(StoreTest, GetOfAnUnknownIdIsEmptyNotAnError) {
  auto e = store_->Get("01ARZ3NDEKTSV4RRFFQ69G5FAV");
  ASSERT_TRUE(e.ok());
  EXPECT_FALSE(e.value() != nullptr);
  auto d = store_->GetDelivery("01ARZ3NDEKTSV4RRFFQ69G5FAV");
  ASSERT_TRUE(d.ok());
  EXPECT_FALSE(d.value().has_value());
}

TEST_F(StoreTest, DuplicateWithinTheWindowCreatesNothing) {
  auto first = AppendSync(MakeEvent(R"({"same":1})"), {{"r", "phone", false}});
  ASSERT_TRUE(first.ok());
  clock_.Advance(milliseconds(1000));
  auto second = AppendSync(MakeEvent(R"({"same":1})"), {{"r", "phone", false}});
  ASSERT_TRUE(second.ok());
  EXPECT_TRUE(second->duplicate);
  EXPECT_EQ(second->id, first->id);
  EXPECT_EQ(second->deliveries, 0u);
  ExpectCounts("phone", 1, 0);
  auto due = store_->Due("phone", now(), 10, {});
  ASSERT_TRUE(due.ok());
  EXPECT_EQ(due->size(), 1u);
  EXPECT_EQ(store_->Stats().events_written, 1u);

  // Same body from another source is not a duplicate.
  auto other = AppendSync(MakeEvent(R"({"same":1})", "other"), {{"r", "phone", false}});
  ASSERT_TRUE(other.ok());
  EXPECT_FALSE(other->duplicate);
  EXPECT_NE(other->id, first->id);
  ExpectCounts("phone", 2, 0);
}

TEST_F(StoreTest, IdenticalBodiesInOneGroupCommitAreStoredOnce) {
  // Appended back to back: they usually land in one batch; either way only one is stored.
  std::promise<Result<AppendResult>> p1, p2;
  store_->Append(MakeEvent("{\"x\":1}"), {{"r", "s", false}},
                 [&](Result<AppendResult> r) { p1.set_value(std::move(r)); });
  store_->Append(MakeEvent("{\"x\":1}"), {{"r", "s", false}},
                 [&](Result<AppendResult> r) { p2.set_value(std::move(r)); });
  auto r1 = p1.get_future().get();
  auto r2 = p2.get_future().get();
  ASSERT_TRUE(r1.ok());
  ASSERT_TRUE(r2.ok());
  EXPECT_FALSE(r1->duplicate);
  EXPECT_TRUE(r2->duplicate);
  EXPECT_EQ(r2->id, r1->id);
  ExpectCounts("s", 1, 0);
}

TEST_F(StoreTest, DedupeExpiresAfterTheWindow) {
  auto first = AppendSync(MakeEvent(R"({"same":2})"), {{"r", "phone", false}});
  ASSERT_TRUE(first.ok());
  clock_.Advance(hours(1) - milliseconds(1));
  auto within = AppendSync(MakeEvent(R"({"same":2})"), {{"r", "phone", false}});
  ASSERT_TRUE(within.ok());
  EXPECT_TRUE(within->duplicate);

  clock_.Advance(milliseconds(2));
  auto after = AppendSync(MakeEvent(R"({"same":2})"), {{"r", "phone", false}});
  ASSERT_TRUE(after.ok());
  EXPECT_FALSE(after->duplicate);
  EXPECT_NE(after->id, first->id);
  EXPECT_EQ(after->deliveries, 1u);
  ExpectCounts("phone", 2, 0);

  // The window restarts from the newly stored copy.
  clock_.Advance(milliseconds(10));
  auto again = AppendSync(MakeEvent(R"({"same":2})"), {{"r", "phone", false}});
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->duplicate);
  EXPECT_EQ(again->id, after->id);
}

TEST_F(StoreTest, ZeroDedupeWindowStoresEveryCopy) {
  store_->Close();
  store_.reset();
  StoreOptions o = Options();
  o.dedupe_window = milliseconds(0);
  auto s = OpenStore(o, clock_);
  ASSERT_TRUE(s.ok());
  store_ = std::move(s).value();
  auto a = AppendSync(MakeEvent("{}"), {{"r", "s", false}});
  auto b = AppendSync(MakeEvent("{}"), {{"r", "s", false}});
  ASSERT_TRUE(a.ok());
  ASSERT_TRUE(b.ok());
  EXPECT_FALSE(b->duplicate);
  EXPECT_NE(a->id, b->id);
  ExpectCounts("s", 2, 0);
}

TEST_F(StoreTest, DueReturnsOnlyDeliveriesWhoseTimeHasComeInDueOrder) {
  const int64_t t0 = now();
  DeliveryRecord a = One("s"), b = One("s"), c = One("s");
  DeliveryRecord other = One("elsewhere");
  ASSERT_TRUE(store_->Reschedule(a, t0 + 300).ok());
  ASSERT_TRUE(store_->Reschedule(b, t0 + 100).ok());
  ASSERT_TRUE(store_->Reschedule(c, t0 + 200).ok());

  auto none = store_->Due("s", t0, 10, {});
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());

  auto some = store_->Due("s", t0 + 150, 10, {});
  ASSERT_TRUE(some.ok());
  EXPECT_THAT(Ids(*some), ElementsAre(b.id));

  auto exactly = store_->Due("s", t0 + 200, 10, {});
  ASSERT_TRUE(exactly.ok());
  EXPECT_THAT(Ids(*exactly), ElementsAre(b.id, c.id));  // due_ms <= now

  auto all = store_->Due("s", t0 + 1000, 10, {});
  ASSERT_TRUE(all.ok());
  EXPECT_THAT(Ids(*all), ElementsAre(b.id, c.id, a.id));
  EXPECT_EQ((*all)[0].due_ms, t0 + 100);
  EXPECT_EQ((*all)[1].due_ms, t0 + 200);
  EXPECT_EQ((*all)[2].due_ms, t0 + 300);

  // Other sinks' deliveries are never returned.
  for (const auto& d : *all) EXPECT_EQ(d.sink, "s");
  auto elsewhere = store_->Due("elsewhere", t0 + 1000, 10, {});
  ASSERT_TRUE(elsewhere.ok());
  EXPECT_THAT(Ids(*elsewhere), ElementsAre(other.id));

  // A sink that is a prefix of another is not confused with it.
  auto prefix = store_->Due("else", t0 + 1000, 10, {});
  ASSERT_TRUE(prefix.ok());
  EXPECT_TRUE(prefix->empty());
}

TEST_F(StoreTest, DueRespectsLimitAndSkipList) {
  const int64_t t0 = now();
  DeliveryRecord a = One("s"), b = One("s"), c = One("s");
  ASSERT_TRUE(store_->Reschedule(a, t0 + 1).ok());
  ASSERT_TRUE(store_->Reschedule(b, t0 + 2).ok());
  ASSERT_TRUE(store_->Reschedule(c, t0 + 3).ok());

  auto two = store_->Due("s", t0 + 10, 2, {});
  ASSERT_TRUE(two.ok());
  EXPECT_THAT(Ids(*two), ElementsAre(a.id, b.id));

  auto skipped = store_->Due("s", t0 + 10, 2, {a.id});
  ASSERT_TRUE(skipped.ok());
  EXPECT_THAT(Ids(*skipped), ElementsAre(b.id, c.id));

  auto skip_two = store_->Due("s", t0 + 10, 10, {c.id, a.id});
  ASSERT_TRUE(skip_two.ok());
  EXPECT_THAT(Ids(*skip_two), ElementsAre(b.id));

  auto zero = store_->Due("s", t0 + 10, 0, {});
  ASSERT_TRUE(zero.ok());
  EXPECT_TRUE(zero->empty());

  // Skipping (in flight) does not hide the skipped delivery from later scans.
  auto later = store_->Due("s", t0 + 10, 10, {});
  ASSERT_TRUE(later.ok());
  EXPECT_THAT(Ids(*later), ElementsAre(a.id, b.id, c.id));
}

TEST_F(StoreTest, DueWithTheLargestNowReturnsEveryPendingDelivery) {
  // The dispatcher reads a removed sink's whole schedule with now = INT64_MAX.
  const int64_t t0 = now();
  DeliveryRecord a = One("gone"), b = One("gone");
  ASSERT_TRUE(store_->Reschedule(b, t0 + 3600000).ok());
  auto all = store_->Due("gone", INT64_MAX, 10, {});
  ASSERT_TRUE(all.ok());
  EXPECT_THAT(Ids(*all), ElementsAre(a.id, b.id));
}

TEST_F(StoreTest, CompleteRemovesTheDelivery) {
  DeliveryRecord a = One("s"), b = One("s");
  ExpectCounts("s", 2, 0);
  ASSERT_TRUE(store_->Complete(a).ok());
  auto gone = store_->GetDelivery(a.id);
  ASSERT_TRUE(gone.ok());
  EXPECT_FALSE(gone.value().has_value());
  auto due = store_->Due("s", now() + 1000, 10, {});
  ASSERT_TRUE(due.ok());
  EXPECT_THAT(Ids(*due), ElementsAre(b.id));
  ExpectCounts("s", 1, 0);
  ASSERT_TRUE(store_->Complete(b).ok());
  ExpectCounts("s", 0, 0);
  EXPECT_EQ(store_->Counts().pending, 0u);
  // The event itself stays (for replay and the file sink); only the delivery goes.
  auto e = store_->Get(a.event_id);
  ASSERT_TRUE(e.ok());
  EXPECT_TRUE(e.value() != nullptr);
}

// Stores written before schedule entries carried a copy of the delivery record have empty
// values there; their deliveries must still be found and read whole.
TEST_F(StoreTest, ScheduleEntriesWithoutARecordCopyAreStillDue) {
  const DeliveryRecord d = One("s");
  store_->Close();
  store_.reset();
  {
    auto db = OpenDatabase(Options().path, {{kScheduleCf, BaseColumnFamilyOptions()}});
    ASSERT_TRUE(db.ok()) << db.status().ToString();
    rocksdb::ColumnFamilyHandle* schedule = db.value()->Handle(kScheduleCf);
    std::unique_ptr<rocksdb::Iterator> it(
        db.value()->db()->NewIterator(rocksdb::ReadOptions(), schedule));
    int rewritten = 0;
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      ASSERT_FALSE(it->value().empty()) << "this release writes the copy";
      ASSERT_TRUE(db.value()->db()->Put(rocksdb::WriteOptions(), schedule, it->key(), "").ok());
      ++rewritten;
    }
    ASSERT_EQ(rewritten, 1);
  }
  Open();
  auto due = store_->Due("s", now(), 10, {});
  ASSERT_TRUE(due.ok()) << due.status().ToString();
  ASSERT_EQ(due->size(), 1u);
  EXPECT_EQ((*due)[0].id, d.id);
  EXPECT_EQ((*due)[0].event_id, d.event_id);
  EXPECT_EQ((*due)[0].sink, "s");
}

TEST_F(StoreTest, RescheduleMovesTheDeliveryToItsNewDueTime) {
  const int64_t t0 = now();
  DeliveryRecord d = One("s");
  d.attempts = 1;
  d.first_attempt_ms = t0;
  d.last_attempt_ms = t0;
  d.last_error = "HTTP 503";
  ASSERT_TRUE(store_->Reschedule(d, t0 + 5000).ok());

  DeliveryRecord stored = Get(d.id);
  EXPECT_EQ(stored.due_ms, t0 + 5000);
  EXPECT_EQ(stored.attempts, 1u);
  EXPECT_EQ(stored.first_attempt_ms, t0);
  EXPECT_EQ(stored.last_attempt_ms, t0);
  EXPECT_EQ(stored.last_error, "HTTP 503");
  EXPECT_FALSE(stored.dead);

  for (int64_t at : {t0, t0 + 4999}) {
    auto due = store_->Due("s", at, 10, {});
    ASSERT_TRUE(due.ok());
    EXPECT_TRUE(due->empty()) << "due at " << at - t0;
  }
  auto due = store_->Due("s", t0 + 5000, 10, {});
  ASSERT_TRUE(due.ok());
  ASSERT_EQ(due->size(), 1u);  // the old schedule entry is gone
  EXPECT_EQ((*due)[0].due_ms, t0 + 5000);
  // The scan returns the record as rescheduled (it reads the schedule entry's copy).
  EXPECT_EQ((*due)[0].attempts, 1u);
  EXPECT_EQ((*due)[0].last_error, "HTTP 503");
  EXPECT_EQ((*due)[0].attempts, 1u);
  ExpectCounts("s", 1, 0);

  // Rescheduling again (from the record Due returned) moves it once more.
  DeliveryRecord again = (*due)[0];
  again.attempts = 2;
  ASSERT_TRUE(store_->Reschedule(again, t0 + 9000).ok());
  auto later = store_->Due("s", t0 + 100000, 10, {});
  ASSERT_TRUE(later.ok());
  ASSERT_EQ(later->size(), 1u);
  EXPECT_EQ((*later)[0].due_ms, t0 + 9000);
  EXPECT_EQ((*later)[0].attempts, 2u);
}

TEST_F(StoreTest, RescheduleBeforeAnEarlierScanPositionIsStillFound) {
  // Scans start at a per-sink watermark; moving a delivery below it must lower it.
  const int64_t t0 = now();
  DeliveryRecord a = One("s"), b = One("s");
  ASSERT_TRUE(store_->Reschedule(b, t0 + 500).ok());
  ASSERT_TRUE(store_->Complete(a).ok());
  auto at500 = store_->Due("s", t0 + 500, 10, {});  // watermark moves up to t0 + 500
  ASSERT_TRUE(at500.ok());
  ASSERT_EQ(at500->size(), 1u);
  ASSERT_TRUE(store_->Reschedule((*at500)[0], t0 + 100).ok());
  auto at100 = store_->Due("s", t0 + 100, 10, {});
  ASSERT_TRUE(at100.ok());
  EXPECT_THAT(Ids(*at100), ElementsAre(b.id));

  // A new append (due now, below the watermark) is found too.
  auto at200 = store_->Due("s", t0 + 200, 10, {});
  ASSERT_TRUE(at200.ok());
  ASSERT_TRUE(store_->Complete((*at200)[0]).ok());
  clock_.Advance(milliseconds(50));
  DeliveryRecord c = One("s");
  auto now_due = store_->Due("s", now(), 10, {});
  ASSERT_TRUE(now_due.ok());
  EXPECT_THAT(Ids(*now_due), ElementsAre(c.id));
}

TEST_F(StoreTest, DeadLetterIsListedWithAttemptsAndError) {
  const int64_t t0 = now();
  DeliveryRecord d = One("s");
  One("s");
  clock_.Advance(milliseconds(1234));
  d.attempts = 3;
  d.last_attempt_ms = now();
  d.last_error = "HTTP 400: bad request";
  ASSERT_TRUE(store_->DeadLetter(d).ok());

  auto dead = store_->ListDead(10);
  ASSERT_TRUE(dead.ok());
  ASSERT_EQ(dead->size(), 1u);
  const DeliveryRecord& r = (*dead)[0];
  EXPECT_EQ(r.id, d.id);
  EXPECT_TRUE(r.dead);
  EXPECT_EQ(r.attempts, 3u);
  EXPECT_EQ(r.last_error, "HTTP 400: bad request");
  EXPECT_EQ(r.due_ms, t0 + 1234);  // when it died
  EXPECT_EQ(r.created_ms, t0);
  EXPECT_EQ(r.sink, "s");

  auto due = store_->Due("s", now() + 100000, 10, {});
  ASSERT_TRUE(due.ok());
  ASSERT_EQ(due->size(), 1u);
  EXPECT_NE((*due)[0].id, d.id);
  ExpectCounts("s", 1, 1);
  EXPECT_EQ(store_->Counts().dead, 1u);
  EXPECT_EQ(store_->Counts().pending, 1u);

  auto limited = store_->ListDead(0);
  ASSERT_TRUE(limited.ok());
  EXPECT_TRUE(limited->empty());
}

TEST_F(StoreTest, DeadLettersPageInIdOrderAfterTheGivenId) {
  std::vector<std::string> ids;
  for (int i = 0; i < 5; ++i) {
    DeliveryRecord d = One("s");
    ASSERT_TRUE(store_->DeadLetter(d).ok());
    ids.push_back(d.id);
  }
  std::sort(ids.begin(), ids.end());
  std::vector<std::string> paged;
  std::string after;
  for (int page = 0; page < 10; ++page) {
    auto got = store_->ListDead(2, after);
    ASSERT_TRUE(got.ok());
    for (const auto& d : *got) paged.push_back(d.id);
    if (got->size() < 2) break;
    after = got->back().id;
  }
  EXPECT_EQ(paged, ids);  // each once, in order
  // An id that is not a dead letter (dropped since) still marks a place.
  ASSERT_TRUE(store_->Drop({ids[1]}).ok());
  auto rest = store_->ListDead(10, ids[1]);
  ASSERT_TRUE(rest.ok());
  EXPECT_THAT(Ids(*rest), ElementsAre(ids[2], ids[3], ids[4]));
}

TEST_F(StoreTest, DeadLetterOfARescheduledDeliveryRemovesItFromTheSchedule) {
  const int64_t t0 = now();
  DeliveryRecord d = One("s");
  ASSERT_TRUE(store_->Reschedule(d, t0 + 100).ok());
  DeliveryRecord stored = Get(d.id);
  ASSERT_TRUE(store_->DeadLetter(stored).ok());
  auto due = store_->Due("s", t0 + 1000, 10, {});
  ASSERT_TRUE(due.ok());
  EXPECT_TRUE(due->empty());
  ExpectCounts("s", 0, 1);
}

TEST_F(StoreTest, ReplayByIdPutsADeadLetterBackDueNowWithAttemptsReset) {
  DeliveryRecord d = One("s");
  d.attempts = 12;
  d.first_attempt_ms = now();
  d.last_error = "boom (max_attempts reached)";
  ASSERT_TRUE(store_->DeadLetter(d).ok());
  ExpectCounts("s", 0, 1);

  clock_.Advance(hours(2));
  const int64_t t1 = now();
  auto replayed = store_->Replay({d.id}, false, t1);
  ASSERT_TRUE(replayed.ok());
  EXPECT_EQ(replayed.value(), 1u);

  DeliveryRecord r = Get(d.id);
  EXPECT_FALSE(r.dead);
  EXPECT_EQ(r.attempts, 0u);
  EXPECT_EQ(r.due_ms, t1);
  EXPECT_EQ(r.created_ms, t1);  // max_age counts from the replay
  EXPECT_TRUE(r.last_error.empty());
  ExpectCounts("s", 1, 0);

  auto dead = store_->ListDead(10);
  ASSERT_TRUE(dead.ok());
  EXPECT_TRUE(dead->empty());
  auto due = store_->Due("s", t1, 10, {});
  ASSERT_TRUE(due.ok());
  EXPECT_THAT(Ids(*due), ElementsAre(d.id));

  // Replaying it again (it is pending now) or an unknown id does nothing.
  std::vector<std::string> skipped;
  auto again = store_->Replay({d.id, "01ARZ3NDEKTSV4RRFFQ69G5FAV"}, false, t1, &skipped);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again.value(), 0u);
  EXPECT_THAT(skipped, ElementsAre(d.id, "01ARZ3NDEKTSV4RRFFQ69G5FAV"));
  ExpectCounts("s", 1, 0);
}

TEST_F(StoreTest, ReplayAllPutsEveryDeadLetterBack) {
  DeliveryRecord a = One("s"), b = One("t"), c = One("s");
  ASSERT_TRUE(store_->DeadLetter(a).ok());
  ASSERT_TRUE(store_->DeadLetter(b).ok());
  ExpectCounts("s", 1, 1);
  ExpectCounts("t", 0, 1);
  auto replayed = store_->Replay({}, true, now());
  ASSERT_TRUE(replayed.ok());
  EXPECT_EQ(replayed.value(), 2u);
  ExpectCounts("s", 2, 0);
  ExpectCounts("t", 1, 0);
  EXPECT_EQ(store_->Counts().dead, 0u);
  EXPECT_EQ(store_->Counts().pending, 3u);
  auto s = store_->Due("s", now(), 10, {});
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(s->size(), 2u);
  auto t = store_->Due("t", now(), 10, {});
  ASSERT_TRUE(t.ok());
  EXPECT_THAT(Ids(*t), ElementsAre(b.id));
  (void)c;
}

TEST_F(StoreTest, DropDeletesDeadLettersOnly) {
  DeliveryRecord a = One("s"), b = One("s");
  ASSERT_TRUE(store_->DeadLetter(a).ok());
  std::vector<std::string> skipped;
  auto dropped = store_->Drop({a.id, b.id /* pending: not dropped */, "nope"}, &skipped);
  ASSERT_TRUE(dropped.ok());
  EXPECT_EQ(dropped.value(), 1u);
  EXPECT_THAT(skipped, ElementsAre(b.id, "nope"));
  auto gone = store_->GetDelivery(a.id);
  ASSERT_TRUE(gone.ok());
  EXPECT_FALSE(gone.value().has_value());
  Get(b.id);
  auto dead = store_->ListDead(10);
  ASSERT_TRUE(dead.ok());
  EXPECT_TRUE(dead->empty());
  ExpectCounts("s", 1, 0);
  // Dropping it twice counts once.
  auto twice = store_->Drop({a.id});
  ASSERT_TRUE(twice.ok());
  EXPECT_EQ(twice.value(), 0u);
  ExpectCounts("s", 1, 0);
}

TEST_F(StoreTest, PurgeDeadRemovesOnlyDeadLettersOlderThanTheCutoff) {
  DeliveryRecord old1 = One("s"), old2 = One("t"), young = One("s"), pending = One("s");
  ASSERT_TRUE(store_->DeadLetter(old1).ok());
  ASSERT_TRUE(store_->DeadLetter(old2).ok());
  clock_.Advance(milliseconds(10000));
  const int64_t cutoff = now();
  ASSERT_TRUE(store_->DeadLetter(young).ok());  // died exactly at the cutoff: kept
  auto purged = store_->PurgeDead(cutoff);
  ASSERT_TRUE(purged.ok());
  EXPECT_EQ(purged.value(), 2u);
  auto dead = store_->ListDead(10);
  ASSERT_TRUE(dead.ok());
  EXPECT_THAT(Ids(*dead), ElementsAre(young.id));
  Get(pending.id);
  ExpectCounts("s", 1, 1);
  ExpectCounts("t", 0, 0);
  EXPECT_EQ(store_->Counts().dead, 1u);
}

TEST_F(StoreTest, PurgeDeadRemovesAtMostItsLimitPerCallOldestFirst) {
  // 101 events x 100 sinks: 10,100 dead letters, just over one call's limit.
  auto sink = [](int i) {
    std::string name = "s";
    name += std::to_string(i);
    return name;
  };
  std::vector<NewDelivery> nd;
  for (int i = 0; i < 100; ++i) nd.push_back({"r", sink(i), false});
  for (int e = 0; e < 101; ++e) {
    ASSERT_TRUE(AppendSync(MakeEvent("{\"e\":" + std::to_string(e) + "}"), nd).ok());
  }
  size_t dead = 0;
  for (int i = 0; i < 100; ++i) {
    auto due = store_->Due(sink(i), LLONG_MAX - 1, 1000, {});
    ASSERT_TRUE(due.ok());
    for (const auto& d : due.value()) {
      ASSERT_TRUE(store_->DeadLetter(d).ok());
      ++dead;
    }
  }
  ASSERT_EQ(dead, 10100u);
  clock_.Advance(milliseconds(1000));
  auto first = store_->PurgeDead(now());
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first.value(), DeliveryQueue::kMaxPurgedPerCall);
  auto second = store_->PurgeDead(now());
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(second.value(), 100u);
  EXPECT_EQ(store_->Counts().dead, 0u);
}

TEST_F(StoreTest, CountsPerSinkFollowEveryTransition) {
  auto expect_totals = [&](uint64_t pending, uint64_t dead) {
    QueueCounts c = store_->Counts();
    EXPECT_EQ(c.pending, pending);
    EXPECT_EQ(c.dead, dead);
    uint64_t p = 0, d = 0;
    for (const auto& [name, s] : c.sinks) {
      p += s.pending;
      d += s.dead;
    }
    EXPECT_EQ(p, pending) << "per-sink pending sums to the total";
    EXPECT_EQ(d, dead) << "per-sink dead sums to the total";
  };
  auto ds = AppendFor({"a", "b", "a"}, "{\"k\":1}");  // two deliveries to a
  ASSERT_EQ(ds.size(), 3u);
  ExpectCounts("a", 2, 0);
  ExpectCounts("b", 1, 0);
  expect_totals(3, 0);

  ASSERT_TRUE(store_->Reschedule(ds[0], now() + 10).ok());
  ExpectCounts("a", 2, 0);
  expect_totals(3, 0);

  ASSERT_TRUE(store_->DeadLetter(Get(ds[0].id)).ok());
  ExpectCounts("a", 1, 1);
  expect_totals(2, 1);

  ASSERT_TRUE(store_->Complete(ds[2]).ok());  // b
  ExpectCounts("b", 0, 0);
  expect_totals(1, 1);

  ASSERT_TRUE(store_->DeadLetter(ds[1]).ok());
  ExpectCounts("a", 0, 2);
  expect_totals(0, 2);

  auto r = store_->Replay({ds[0].id}, false, now());
  ASSERT_TRUE(r.ok());
  ExpectCounts("a", 1, 1);
  expect_totals(1, 1);

  auto d = store_->Drop({ds[1].id});
  ASSERT_TRUE(d.ok());
  ExpectCounts("a", 1, 0);
  expect_totals(1, 0);

  Reopen();
  ExpectCounts("a", 1, 0);
  ExpectCounts("b", 0, 0);
  expect_totals(1, 0);
}

TEST_F(StoreTest, EverythingSurvivesCloseAndReopen) {
  const int64_t t0 = now();
  auto r = AppendSync(MakeEvent(std::string(4000, 'x')), {{"r", "s", false}});
  ASSERT_TRUE(r.ok());
  DeliveryRecord pending = One("s");
  DeliveryRecord later = One("s");
  DeliveryRecord dead = One("t");
  later.attempts = 2;
  later.last_error = "timeout";
  ASSERT_TRUE(store_->Reschedule(later, t0 + 60000).ok());
  dead.attempts = 1;
  dead.last_error = "HTTP 404";
  ASSERT_TRUE(store_->DeadLetter(dead).ok());
  QueueCounts before = store_->Counts();

  Reopen();

  QueueCounts after = store_->Counts();
  EXPECT_EQ(after.pending, before.pending);
  EXPECT_EQ(after.dead, before.dead);
  EXPECT_EQ(after.pending, 3u);
  EXPECT_EQ(after.dead, 1u);
  ExpectCounts("s", 3, 0);
  ExpectCounts("t", 0, 1);

  auto e = store_->Get(r->id);
  ASSERT_TRUE(e.ok());
  ASSERT_TRUE(e.value() != nullptr);
  EXPECT_EQ(e.value()->body, std::string(4000, 'x'));

  auto due_now = store_->Due("s", t0, 10, {});
  ASSERT_TRUE(due_now.ok());
  EXPECT_EQ(due_now->size(), 2u);
  auto due_later = store_->Due("s", t0 + 60000, 10, {});
  ASSERT_TRUE(due_later.ok());
  ASSERT_EQ(due_later->size(), 3u);
  EXPECT_EQ((*due_later)[2].id, later.id);
  EXPECT_EQ((*due_later)[2].attempts, 2u);
  EXPECT_EQ((*due_later)[2].last_error, "timeout");

  auto dl = store_->ListDead(10);
  ASSERT_TRUE(dl.ok());
  ASSERT_EQ(dl->size(), 1u);
  EXPECT_EQ((*dl)[0].id, dead.id);
  EXPECT_EQ((*dl)[0].last_error, "HTTP 404");

  // Dedupe survives too.
  auto dup = AppendSync(MakeEvent(std::string(4000, 'x')), {{"r", "s", false}});
  ASSERT_TRUE(dup.ok());
  EXPECT_TRUE(dup->duplicate);
  EXPECT_EQ(dup->id, r->id);
  (void)pending;
}

TEST_F(StoreTest, AppendAfterCloseFailsWithUnavailable) {
  store_->Close();
  auto r = AppendSync(MakeEvent("{}"), {{"r", "s", false}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  store_->Close();  // idempotent
}

TEST_F(StoreTest, ABacklogOfTwentyThousandDrainsInBatches) {
  constexpr int kEvents = 20;
  constexpr int kPerEvent = 1000;
  std::vector<NewDelivery> nd;
  for (int i = 0; i < kPerEvent; ++i) nd.push_back({"route", "bulk", false});
  for (int e = 0; e < kEvents; ++e) {
    auto r = AppendSync(MakeEvent("{\"e\":" + std::to_string(e) + "}"), nd);
    ASSERT_TRUE(r.ok()) << r.status().ToString();
    ASSERT_EQ(r->deliveries, static_cast<size_t>(kPerEvent));
  }
  ExpectCounts("bulk", kEvents * kPerEvent, 0);

  std::set<std::string> seen;
  int rounds = 0;
  for (;;) {
    auto due = store_->Due("bulk", now(), 100, {});
    ASSERT_TRUE(due.ok()) << due.status().ToString();
    if (due->empty()) break;
    ASSERT_LE(due->size(), 100u);
    ++rounds;
    ASSERT_LE(rounds, kEvents * kPerEvent / 100) << "more rounds than batches";
    for (const DeliveryRecord& d : *due) {
      ASSERT_TRUE(seen.insert(d.id).second) << "delivery returned twice: " << d.id;
      ASSERT_TRUE(store_->Complete(d).ok());
    }
  }
  EXPECT_EQ(seen.size(), static_cast<size_t>(kEvents * kPerEvent));
  EXPECT_EQ(rounds, kEvents * kPerEvent / 100);
  ExpectCounts("bulk", 0, 0);
  EXPECT_EQ(store_->Counts().pending, 0u);

  // The sink still works after the drain (new work below the scan position is found).
  DeliveryRecord d = One("bulk");
  auto due = store_->Due("bulk", now(), 100, {});
  ASSERT_TRUE(due.ok());
  EXPECT_THAT(Ids(*due), ElementsAre(d.id));
}

// --- Encodings -----------------------------------------------------------------------------

TEST(EventEncodingTest, LargeCompressibleBodyRoundTripsCompressed) {
  StoredEvent e = MakeEvent("");
  e.id = "01HZX3NDEKTSV4RRFFQ69G5FAV";
  e.received_at_ms = 1700000000123;
  for (int i = 0; i < 200; ++i) e.body += R"({"title":"ReferenceError: x is not defined"},)";
  std::string bytes = EncodeEvent(e);
  EXPECT_LT(bytes.size(), e.body.size() / 2) << "a repetitive body is stored compressed";
  auto d = DecodeEvent(bytes);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_EQ(d->id, e.id);
  EXPECT_EQ(d->source, e.source);
  EXPECT_EQ(d->resource, e.resource);
  EXPECT_EQ(d->action, e.action);
  EXPECT_EQ(d->received_at_ms, e.received_at_ms);
  EXPECT_EQ(d->installation_uuid, e.installation_uuid);
  EXPECT_EQ(d->headers, e.headers);
  EXPECT_EQ(d->body, e.body);
}

TEST(EventEncodingTest, SmallBodyRoundTripsRaw) {
  StoredEvent e = MakeEvent(R"({"a":"\u00e9"})");
  e.id = "01HZX3NDEKTSV4RRFFQ69G5FAV";
  e.received_at_ms = 42;
  std::string bytes = EncodeEvent(e);
  EXPECT_NE(bytes.find(e.body), std::string::npos) << "a small body is stored as is";
  auto d = DecodeEvent(bytes);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->body, e.body);
  EXPECT_EQ(d->headers, e.headers);
  EXPECT_EQ(d->received_at_ms, 42);
}

TEST(EventEncodingTest, InstallationOrgRoundTripsAndVersion2EventsStillDecode) {
  StoredEvent e = MakeEvent(R"({"a":1})");
  e.installation_uuid = "7d3c5c4f-4b8e-4d1e-9a67-1e2f3a4b5c6d";
  e.installation_org = "acme";
  const std::string bytes = EncodeEvent(e);
  EXPECT_EQ(bytes[0], 3) << "version 3 carries the organization";
  auto d = DecodeEvent(bytes);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->installation_org, "acme");
  StoredEvent no_org = e;
  no_org.installation_org.clear();
  EXPECT_EQ(EncodeEvent(no_org)[0], 2) << "without one, what the previous release reads";
  EXPECT_EQ(d->installation_uuid, e.installation_uuid);

  // An event written by the previous release (version 2: no organization field).
  std::string v2(1, '\x02');
  PutBytes(v2, "01HZX3NDEKTSV4RRFFQ69G5FAV");
  PutBytes(v2, "sentry");
  PutBytes(v2, "issue");
  PutBytes(v2, "created");
  PutVarint(v2, 42);
  PutBytes(v2, "uuid-1");
  PutVarint(v2, 1);
  PutBytes(v2, "request-id");
  PutBytes(v2, "r1");
  v2.push_back('\0');  // raw body
  PutBytes(v2, "{}");
  auto old = DecodeEvent(v2);
  ASSERT_TRUE(old.ok()) << old.status().ToString();
  EXPECT_EQ(old->installation_uuid, "uuid-1");
  EXPECT_EQ(old->installation_org, "");
  EXPECT_EQ(old->headers.size(), 1u);
  EXPECT_EQ(old->body, "{}");
}

TEST(EventEncodingTest, IncompressibleAndBinaryBodiesRoundTrip) {
  std::mt19937 rng(7);
  StoredEvent e = MakeEvent("");
  for (int i = 0; i < 5000; ++i) e.body.push_back(static_cast<char>(rng() & 0xff));
  e.body[10] = '\0';
  auto d = DecodeEvent(EncodeEvent(e));
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->body, e.body);

  StoredEvent empty;
  auto d2 = DecodeEvent(EncodeEvent(empty));
  ASSERT_TRUE(d2.ok());
  EXPECT_TRUE(d2->body.empty());
  EXPECT_TRUE(d2->headers.empty());
}

TEST(EventEncodingTest, TruncatedOrUnknownBytesAreCorruption) {
  StoredEvent e = MakeEvent(std::string(2000, 'a'));
  std::string bytes = EncodeEvent(e);
  for (size_t n : {size_t{0}, size_t{1}, bytes.size() / 2, bytes.size() - 1}) {
    auto d = DecodeEvent(bytes.substr(0, n));
    ASSERT_FALSE(d.ok()) << "prefix of " << n << " bytes";
    EXPECT_EQ(d.status().code(), StatusCode::kCorruption);
  }
  std::string bad = bytes;
  bad[0] = 9;
  EXPECT_EQ(DecodeEvent(bad).status().code(), StatusCode::kCorruption);
  EXPECT_EQ(DecodeEvent(bytes + "x").status().code(), StatusCode::kCorruption);
}

TEST(DeliveryEncodingTest, RecordRoundTrips) {
  DeliveryRecord d;
  d.id = "01HZX3NDEKTSV4RRFFQ69G5FAV";
  d.event_id = "01HZX3NDEKTSV4RRFFQ69G5FAW";
  d.route = "route";
  d.sink = "sink";
  d.deferred = true;
  d.counts_match = true;
  d.dead = true;
  d.attempts = 7;
  d.created_ms = 1700000000000;
  d.first_attempt_ms = 1700000000001;
  d.last_attempt_ms = 1700000000002;
  d.due_ms = 1700000000003;
  d.last_error = "HTTP 503 (max_attempts reached)";
  auto r = DecodeDelivery(EncodeDelivery(d));
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->id, d.id);
  EXPECT_EQ(r->event_id, d.event_id);
  EXPECT_EQ(r->route, d.route);
  EXPECT_EQ(r->sink, d.sink);
  EXPECT_TRUE(r->deferred);
  EXPECT_TRUE(r->counts_match);
  EXPECT_TRUE(r->dead);
  EXPECT_EQ(r->attempts, 7u);
  d.counts_match = false;
  EXPECT_FALSE(DecodeDelivery(EncodeDelivery(d))->counts_match);
  EXPECT_EQ(r->created_ms, d.created_ms);
  EXPECT_EQ(r->first_attempt_ms, d.first_attempt_ms);
  EXPECT_EQ(r->last_attempt_ms, d.last_attempt_ms);
  EXPECT_EQ(r->due_ms, d.due_ms);
  EXPECT_EQ(r->last_error, d.last_error);

  std::string bytes = EncodeDelivery(d);
  EXPECT_EQ(DecodeDelivery(bytes.substr(0, bytes.size() - 1)).status().code(),
            StatusCode::kCorruption);
  EXPECT_EQ(DecodeDelivery("").status().code(), StatusCode::kCorruption);
}

TEST(DeliveryEncodingTest, ScheduleKeysSortByDueTimeWithinASink) {
  std::string a = ScheduleKey("s", 1000, "B");
  std::string b = ScheduleKey("s", 2000, "A");
  std::string c = ScheduleKey("s", 256, "Z");
  EXPECT_LT(c, a);
  EXPECT_LT(a, b);
  EXPECT_LE(ScheduleBound("s", 1000), a);
  EXPECT_GT(ScheduleBound("s", 1001), a);
  std::string_view sink, id;
  int64_t due = 0;
  ASSERT_TRUE(ParseScheduleKey(b, &sink, &due, &id));
  EXPECT_EQ(sink, "s");
  EXPECT_EQ(due, 2000);
  EXPECT_EQ(id, "A");
  EXPECT_FALSE(ParseScheduleKey("no-nul", &sink, &due, &id));
  ASSERT_TRUE(ParseScheduleKey(c, &sink, &due, &id));
  EXPECT_EQ(due, 256);
  EXPECT_EQ(id, "Z");
  EXPECT_FALSE(ParseScheduleKey(std::string("s\0short", 7), &sink, &due, &id));
  EXPECT_THAT(ScheduleKey("s", 1, "x"), HasSubstr("x"));
}

}  // namespace
}  // namespace switchyard::storage
