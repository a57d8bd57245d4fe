// NewSink: the factory over the sink types of config::SinkConfig.

#include "sinks/sink.h"

#include <type_traits>
#include <variant>

#include "sinks/file_sink.h"
#include "sinks/http_sink.h"
#include "sinks/pushover_sink.h"

namespace switchyard::sinks {

Result<std::unique_ptr<Sink>> NewSink(const config::SinkConfig& config,
                                      httpclient::HttpClient& client, bool sync_files) {
  return std::visit(
      [&](const auto& settings) -> Result<std::unique_ptr<Sink>> {
        using T = std::decay_t<decltype(settings)>;
        if constexpr (std::is_same_v<T, config::PushoverSinkConfig>) {
          return std::unique_ptr<Sink>(NewPushoverSink(settings, client));
        } else if constexpr (std::is_same_v<T, config::HttpSinkConfig>) {
          return NewHttpSink(settings, client);
        } else {
          static_assert(std::is_same_v<T, config::FileSinkConfig>);
          FileSinkOptions options;
          options.sync = sync_files;
          return NewFileSink(settings, std::move(options));
        }
      },
      config.settings);
}

}  // namespace switchyard::sinks
