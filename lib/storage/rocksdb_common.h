// Internal to lib/storage: opening the one RocksDB instance and its column families.
// Includes RocksDB headers, so only storage .cc files include it.
#pragma once

#include <rocksdb/db.h>
#include <rocksdb/listener.h>
#include <rocksdb/options.h>

#include <map>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/status.h"
#include "storage/event_store.h"

namespace switchyard::storage {

inline constexpr char kEventsCf[] = "events";
inline constexpr char kDedupeCf[] = "dedupe";
inline constexpr char kDeliveriesCf[] = "deliveries";  // delivery id -> DeliveryRecord
inline constexpr char kScheduleCf[] = "schedule";  // sink \0 be64(due) id -> DeliveryRecord copy
inline constexpr char kDeadCf[] = "dead";          // delivery id -> "" (index of dead letters)
inline constexpr char kInstallationsCf[] = "installations";  // source \0 uuid -> sealed record

rocksdb::ColumnFamilyOptions BaseColumnFamilyOptions();

// Owns a DB and its column family handles. Thread-safe as rocksdb::DB is.
class Database {
 public:
  ~Database() { Close(); }
  rocksdb::DB* db() const { return db_.get(); }
  rocksdb::ColumnFamilyHandle* Handle(const std::string& name) const;
  std::vector<rocksdb::ColumnFamilyHandle*> Handles() const;
  // Flushes the WAL and closes. Idempotent.
  void Close();

 private:
  friend Result<std::unique_ptr<Database>> OpenDatabase(
      const std::string&, std::vector<std::pair<std::string, rocksdb::ColumnFamilyOptions>>,
      rocksdb::Env*, std::shared_ptr<rocksdb::EventListener>);
  std::unique_ptr<rocksdb::DB> db_;
  std::map<std::string, rocksdb::ColumnFamilyHandle*> handles_;
};

// Opens or creates the database at `path` with at least `families` (existing families not listed
// are opened with default options). Corruption is reported as kCorruption, a held lock as
// kFailedPrecondition; nothing is ever reset. `env` (not owned, outlives the database) replaces
// RocksDB's default environment: tests use it to inject I/O failures.
Result<std::unique_ptr<Database>> OpenDatabase(
    const std::string& path,
    std::vector<std::pair<std::string, rocksdb::ColumnFamilyOptions>> families,
    rocksdb::Env* env = nullptr, std::shared_ptr<rocksdb::EventListener> listener = nullptr);

// OpenStore (event_store.h) with `env` in place of RocksDB's default environment. For tests.
Result<std::unique_ptr<Store>> OpenStoreWithEnv(const StoreOptions& options, Clock& clock,
                                                rocksdb::Env* env);

}  // namespace switchyard::storage
