// TokenStore: the durable home of Sentry app installations and their OAuth tokens.
//
// Records are sealed with AES-256-GCM under a 32-byte key kept in `storage.path/token.key`
// (created 0600 when missing; a key file readable by group or others is refused). The record's
// key (source, uuid) is the AEAD's associated data, so a sealed value cannot be moved to another
// installation. Nothing about a token is ever written in plain text: not the value, not a prefix.
//
// Durability: Put and Delete return after the write is fsync'd; callers persist a new token pair
// before they use it (Sentry invalidates the old pair the moment it answers a refresh).
// Threads: implementations are thread-safe; all calls block (never call from I/O threads).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "storage/event_store.h"

namespace switchyard::sentry {

enum class InstallStatus {
  kPending,         // tokens held, "verify install" not yet acknowledged by Sentry
  kInstalled,       // tokens held and usable
  kNeedsReinstall,  // Sentry refused the refresh token: the org must re-install the app
};
std::string_view InstallStatusName(InstallStatus s);

struct Installation {
  std::string source;  // config source name
  std::string uuid;    // Sentry's installation uuid
  std::string org;     // organization slug
  std::string access_token;   // secret
  std::string refresh_token;  // secret
  int64_t expires_at_ms = 0;  // access token expiry (Unix ms); 0 = unknown
  InstallStatus status = InstallStatus::kPending;
  int64_t updated_at_ms = 0;
  // When a manual refresh (JWT grant) last issued a pair (Unix ms); 0 = never. Kept so that
  // the one-an-hour limit on taking a pair back holds across restarts.
  int64_t manual_refresh_at_ms = 0;
};

class TokenStore {
 public:
  virtual ~TokenStore() = default;
  virtual Status Put(const Installation& installation) = 0;
  virtual Status Delete(std::string_view source, std::string_view uuid) = 0;
  // Every stored installation. A record that fails authentication (wrong key, tampering) is an
  // error (kCorruption naming the record), never skipped silently.
  virtual Result<std::vector<Installation>> LoadAll() = 0;
  // OK when a Put would not be refused for lack of space now (cheap: no write); checked before
  // asking Sentry for a pair that could not be stored.
  virtual Status Room() { return Status::Ok(); }
};

// Reads the 32-byte key from `dir/token.key` (64 hex characters), creating it with mode 0600
// from the system CSPRNG when missing. Refuses (kPermissionDenied) a key file that group or
// others may read or write, and (kCorruption) one that is not 64 hex characters.
// Refuses (kFailedPrecondition) to create one while `sealed_records` (installation records
// sealed with the missing key) are stored. A new key is written whole and then linked into place.
Result<std::string> LoadOrCreateTokenKey(const std::string& dir, size_t sealed_records = 0);

// A TokenStore over `table` (not owned; must outlive the store) sealing with `key` (32 bytes).
std::unique_ptr<TokenStore> NewEncryptedTokenStore(storage::KvTable& table, std::string key);

}  // namespace switchyard::sentry
