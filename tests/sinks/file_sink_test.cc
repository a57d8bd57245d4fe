#include "sinks/file_sink.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <atomic>
#include <boost/json.hpp>
#include <cstdio>
#include <set>
#include <sstream>
#include <thread>

#include "fakes/fake_http_client.h"
#include "support/temp_dir.h"

namespace switchyard::sinks {
namespace {

using ::testing::HasSubstr;
using Kind = Outcome::Kind;

std::vector<std::string> Lines(const std::string& path) {
  std::vector<std::string> lines;
  std::istringstream in(testing::ReadFile(path));
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  return lines;
}

class FileSinkTest : public ::testing::Test {
 protected:
  FileSinkTest() : path_(dir_.File("archive/events.jsonl")) {}

  std::unique_ptr<Sink> MakeSink(const std::string& path) {
    config::SinkConfig c;
    c.name = "archive";
    c.type = "file";
    c.settings = config::FileSinkConfig{path};
    auto sink = NewSink(c, client_);
    EXPECT_TRUE(sink.ok()) << sink.status().ToString();
    return sink.ok() ? std::move(sink).value() : nullptr;
  }

  static Delivery MakeDelivery(std::string id, std::string body = R"({"action":"created"})") {
    auto event = std::make_shared<storage::StoredEvent>();
    event->id = "01JD00000000000000000000EV";
    event->source = "sentry";
    event->resource = "issue";
    event->action = "created";
    event->received_at_ms = 1700000000123;  // 2023-11-14T22:13:20.123Z
    event->body = std::move(body);
    Delivery d;
    d.id = std::move(id);
    d.route = "archive-everything";
    d.event = std::move(event);
    return d;
  }

  static Outcome DeliverTo(Sink& sink, const Delivery& d) {
    std::optional<Outcome> out;
    sink.Deliver(d, [&](Outcome o) { out = std::move(o); });
    EXPECT_TRUE(out.has_value()) << "file sinks complete before Deliver returns";
    return out.value_or(Outcome{});
  }

  testing::TempDir dir_;
  std::string path_;
  testing::FakeHttpClient client_;
};

TEST_F(FileSinkTest, WritesOneJsonObjectPerLineWithThePayloadAsAValue) {
  const std::string body =
      R"({"action":"created","data":{"issue":{"title":"日本語 \"q\"","count":3,"x":null}}})";
  auto sink = MakeSink(path_);
  ASSERT_NE(sink, nullptr);
  EXPECT_EQ(DeliverTo(*sink, MakeDelivery("01JD0000000000000000000DL1", body)).kind,
            Kind::kSuccess);

  const std::string content = testing::ReadFile(path_);
  ASSERT_FALSE(content.empty());
  EXPECT_EQ(content.back(), '\n');
  const auto lines = Lines(path_);
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_EQ(lines[0],
            R"({"id":"01JD00000000000000000000EV","received_at":"2023-11-14T22:13:20.123Z",)"
            R"("source":"sentry","resource":"issue","action":"created",)"
            R"("route":"archive-everything","delivery_id":"01JD0000000000000000000DL1",)"
            R"("payload":)" +
                body + "}");
  const boost::json::value v = boost::json::parse(lines[0]);
  EXPECT_EQ(v.at("id"), "01JD00000000000000000000EV") << "the webhook's id, as its 202 said";
  EXPECT_EQ(v.at("delivery_id"), "01JD0000000000000000000DL1");
  EXPECT_EQ(v.at("received_at"), "2023-11-14T22:13:20.123Z");
  EXPECT_EQ(v.at("source"), "sentry");
  EXPECT_EQ(v.at("resource"), "issue");
  EXPECT_EQ(v.at("action"), "created");
  EXPECT_EQ(v.at("route"), "archive-everything");
  EXPECT_EQ(v.at("payload"), boost::json::parse(body));
}

TEST_F(FileSinkTest, PrettyPrintedPayloadStaysOnOneLine) {
  const std::string body = "{\r\n  \"action\": \"resolved\",\n  \"data\": [1,\n 2]\n}\n";
  auto sink = MakeSink(path_);
  DeliverTo(*sink, MakeDelivery("a", body));
  DeliverTo(*sink, MakeDelivery("b", body));
  const auto lines = Lines(path_);
  ASSERT_EQ(lines.size(), 2u);
  for (const auto& line : lines) {
    EXPECT_EQ(boost::json::parse(line).at("payload"), boost::json::parse(body));
  }
}

TEST_F(FileSinkTest, InvalidPayloadAndMetadataStillGiveValidLines) {
  auto sink = MakeSink(path_);
  Delivery d = MakeDelivery("c", "not json \xFF");
  auto event = std::make_shared<storage::StoredEvent>(*d.event);
  event->action = "bad\xC0utf8\n";
  d.event = event;
  EXPECT_EQ(DeliverTo(*sink, d).kind, Kind::kSuccess);
  const auto lines = Lines(path_);
  ASSERT_EQ(lines.size(), 1u);
  const boost::json::value v = boost::json::parse(lines[0]);
  EXPECT_EQ(v.at("payload"), "not json \xEF\xBF\xBD");
  EXPECT_EQ(v.at("action"), "bad\xEF\xBF\xBDutf8\n");
}

