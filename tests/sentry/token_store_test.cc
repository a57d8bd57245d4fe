// The encrypted token store over the real RocksDB store, the token key file, AES-256-GCM, and
// the RFC 3339 parser the token exchange depends on.
#include "sentry/token_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <fstream>

#include "common/clock.h"
#include "common/crypto.h"
#include "common/time_format.h"
#include "storage/event_store.h"
#include "support/temp_dir.h"

namespace switchyard::sentry {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

Installation Sample(std::string uuid = "a8e5d37a-696c-4c54-adb5-b3f28d64c7de") {
  Installation in;
  in.source = "sentry";
  in.uuid = std::move(uuid);
  in.org = "test-org";
  in.access_token = "ec48bf98637d44c294ead7566513686237e74ab67a074c64b3aaca2d93dbb8f1";
  in.refresh_token = "c866f154a65841638d44ee26364409b0a1a67bd642bd46e7a476f34f810712d6";
  in.expires_at_ms = 1565238309870;
  in.status = InstallStatus::kInstalled;
  in.updated_at_ms = 1565209509870;
  return in;
}

class TokenStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    storage::StoreOptions options;
    options.path = dir_.path() + "/var";
    options.min_free_bytes = 0;
    auto store = storage::OpenStore(options, clock_);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(store).value();
    auto key = LoadOrCreateTokenKey(options.path);
    ASSERT_TRUE(key.ok()) << key.status().ToString();
    key_ = key.value();
  }

  testing::TempDir dir_;
  FakeClock clock_;
  std::unique_ptr<storage::Store> store_;
  std::string key_;
};

TEST_F(TokenStoreTest, RoundTripsEveryField) {
  auto tokens = NewEncryptedTokenStore(store_->Installations(), key_);
  ASSERT_TRUE(tokens->Put(Sample()).ok());
  auto all = tokens->LoadAll();
  ASSERT_TRUE(all.ok());
  ASSERT_EQ(all->size(), 1u);
  const Installation& got = all->at(0);
  const Installation want = Sample();
  EXPECT_EQ(got.source, want.source);
  EXPECT_EQ(got.uuid, want.uuid);
  EXPECT_EQ(got.org, want.org);
  EXPECT_EQ(got.access_token, want.access_token);
  EXPECT_EQ(got.refresh_token, want.refresh_token);
  EXPECT_EQ(got.expires_at_ms, want.expires_at_ms);
  EXPECT_EQ(got.status, want.status);
  EXPECT_EQ(got.updated_at_ms, want.updated_at_ms);
  ASSERT_TRUE(tokens->Delete("sentry", want.uuid).ok());
  EXPECT_TRUE(tokens->LoadAll()->empty());
}

TEST_F(TokenStoreTest, StoredBytesHoldNoTokenOrPartOfOne) {
  auto tokens = NewEncryptedTokenStore(store_->Installations(), key_);
  ASSERT_TRUE(tokens->Put(Sample()).ok());
  auto rows = store_->Installations().Scan("");
  ASSERT_TRUE(rows.ok());
  ASSERT_EQ(rows->size(), 1u);
  const std::string& sealed = rows->at(0).second;
  const Installation in = Sample();
  for (const std::string& secret : {in.access_token, in.refresh_token}) {
    EXPECT_EQ(sealed.find(secret.substr(0, 8)), std::string::npos);
    EXPECT_EQ(sealed.find(secret.substr(secret.size() - 8)), std::string::npos);
  }
  EXPECT_EQ(sealed.find("test-org"), std::string::npos);  // the org is sealed too
}

TEST_F(TokenStoreTest, AnotherKeyIsReportedAsCorruptionNeverSkipped) {
  auto tokens = NewEncryptedTokenStore(store_->Installations(), key_);
  ASSERT_TRUE(tokens->Put(Sample()).ok());
  auto other = NewEncryptedTokenStore(store_->Installations(), std::string(32, 'k'));
  auto all = other->LoadAll();
  ASSERT_FALSE(all.ok());
  EXPECT_EQ(all.status().code(), StatusCode::kCorruption);
  EXPECT_THAT(all.status().message(), HasSubstr("cannot be decrypted"));
}

TEST_F(TokenStoreTest, ARecordCopiedUnderAnotherInstallationFailsAuthentication) {
  auto tokens = NewEncryptedTokenStore(store_->Installations(), key_);
  ASSERT_TRUE(tokens->Put(Sample()).ok());
  auto rows = store_->Installations().Scan("");
  ASSERT_TRUE(rows.ok());
  std::string victim_key = std::string("sentry") + '\0' + "b9f6e48b-7a7d-4d5d-bec4-c4a3e75c389e";
  ASSERT_TRUE(store_->Installations().Put(victim_key, rows->at(0).second).ok());
  EXPECT_EQ(tokens->LoadAll().status().code(), StatusCode::kCorruption);
}

