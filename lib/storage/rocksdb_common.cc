#include "storage/rocksdb_common.h"

#include <rocksdb/env.h>
#include <rocksdb/filter_policy.h>
#include <rocksdb/table.h>
#include <rocksdb/write_buffer_manager.h>

#include <filesystem>
#include <set>

#include "common/log.h"
#include "storage/crc32c.h"

namespace switchyard::storage {

rocksdb::ColumnFamilyOptions BaseColumnFamilyOptions() {
  rocksdb::ColumnFamilyOptions cf;
  rocksdb::BlockBasedTableOptions table;
  table.filter_policy.reset(rocksdb::NewBloomFilterPolicy(10));
  cf.table_factory.reset(rocksdb::NewBlockBasedTableFactory(table));
  cf.compression = rocksdb::kLZ4Compression;
  cf.write_buffer_size = 16u << 20;
  return cf;
}

rocksdb::ColumnFamilyHandle* Database::Handle(const std::string& name) const {
  auto it = handles_.find(name);
  return it == handles_.end() ? nullptr : it->second;
}

std::vector<rocksdb::ColumnFamilyHandle*> Database::Handles() const {
  std::vector<rocksdb::ColumnFamilyHandle*> out;
  for (const auto& [name, h] : handles_) out.push_back(h);
  return out;
}

void Database::Close() {
  if (!db_) return;
  db_->FlushWAL(true).PermitUncheckedError();
  for (auto& [name, h] : handles_) db_->DestroyColumnFamilyHandle(h).PermitUncheckedError();
  handles_.clear();
  db_->Close().PermitUncheckedError();
  db_.reset();
}

namespace {

// OK if `db_dir` is missing, empty of RocksDB data, or has a CURRENT file; kCorruption if it
// holds a MANIFEST, table or WAL file but no CURRENT.
Status CheckCurrentFile(const std::string& db_dir) {
  std::error_code ec;
  if (std::filesystem::exists(db_dir + "/CURRENT", ec)) return Status::Ok();
  for (auto it = std::filesystem::directory_iterator(db_dir, ec);
       !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    const std::string name = it->path().filename().string();
    const std::string ext = it->path().extension().string();
    if (name.starts_with("MANIFEST-") || ext == ".sst" || ext == ".ldb" || ext == ".log") {
      return Corruption("store at " + db_dir + " is corrupted: it has data files (" + name +
                        ") but no CURRENT file; refusing to start, since opening it would start "
                        "an empty store and discard them. Restore CURRENT (it names the newest "
                        "MANIFEST file, followed by a newline) or move the store aside.");
    }
  }
  return Status::Ok();
}

}  // namespace

Result<std::unique_ptr<Database>> OpenDatabase(
    const std::string& path,
    std::vector<std::pair<std::string, rocksdb::ColumnFamilyOptions>> families, rocksdb::Env* env,
    std::shared_ptr<rocksdb::EventListener> listener) {
  std::error_code ec;
  const bool existed = std::filesystem::exists(path, ec);
  std::filesystem::create_directories(path, ec);
  if (ec) return Unavailable("cannot create storage directory " + path + ": " + ec.message());
  // The store holds webhook bodies (issue data, grant codes). RocksDB creates its files 0644
  // less the umask, so the directory is what keeps other users out: a new one is 0700; an
  // existing one that users outside its group may enter is used as it is, with a warning (a
  // group, as Kubernetes' fsGroup sets, is the operator's choice).
  namespace fs = std::filesystem;
  if (!existed) {
    fs::permissions(path, fs::perms::owner_all, fs::perm_options::replace, ec);
    if (ec) return Unavailable("cannot restrict storage directory " + path + ": " + ec.message());
  } else if (auto st = fs::status(path, ec);
             !ec && (st.permissions() & fs::perms::others_all) != fs::perms::none) {
    log::Warn("storage directory is open to all users; chmod o-rwx it", {{"path", path}});
  }

  // create_if_missing would make a fresh, empty database next to the files of one whose CURRENT
  // is gone, and then delete those files as obsolete: a silent reset. Refuse instead.
  if (Status s = CheckCurrentFile(path + "/db"); !s.ok()) return s;

  // Compactions are background work that nothing waits for: at nice 19 they use the CPU the I/O
  // and writer threads leave idle instead of taking turns with them. Flushes keep the normal
  // priority: a starved flush fills the write buffers and RocksDB then stops all writes (seen as
  // 50-90 ms answers under saturation).
  static const bool lowered = [] {
    rocksdb::Env::Default()
        ->LowerThreadPoolCPUPriority(rocksdb::Env::Priority::LOW, rocksdb::CpuPriority::kLow)
        .PermitUncheckedError();
    return true;
  }();
  (void)lowered;

  rocksdb::DBOptions db_opts;
  if (env != nullptr) db_opts.env = env;
  db_opts.create_if_missing = true;
  db_opts.create_missing_column_families = true;
  db_opts.max_background_jobs = 2;
  db_opts.max_open_files = 512;  // bounded: systemd's default soft NOFILE limit is 1024
  db_opts.paranoid_checks = true;
  // RocksDB's own LOG (stats every 10 min, each flush and compaction: MBs a day) rolls at
  // 16 MiB and keeps 5 old ones; without a size it grew in one file until the next restart,
  // outside max_disk_bytes, toward min_free_bytes.
  db_opts.max_log_file_size = 16u << 20;
  db_opts.keep_log_file_num = 5;
  // Obsolete WAL and table files are deleted by a background job, not by the writer thread that
  // happens to finish a memtable switch (an unlink of a large file takes milliseconds).
  db_opts.avoid_unnecessary_blocking_io = true;
  // Table files written by flushes and compactions are handed to the disk 1 MiB at a time, not
  // in one burst at their final fsync: a 16 MiB burst queued the WAL's fdatasync behind it, and
  // every `sync: true` answer with it.
  db_opts.bytes_per_sync = 1u << 20;
  // One memory budget for the memtables of every column family (RAM holds a window of the
  // queue, not the queue): flushes start when the total reaches it.
  db_opts.write_buffer_manager = std::make_shared<rocksdb::WriteBufferManager>(64u << 20);
  if (listener) db_opts.listeners.push_back(std::move(listener));

  std::set<std::string> wanted;
  std::vector<rocksdb::ColumnFamilyDescriptor> descs;
  descs.emplace_back(rocksdb::kDefaultColumnFamilyName, BaseColumnFamilyOptions());
  wanted.insert(rocksdb::kDefaultColumnFamilyName);
  for (auto& [name, opts] : families) {
    descs.emplace_back(name, opts);
    wanted.insert(name);
  }
  std::vector<std::string> existing;
  if (rocksdb::DB::ListColumnFamilies(db_opts, path + "/db", &existing).ok()) {
    for (const auto& name : existing) {
      if (!wanted.count(name)) descs.emplace_back(name, BaseColumnFamilyOptions());
    }
  }

  // Names our CRC32C (crc32c.h), which also makes the linker take its override of RocksDB's.
  (void)crc32c::Implementation();
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(db_opts, path + "/db", descs, &handles, &raw);
  if (!s.ok()) {
    if (s.IsCorruption()) {
      return Corruption("store at " + path + " is corrupted (" + s.ToString() +
                        "); refusing to start. Restore it from a backup or move it aside.");
    }
    if (s.IsIOError() && s.ToString().find("lock") != std::string::npos) {
      return FailedPrecondition("store at " + path + " is in use by another process (" +
                                s.ToString() + ")");
    }
    return Unavailable("cannot open store at " + path + ": " + s.ToString());
  }
  auto db = std::unique_ptr<Database>(new Database());
  db->db_.reset(raw);
  for (size_t i = 0; i < handles.size(); ++i) db->handles_[descs[i].name] = handles[i];
  return db;
}

}  // namespace switchyard::storage
