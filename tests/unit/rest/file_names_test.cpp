// Pure helpers of the file endpoints: names, media types, Content-Disposition, Range.
#include <gtest/gtest.h>

#include "file_names.hpp"

namespace im::rest {
namespace {

TEST(FileNames, KeepsOnlyTheLastComponentWithoutControls) {
    EXPECT_EQ(sanitize_file_name("report.pdf"), "report.pdf");
    EXPECT_EQ(sanitize_file_name("../../etc/passwd"), "passwd");
    EXPECT_EQ(sanitize_file_name("..\\..\\windows\\system.ini"), "system.ini");
    EXPECT_EQ(sanitize_file_name("/abs/path/"), "file");
    EXPECT_EQ(sanitize_file_name(".."), "file");
    EXPECT_EQ(sanitize_file_name("."), "file");
    EXPECT_EQ(sanitize_file_name("\r\n\t"), "file");
    EXPECT_EQ(sanitize_file_name("a\r\nSet-Cookie: x"), "aSet-Cookie: x");
    EXPECT_EQ(sanitize_file_name(std::string("nul\0byte", 8)), "nulbyte");
    EXPECT_EQ(sanitize_file_name("caf\xC3\xA9 \"q\".txt"), "caf\xC3\xA9 \"q\".txt");
    EXPECT_EQ(sanitize_file_name("x\xC2\x85y"), "xy");  // C1 control (NEL)
    EXPECT_EQ(sanitize_file_name("\xF0\x9F\x98\x80.png"), "\xF0\x9F\x98\x80.png");
    EXPECT_FALSE(sanitize_file_name("\xFF"));
    EXPECT_FALSE(sanitize_file_name("\xC0\xAF"));      // overlong '/'
    EXPECT_FALSE(sanitize_file_name("\xED\xA0\x80"));  // surrogate
    EXPECT_FALSE(sanitize_file_name(std::string(256, 'a')));
    EXPECT_EQ(sanitize_file_name(std::string(255, 'a')), std::string(255, 'a'));
}

TEST(FileNames, MediaTypes) {
    EXPECT_EQ(normalize_mime("Text/Plain; charset=utf-8"), "text/plain");
    EXPECT_EQ(normalize_mime("image/svg+xml"), "image/svg+xml");
    EXPECT_EQ(normalize_mime(""), "application/octet-stream");
    EXPECT_EQ(normalize_mime("text"), "application/octet-stream");
    EXPECT_EQ(normalize_mime("text/html\r\nX: y"), "application/octet-stream");
    EXPECT_EQ(normalize_mime("a/b/c"), "application/octet-stream");
    EXPECT_EQ(normalize_mime("/plain"), "application/octet-stream");
}

TEST(FileNames, ContentDisposition) {
    EXPECT_EQ(content_disposition("a.txt"),
              "attachment; filename=\"a.txt\"; filename*=UTF-8''a.txt");
    EXPECT_EQ(content_disposition("say \"hi\"\\.txt"),
              "attachment; filename=\"say _hi__.txt\"; filename*=UTF-8''say%20%22hi%22%5C.txt");
    EXPECT_EQ(content_disposition("\xC3\xA9"),
              "attachment; filename=\"__\"; filename*=UTF-8''%C3%A9");
    EXPECT_EQ(content_disposition("100%;x"),
              "attachment; filename=\"100_;x\"; filename*=UTF-8''100%25%3Bx");
}

TEST(FileNames, Ranges) {
    using K = ByteRange::Kind;
    auto r = parse_range("bytes=0-0", 10);
    EXPECT_EQ(r.kind, K::partial);
    EXPECT_EQ(r.first, 0u);
    EXPECT_EQ(r.length, 1u);
    r = parse_range("bytes=5-", 10);
    EXPECT_EQ(r.first, 5u);
    EXPECT_EQ(r.length, 5u);
    r = parse_range("bytes=-3", 10);
    EXPECT_EQ(r.first, 7u);
    EXPECT_EQ(r.length, 3u);
    r = parse_range("bytes=-30", 10);
    EXPECT_EQ(r.first, 0u);
    EXPECT_EQ(r.length, 10u);
    r = parse_range("bytes=2-100", 10);
    EXPECT_EQ(r.length, 8u);
    EXPECT_EQ(parse_range("bytes=10-", 10).kind, K::unsatisfiable);
    EXPECT_EQ(parse_range("bytes=-0", 10).kind, K::unsatisfiable);
    EXPECT_EQ(parse_range("bytes=0-", 0).kind, K::unsatisfiable);
    EXPECT_EQ(parse_range("bytes=5-2", 10).kind, K::whole);
    EXPECT_EQ(parse_range("bytes=0-1,3-4", 10).kind, K::whole);
    EXPECT_EQ(parse_range("items=0-1", 10).kind, K::whole);
    EXPECT_EQ(parse_range("bytes=x-1", 10).kind, K::whole);
    EXPECT_EQ(parse_range("bytes=99999999999999999999-", 10).kind, K::whole);
    EXPECT_EQ(parse_range("bytes=0-", 10).length, 10u);
}

}  // namespace
}  // namespace im::rest