TEST(TokenKeyTest, IsCreatedOwnerOnlyAndReadBackUnchanged) {
  testing::TempDir dir;
  auto first = LoadOrCreateTokenKey(dir.path());
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->size(), 32u);
  struct stat st;
  ASSERT_EQ(::stat((dir.path() + "/token.key").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  auto second = LoadOrCreateTokenKey(dir.path());
  ASSERT_TRUE(second.ok());
  EXPECT_EQ(first.value(), second.value());
}

// A lost token.key is restored from the backup, not replaced: a new key cannot open the sealed
// records, and the operator would then have to delete it again before restoring the old one.
// The key is written under a temporary name and linked into place: no partial key file remains.
TEST(TokenKeyTest, AMissingKeyIsNotReplacedWhileSealedRecordsExist) {
  testing::TempDir dir;
  {  // a temporary key file a crash left behind is removed
    std::ofstream left(dir.path() + "/token.key.tmp-AbC123");
    left << "0123";
  }
  auto refused = LoadOrCreateTokenKey(dir.path(), /*sealed_records=*/2);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_THAT(refused.status().message(), HasSubstr("restore token.key"));
  struct stat st;
  EXPECT_NE(::stat((dir.path() + "/token.key").c_str(), &st), 0) << "no key was created";
  ASSERT_TRUE(LoadOrCreateTokenKey(dir.path(), 0).ok());
  size_t files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
    ++files;
    EXPECT_EQ(e.path().filename(), "token.key") << "a temporary file was left";
  }
  EXPECT_EQ(files, 1u);
  EXPECT_TRUE(LoadOrCreateTokenKey(dir.path(), 2).ok()) << "an existing key is used as before";
}

TEST(TokenKeyTest, AKeyReadableByGroupOrOthersIsRefused) {
  testing::TempDir dir;
  ASSERT_TRUE(LoadOrCreateTokenKey(dir.path()).ok());
  for (mode_t mode : {0640, 0604, 0660}) {
    ASSERT_EQ(::chmod((dir.path() + "/token.key").c_str(), mode), 0);
    auto key = LoadOrCreateTokenKey(dir.path());
    ASSERT_FALSE(key.ok());
    EXPECT_EQ(key.status().code(), StatusCode::kPermissionDenied);
    EXPECT_THAT(key.status().message(), HasSubstr("chmod 600"));
  }
}

TEST(TokenKeyTest, AMalformedKeyIsRefused) {
  testing::TempDir dir;
  const std::string path = dir.path() + "/token.key";
  for (const std::string& content : {std::string("short\n"), std::string(64, 'z') + "\n"}) {
    {
      std::ofstream out(path, std::ios::trunc);
      out << content;
    }
    ASSERT_EQ(::chmod(path.c_str(), 0600), 0);
    auto key = LoadOrCreateTokenKey(dir.path());
    ASSERT_FALSE(key.ok());
    EXPECT_EQ(key.status().code(), StatusCode::kCorruption);
    EXPECT_THAT(key.status().message(), Not(HasSubstr(content.substr(0, 5))));
  }
}

TEST(AeadTest, SealsWithAFreshNonceAndDetectsAnyChange) {
  const std::string key(32, '\x42');
  std::string a, b, plain;
  ASSERT_TRUE(crypto::AeadSeal(key, "secret token", "aad", &a));
  ASSERT_TRUE(crypto::AeadSeal(key, "secret token", "aad", &b));
  EXPECT_NE(a, b);  // random nonce
  ASSERT_TRUE(crypto::AeadOpen(key, a, "aad", &plain));
  EXPECT_EQ(plain, "secret token");
  EXPECT_FALSE(crypto::AeadOpen(key, a, "other aad", &plain));
  for (size_t i = 0; i < a.size(); ++i) {
    std::string tampered = a;
    tampered[i] ^= 1;
    EXPECT_FALSE(crypto::AeadOpen(key, tampered, "aad", &plain)) << "byte " << i;
  }
  EXPECT_FALSE(crypto::AeadOpen(std::string(32, '\x43'), a, "aad", &plain));
  EXPECT_FALSE(crypto::AeadSeal("short key", "x", "", &a));
  EXPECT_FALSE(crypto::AeadOpen(key, "too short", "", &plain));
}

TEST(Rfc3339Test, ParsesSentrysExpiresAtAndOffsets) {
  EXPECT_EQ(ParseRfc3339Millis("2019-08-08T04:25:09.870Z"), 1565238309870);
  EXPECT_EQ(ParseRfc3339Millis("2019-08-08T04:25:09Z"), 1565238309000);
  EXPECT_EQ(ParseRfc3339Millis("2019-08-08T04:25:09.870123Z"), 1565238309870);
  EXPECT_EQ(ParseRfc3339Millis("2019-08-08T06:25:09.870+02:00"), 1565238309870);
  EXPECT_EQ(ParseRfc3339Millis(FormatRfc3339Millis(1700000000123)), 1700000000123);
  for (const char* bad : {"", "2019-08-08", "2019-08-08T04:25:09", "2019-13-08T04:25:09Z",
                          "2019-08-08T04:25:09.Z", "2019-08-08T04:25:09Zjunk", "yesterday"}) {
    EXPECT_FALSE(ParseRfc3339Millis(bad).has_value()) << bad;
  }
}

}  // namespace
}  // namespace switchyard::sentry