TEST_F(FileSinkTest, CreatesParentDirectoriesAndFileWithMode0640) {
  const mode_t old = umask(022);
  const std::string deep = dir_.File("a/b/c/events.jsonl");
  auto sink = MakeSink(deep);
  umask(old);
  EXPECT_EQ(DeliverTo(*sink, MakeDelivery("d")).kind, Kind::kSuccess);
  struct stat st {};
  ASSERT_EQ(stat(deep.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u);
  EXPECT_EQ(Lines(deep).size(), 1u);
}

TEST_F(FileSinkTest, ConcurrentDeliveriesProduceIntactLines) {
  auto sink = MakeSink(path_);
  constexpr int kThreads = 8;
  constexpr int kPerThread = 500;
  // Bodies of different sizes, some larger than a pipe buffer, so torn writes would show.
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const std::string body = R"({"thread":)" + std::to_string(t) + R"(,"pad":")" +
                               std::string(static_cast<size_t>(100 + t * 1500), 'a' + t) + "\"}";
      for (int i = 0; i < kPerThread; ++i) {
        const Outcome out =
            DeliverTo(*sink, MakeDelivery(std::to_string(t) + "-" + std::to_string(i), body));
        EXPECT_EQ(out.kind, Kind::kSuccess);
      }
    });
  }
  for (auto& th : threads) th.join();

  const auto lines = Lines(path_);
  ASSERT_EQ(lines.size(), static_cast<size_t>(kThreads * kPerThread));
  std::set<std::string> ids;
  for (const auto& line : lines) {
    boost::json::error_code ec;
    const boost::json::value v = boost::json::parse(line, ec);
    ASSERT_FALSE(ec) << line.substr(0, 200);
    const auto t = v.at("payload").at("thread").as_int64();
    EXPECT_EQ(v.at("payload").at("pad").as_string().size(), static_cast<size_t>(100 + t * 1500));
    ids.insert(std::string(v.at("delivery_id").as_string()));
  }
  EXPECT_EQ(ids.size(), static_cast<size_t>(kThreads * kPerThread));
}

TEST_F(FileSinkTest, ReopenAfterRenameWritesToANewFile) {
  auto sink = MakeSink(path_);
  DeliverTo(*sink, MakeDelivery("before"));
  ASSERT_EQ(std::rename(path_.c_str(), (path_ + ".1").c_str()), 0);
  DeliverTo(*sink, MakeDelivery("still-old"));  // logrotate renamed, no SIGHUP yet
  sink->Reopen();
  DeliverTo(*sink, MakeDelivery("after"));

  const auto old_lines = Lines(path_ + ".1");
  ASSERT_EQ(old_lines.size(), 2u);
  EXPECT_THAT(old_lines[0], HasSubstr(R"("delivery_id":"before")"));
  EXPECT_THAT(old_lines[1], HasSubstr(R"("delivery_id":"still-old")"));
  const auto new_lines = Lines(path_);
  ASSERT_EQ(new_lines.size(), 1u);
  EXPECT_THAT(new_lines[0], HasSubstr(R"("delivery_id":"after")"));
}

TEST_F(FileSinkTest, ReopenWhileDeliveringLosesNoLines) {
  auto sink = MakeSink(path_);
  std::atomic<bool> done{false};
  std::thread writer([&] {
    for (int i = 0; i < 2000; ++i) DeliverTo(*sink, MakeDelivery(std::to_string(i)));
    done = true;
  });
  int rotations = 0;
  while (!done) {
    const std::string rotated = path_ + "." + std::to_string(++rotations);
    std::rename(path_.c_str(), rotated.c_str());
    sink->Reopen();
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  writer.join();
  size_t total = Lines(path_).size();
  for (int r = 1; r <= rotations; ++r) {
    for (const auto& line : Lines(path_ + "." + std::to_string(r))) {
      boost::json::error_code ec;
      boost::json::parse(line, ec);
      EXPECT_FALSE(ec);
      ++total;
    }
  }
  EXPECT_EQ(total, 2000u);
}

TEST_F(FileSinkTest, WriteErrorRetries) {
  auto sink = MakeSink("/dev/full");
  const Outcome out = DeliverTo(*sink, MakeDelivery("e"));
  EXPECT_EQ(out.kind, Kind::kRetry);
  EXPECT_EQ(out.error, "file write failed: No space left on device");
}

TEST_F(FileSinkTest, UnopenablePathRetriesAtDelivery) {
  dir_.Write("plainfile", "x");
  auto sink = MakeSink(dir_.File("plainfile/events.jsonl"));
  ASSERT_NE(sink, nullptr);
  const Outcome out = DeliverTo(*sink, MakeDelivery("f"));
  EXPECT_EQ(out.kind, Kind::kRetry);
  EXPECT_THAT(out.error, HasSubstr("file open failed"));
}

TEST_F(FileSinkTest, EmptyPathIsRejected) {
  config::SinkConfig c;
  c.type = "file";
  c.settings = config::FileSinkConfig{""};
  EXPECT_FALSE(NewSink(c, client_).ok());
}

TEST_F(FileSinkTest, DeliveryWithoutEventIsPermanent) {
  auto sink = MakeSink(path_);
  Delivery d = MakeDelivery("g");
  d.event = nullptr;
  EXPECT_EQ(DeliverTo(*sink, d).kind, Kind::kPermanent);
}

}  // namespace
}  // namespace switchyard::sinks
