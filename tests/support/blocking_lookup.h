// A fake name lookup for the HTTP client's resolver seam (HttpClientOptions::lookup): every host
// resolves to 127.0.0.1, except hosts told to fail ("Name or service not known", as glibc says)
// and hosts told to block, whose lookups wait until released, as a lookup against an unanswering
// DNS server does. Counts lookups per host. Thread-safe; must outlive every lookup it served
// (release blocked hosts and await WaitFinished before it goes).
#pragma once

#include <chrono>
#include <condition_variable>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <vector>

#include "common/status.h"

namespace switchyard::testing {

class BlockingLookup {
 public:
  ~BlockingLookup();  // releases every blocked host and waits for their lookups to end
  void Block(const std::string& host);
  void Release(const std::string& host);
  void Fail(const std::string& host);
  std::function<Result<std::vector<std::string>>(const std::string&)> Fn();

  int Count(const std::string& host);
  bool WaitStarted(const std::string& host,
                   std::chrono::milliseconds limit = std::chrono::seconds(30));
  bool WaitFinished(const std::string& host,
                    std::chrono::milliseconds limit = std::chrono::seconds(30));

 private:
  Result<std::vector<std::string>> Lookup(const std::string& host);

  std::mutex mu_;
  std::condition_variable cv_;
  std::set<std::string> blocked_;
  std::set<std::string> failing_;
  std::map<std::string, int> started_;
  std::map<std::string, int> finished_;
  int running_ = 0;
};

}  // namespace switchyard::testing
