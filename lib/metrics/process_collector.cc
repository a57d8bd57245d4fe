#include "metrics/process_collector.h"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>

#include "common/allocator.h"
#include "common/log.h"

namespace switchyard::metrics {
namespace {

prometheus::MetricFamily Single(const char* name, const char* help, prometheus::MetricType type,
                                double value) {
  prometheus::MetricFamily f;
  f.name = name;
  f.help = help;
  f.type = type;
  prometheus::ClientMetric m;
  if (type == prometheus::MetricType::Counter) {
    m.counter.value = value;
  } else {
    m.gauge.value = value;
  }
  f.metric.push_back(std::move(m));
  return f;
}

int CountOpenFds() {
  DIR* d = opendir("/proc/self/fd");
  if (!d) return 0;
  int n = 0;
  while (struct dirent* e = readdir(d)) {
    if (e->d_name[0] != '.') ++n;
  }
  closedir(d);
  return n - 1;  // the directory stream's own fd
}

}  // namespace

ProcessCollector::ProcessCollector() {
  // Process start = now - (uptime of this process), from /proc/self/stat field 22 and /proc/uptime.
  // Falls back to construction time, which is within milliseconds of start in this daemon.
  start_time_seconds_ =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  std::ifstream stat("/proc/self/stat");
  std::ifstream up("/proc/uptime");
  std::string line;
  double uptime = 0;
  if (std::getline(stat, line) && (up >> uptime)) {
    auto rparen = line.rfind(')');
    if (rparen != std::string::npos) {
      std::istringstream rest(line.substr(rparen + 2));
      std::string field;
      unsigned long long starttime = 0;
      for (int i = 3; i <= 22 && rest >> field; ++i) {
        if (i == 22) starttime = std::stoull(field);
      }
      double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
      if (starttime > 0 && ticks > 0) start_time_seconds_ -= uptime - starttime / ticks;
    }
  }
}

std::vector<prometheus::MetricFamily> ProcessCollector::Collect() const {
  using prometheus::MetricType;
  std::vector<prometheus::MetricFamily> out;
  double cpu = 0, vsize = 0, rss = 0;
  std::ifstream stat("/proc/self/stat");
  std::string line;
  if (std::getline(stat, line)) {
    auto rparen = line.rfind(')');
    if (rparen != std::string::npos) {
      std::istringstream rest(line.substr(rparen + 2));
      std::string field;
      double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
      double page = static_cast<double>(sysconf(_SC_PAGESIZE));
      for (int i = 3; i <= 24 && rest >> field; ++i) {
        if (i == 14 || i == 15) cpu += std::stod(field) / ticks;
        if (i == 23) vsize = std::stod(field);
        if (i == 24) rss = std::stod(field) * page;
      }
    }
  }
  struct rlimit rl {};
  getrlimit(RLIMIT_NOFILE, &rl);

  out.push_back(Single("process_cpu_seconds_total",
                       "Total user and system CPU time spent in seconds.", MetricType::Counter,
                       cpu));
  out.push_back(Single("process_open_fds", "Number of open file descriptors.", MetricType::Gauge,
                       CountOpenFds()));
  out.push_back(Single("process_max_fds", "Maximum number of open file descriptors.",
                       MetricType::Gauge, static_cast<double>(rl.rlim_cur)));
  out.push_back(Single("process_virtual_memory_bytes", "Virtual memory size in bytes.",
                       MetricType::Gauge, vsize));
  out.push_back(Single("process_resident_memory_bytes", "Resident memory size in bytes.",
                       MetricType::Gauge, rss));
  out.push_back(Single("process_heap_bytes", "Heap bytes the allocator holds from the OS.",
                       MetricType::Gauge, static_cast<double>(HeapBytes())));
  out.push_back(Single("switchyard_internal_errors_total",
                       "Exceptions caught where they would have ended a request, a task or the "
                       "process (each is logged as \"coroutine failed\").",
                       MetricType::Counter, static_cast<double>(log::CoroutineFailures())));
  out.push_back(Single("switchyard_log_lines_dropped_total",
                       "Log lines dropped because stderr (a pipe or socket) was not read in time.",
                       MetricType::Counter, static_cast<double>(log::DroppedLines())));
  out.push_back(Single("process_start_time_seconds",
                       "Start time of the process since unix epoch in seconds.", MetricType::Gauge,
                       start_time_seconds_));
  return out;
}

}  // namespace switchyard::metrics
