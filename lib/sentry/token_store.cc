#include "sentry/token_store.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "common/crypto.h"

namespace switchyard::sentry {
namespace {

constexpr char kKeyFile[] = "token.key";
constexpr size_t kKeyBytes = 32;
constexpr int kRecordVersion = 1;
constexpr size_t kTypicalRecordBytes = 1024;  // a sealed record with two Sentry tokens: ~400

std::string RecordKey(std::string_view source, std::string_view uuid) {
  std::string k(source);
  k.push_back('\0');
  k.append(uuid);
  return k;
}

std::optional<InstallStatus> ParseStatus(std::string_view s) {
  if (s == "pending") return InstallStatus::kPending;
  if (s == "installed") return InstallStatus::kInstalled;
  if (s == "needs_reinstall") return InstallStatus::kNeedsReinstall;
  return std::nullopt;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

Status WriteNewKey(const std::string& path) {
  uint8_t raw[kKeyBytes];
  if (!crypto::RandomBytes(raw, sizeof raw)) return Internal("no randomness for the token key");
  std::string hex = crypto::HexLower(raw, sizeof raw) + "\n";
  // Written whole under a temporary name, then linked into place: a crash while writing leaves
  // no empty or partial token.key (which would stop every later start).
  std::string tmp = path + ".tmp-XXXXXX";
  int fd = ::mkostemp(tmp.data(), O_CLOEXEC);  // mode 0600
  if (fd < 0) {
    return Unavailable("cannot create " + path + ": " + std::strerror(errno));
  }
  bool ok = ::write(fd, hex.data(), hex.size()) == static_cast<ssize_t>(hex.size()) &&
            ::fsync(fd) == 0;
  ::close(fd);
  std::fill(hex.begin(), hex.end(), '\0');
  // link(), not rename(): a key another process created meanwhile is kept (EEXIST), not replaced.
  // File systems without hard links (vfat, some FUSE and SMB mounts) get a rename that never
  // replaces (RENAME_NOREPLACE), and where that is missing too, a rename.
  int placed = ok ? ::link(tmp.c_str(), path.c_str()) : -1;
  int place_errno = errno;
  const auto unsupported = [](int e) {
    return e == EPERM || e == ENOTSUP || e == EOPNOTSUPP || e == ENOSYS || e == EINVAL;
  };
  if (ok && placed != 0 && unsupported(place_errno)) {
    placed = ::renameat2(AT_FDCWD, tmp.c_str(), AT_FDCWD, path.c_str(), RENAME_NOREPLACE);
    place_errno = errno;
    if (placed != 0 && unsupported(place_errno)) {
      struct stat existing;
      placed = ::stat(path.c_str(), &existing) == 0 ? -1 : ::rename(tmp.c_str(), path.c_str());
      place_errno = placed == 0 ? 0 : (errno == 0 ? EEXIST : errno);
    }
  }
  ::unlink(tmp.c_str());  // gone already if renamed
  if (!ok) return Unavailable("cannot write " + path);
  if (placed != 0 && place_errno != EEXIST) {
    return Unavailable("cannot create " + path + ": " + std::strerror(place_errno));
  }
  // Make the new directory entry durable too.
  int dfd = ::open(std::filesystem::path(path).parent_path().c_str(), O_RDONLY | O_DIRECTORY);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return Status::Ok();
}

class EncryptedTokenStore final : public TokenStore {
 public:
  EncryptedTokenStore(storage::KvTable& table, std::string key)
      : table_(table), key_(std::move(key)) {}
  ~EncryptedTokenStore() override { std::fill(key_.begin(), key_.end(), '\0'); }

  Status Put(const Installation& in) override {
    boost::json::object o;
    o["v"] = kRecordVersion;
    o["org"] = in.org;
    o["access"] = in.access_token;
    o["refresh"] = in.refresh_token;
    o["expires_at_ms"] = in.expires_at_ms;
    o["status"] = std::string(InstallStatusName(in.status));
    o["updated_at_ms"] = in.updated_at_ms;
    if (in.manual_refresh_at_ms != 0) o["manual_refresh_at_ms"] = in.manual_refresh_at_ms;
    std::string plain = boost::json::serialize(o);
    const std::string key = RecordKey(in.source, in.uuid);
    std::string sealed;
    bool ok = crypto::AeadSeal(key_, plain, key, &sealed);
    std::fill(plain.begin(), plain.end(), '\0');
    if (!ok) return Internal("sealing the token record failed");
    return table_.Put(key, sealed);
  }

  Status Delete(std::string_view source, std::string_view uuid) override {
    return table_.Delete(RecordKey(source, uuid));
  }

  Status Room() override { return table_.Room(kTypicalRecordBytes); }

  Result<std::vector<Installation>> LoadAll() override {
    auto rows = table_.Scan("");
    if (!rows.ok()) return rows.status();
    std::vector<Installation> out;
    for (const auto& [key, sealed] : rows.value()) {
      size_t nul = key.find('\0');
      if (nul == std::string::npos) return Corruption("installation record with a malformed key");
      Installation in;
      in.source = key.substr(0, nul);
      in.uuid = key.substr(nul + 1);
      std::string plain;
      if (!crypto::AeadOpen(key_, sealed, key, &plain)) {
        return Corruption("installation " + in.uuid + " (source " + in.source +
                          ") cannot be decrypted: token.key does not match the store, or the "
                          "record was altered");
      }
      boost::system::error_code ec;
      boost::json::value v = boost::json::parse(plain, ec);
      std::fill(plain.begin(), plain.end(), '\0');
      const boost::json::object* o = v.if_object();
      if (ec || !o) return Corruption("installation " + in.uuid + ": malformed record");
      auto str = [&](const char* name) -> std::string {
        const boost::json::value* f = o->if_contains(name);
        return f && f->is_string() ? std::string(f->get_string()) : std::string();
      };
      auto num = [&](const char* name) -> int64_t {
        const boost::json::value* f = o->if_contains(name);
        return f && f->is_int64() ? f->get_int64() : 0;
      };
      in.org = str("org");
      in.access_token = str("access");
      in.refresh_token = str("refresh");
      in.expires_at_ms = num("expires_at_ms");
      in.updated_at_ms = num("updated_at_ms");
      in.manual_refresh_at_ms = num("manual_refresh_at_ms");
      auto status = ParseStatus(str("status"));
      if (!status) return Corruption("installation " + in.uuid + ": unknown status");
      in.status = *status;
      out.push_back(std::move(in));
    }
    return out;
  }

 private:
  storage::KvTable& table_;
  std::string key_;
};

}  // namespace

std::string_view InstallStatusName(InstallStatus s) {
  switch (s) {
    case InstallStatus::kPending:
      return "pending";
    case InstallStatus::kInstalled:
      return "installed";
    case InstallStatus::kNeedsReinstall:
      return "needs_reinstall";
  }
  return "pending";
}

Result<std::string> LoadOrCreateTokenKey(const std::string& dir, size_t sealed_records) {
  const std::string path = (std::filesystem::path(dir) / kKeyFile).string();
  struct stat st;
  if (::stat(path.c_str(), &st) != 0) {
    if (errno != ENOENT) return Unavailable("cannot stat " + path + ": " + std::strerror(errno));
    // Temporary key files a crash left behind (each holds key material): removed first.
    std::error_code ec;
    for (auto it = std::filesystem::directory_iterator(dir, ec);
         !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
      if (it->path().filename().string().starts_with(std::string(kKeyFile) + ".tmp-")) {
        std::filesystem::remove(it->path(), ec);
      }
    }
    if (sealed_records > 0) {
      return FailedPrecondition(
          path + " is missing, and the store holds " + std::to_string(sealed_records) +
          " installation record(s) sealed with it: restore token.key from the backup taken "
          "with the store (a new key could not open them)");
    }
    if (Status s = WriteNewKey(path); !s.ok()) return s;
    if (::stat(path.c_str(), &st) != 0) return Unavailable("cannot stat " + path);
  }
  if (!S_ISREG(st.st_mode)) return FailedPrecondition(path + " is not a regular file");
  if ((st.st_mode & 077) != 0) {
    char mode[8];
    snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
    return PermissionDenied(path + " has mode " + mode +
                            ": group and others must have no access (chmod 600 " + path + ")");
  }
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return Unavailable("cannot open " + path + ": " + std::strerror(errno));
  char buf[130];
  ssize_t n = ::read(fd, buf, sizeof buf);
  ::close(fd);
  if (n < 0) return Unavailable("cannot read " + path);
  std::string_view text(buf, static_cast<size_t>(n));
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.remove_suffix(1);
  if (text.size() != 2 * kKeyBytes) {
    std::fill(buf, buf + sizeof buf, '\0');
    return Corruption(path + " must hold 64 hex characters (a 32-byte key)");
  }
  std::string key(kKeyBytes, '\0');
  for (size_t i = 0; i < kKeyBytes; ++i) {
    int hi = HexValue(text[2 * i]), lo = HexValue(text[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      std::fill(buf, buf + sizeof buf, '\0');
      return Corruption(path + " must hold 64 hex characters (a 32-byte key)");
    }
    key[i] = static_cast<char>(hi * 16 + lo);
  }
  std::fill(buf, buf + sizeof buf, '\0');
  return key;
}

std::unique_ptr<TokenStore> NewEncryptedTokenStore(storage::KvTable& table, std::string key) {
  return std::make_unique<EncryptedTokenStore>(table, std::move(key));
}

}  // namespace switchyard::sentry
