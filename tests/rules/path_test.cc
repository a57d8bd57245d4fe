#include "rules/path.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace switchyard::rules {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// Parses `text`, expecting an error at `offset`; returns the message.
std::string ErrorOf(std::string_view text, size_t offset) {
  size_t error_offset = 9999;
  Result<Path> p = ParsePath(text, &error_offset);
  EXPECT_FALSE(p.ok()) << text;
  if (p.ok()) return "";
  EXPECT_EQ(p.status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(error_offset, offset) << text << ": " << p.status().message();
  return p.status().message();
}

TEST(PathTest, PayloadPathsSplitOnDots) {
  Result<Path> p = ParsePath("data.event.tags.0.1");
  ASSERT_TRUE(p.ok()) << p.status().ToString();
  EXPECT_EQ(p->root, Path::Root::kPayload);
  EXPECT_THAT(p->segments, ElementsAre("data", "event", "tags", "0", "1"));
  EXPECT_EQ(p->text, "data.event.tags.0.1");
  EXPECT_FALSE(p->NeedsIssue());

  Result<Path> single = ParsePath("action");
  ASSERT_TRUE(single.ok());
  EXPECT_THAT(single->segments, ElementsAre("action"));

  Result<Path> unusual = ParsePath("sentry:release.a-b_c~");
  ASSERT_TRUE(unusual.ok());
  EXPECT_THAT(unusual->segments, ElementsAre("sentry:release", "a-b_c~"));
}

TEST(PathTest, MetadataRoots) {
  struct Case {
    const char* text;
    Path::Root root;
  };
  for (const Case& c :
       {Case{"$source", Path::Root::kSource}, Case{"$resource", Path::Root::kResource},
        Case{"$action", Path::Root::kAction},
        Case{"$installation.org", Path::Root::kInstallationOrg}}) {
    Result<Path> p = ParsePath(c.text);
    ASSERT_TRUE(p.ok()) << c.text << ": " << p.status().ToString();
    EXPECT_EQ(p->root, c.root) << c.text;
    EXPECT_THAT(p->segments, IsEmpty()) << c.text;
    EXPECT_FALSE(p->NeedsIssue());
  }
}

TEST(PathTest, HeaderNameIsStoredLowerCase) {
  Result<Path> p = ParsePath("$header.Sentry-Hook-Resource");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->root, Path::Root::kHeader);
  EXPECT_THAT(p->segments, ElementsAre("sentry-hook-resource"));
  EXPECT_EQ(p->text, "$header.Sentry-Hook-Resource");
}

TEST(PathTest, IssuePathsNeedTheIssue) {
  Result<Path> p = ParsePath("$issue.assignedTo.name");
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p->root, Path::Root::kIssue);
  EXPECT_THAT(p->segments, ElementsAre("assignedTo", "name"));
  EXPECT_TRUE(p->NeedsIssue());
}

TEST(PathTest, RejectsEmptySegmentsAtTheOffendingDot) {
  EXPECT_THAT(ErrorOf("", 0), HasSubstr("empty path"));
  EXPECT_THAT(ErrorOf(".a", 0), HasSubstr("empty segment"));
  EXPECT_THAT(ErrorOf("a.", 1), HasSubstr("empty segment"));
  EXPECT_THAT(ErrorOf("a..b", 2), HasSubstr("empty segment"));
  EXPECT_THAT(ErrorOf("data.issue..title", 11), HasSubstr("empty segment"));
  EXPECT_THAT(ErrorOf("$issue.a..b", 9), HasSubstr("empty segment"));
}

TEST(PathTest, RejectsWhitespaceAndSyntaxCharacters) {
  EXPECT_THAT(ErrorOf("a b", 1), HasSubstr("whitespace"));
  EXPECT_THAT(ErrorOf(" a", 0), HasSubstr("whitespace"));
  EXPECT_THAT(ErrorOf("a\t", 1), HasSubstr("whitespace"));
  EXPECT_THAT(ErrorOf("data.x=y", 6), HasSubstr("'='"));
  EXPECT_THAT(ErrorOf("a|b", 1), HasSubstr("'|'"));
  EXPECT_THAT(ErrorOf("a}", 1), HasSubstr("'}'"));
  EXPECT_THAT(ErrorOf("$header.x y", 9), HasSubstr("whitespace"));
}

TEST(PathTest, RejectsUnknownMetadataRootsNamingTheValidOnes) {
  const std::string message = ErrorOf("$sauce", 1);
  EXPECT_THAT(message, HasSubstr("$sauce"));
  for (const char* root : {"$source", "$resource", "$action", "$header.<name>", "$installation.org",
                           "$issue.<path>"}) {
    EXPECT_THAT(message, HasSubstr(root));
  }
  ErrorOf("$", 1);
  ErrorOf("$Source", 1);  // roots are case-sensitive
}

TEST(PathTest, RejectsMalformedMetadataPaths) {
  EXPECT_THAT(ErrorOf("$source.x", 7), HasSubstr("no sub-path"));
  EXPECT_THAT(ErrorOf("$action.", 7), HasSubstr("no sub-path"));
  EXPECT_THAT(ErrorOf("$header", 7), HasSubstr("header name"));
  EXPECT_THAT(ErrorOf("$header.", 8), HasSubstr("ends early"));
  EXPECT_THAT(ErrorOf("$header.a.b", 9), HasSubstr("exactly one"));
  EXPECT_THAT(ErrorOf("$installation", 13), HasSubstr("$installation.org"));
  EXPECT_THAT(ErrorOf("$installation.uuid", 14), HasSubstr("$installation.org"));
  EXPECT_THAT(ErrorOf("$issue", 6), HasSubstr("$issue.title"));
}

TEST(PathTest, NullErrorOffsetIsAllowed) {
  EXPECT_FALSE(ParsePath("a..b").ok());
  EXPECT_FALSE(ParsePath("$nope").ok());
}

}  // namespace
}  // namespace switchyard::rules
