// IDX reader: valid files of every element type, raw and gzipped, and hostile files that must raise
// the right exception naming the file, without crashing or allocating what the header claims.

#include <catch2/catch.hpp>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include <lepton/data/idx.hpp>

#include "data_test_util.hpp"

using namespace lepton_data_test;
namespace ld = lepton::data;

TEST_CASE("read_idx reads raw and gzipped ubyte files", "[data][idx]") {
  temp_dir dir;
  bytes data = pixels(3, 2, 2);
  bytes file = idx_u8({3, 2, 2}, data);
  write_file(dir / "a.idx", file);
  write_gz(dir / "a.idx.gz", file);
  for (auto name : {"a.idx", "a.idx.gz"}) {
    INFO(name);
    auto f = ld::read_idx(dir / name);
    CHECK(f.header.type == ld::idx_type::u8);
    CHECK(f.header.dims == std::vector<std::size_t>{3, 2, 2});
    CHECK(f.header.dims_string() == "3x2x2");
    CHECK(f.header.count() == 12);
    CHECK(f.header.header_bytes() == 16);
    CHECK(f.bytes == std::vector<std::uint8_t>(data.begin(), data.end()));
    CHECK(f.path == dir / name);
    auto v = f.values<int>();
    CHECK(v[5] == data[5]);

    auto t = ld::read_idx_tensor<float, lepton::dyn, 2, 2>(dir / name);
    CHECK(t.shape() == lepton::shape_t<3>{3, 2, 2});
    CHECK(t(2, 1, 1) == static_cast<float>(data[11]));
  }
}

TEST_CASE("read_idx decodes every element type big-endian", "[data][idx]") {
  temp_dir dir;
  SECTION("signed byte") {
    bytes b = idx_header_bytes(0x09, {3});
    b.insert(b.end(), {0x00, 0x7F, 0x80});
    write_file(dir / "i8", b);
    CHECK(ld::read_idx(dir / "i8").values<int>() == std::vector<int>{0, 127, -128});
  }
  SECTION("short") {
    bytes b = idx_header_bytes(0x0B, {2});
    b.insert(b.end(), {0x01, 0x02, 0xFF, 0xFE});
    write_file(dir / "i16", b);
    CHECK(ld::read_idx(dir / "i16").values<int>() == std::vector<int>{258, -2});
  }
  SECTION("int") {
    bytes b = idx_header_bytes(0x0C, {1, 2});
    put_be32(b, 70000);
    put_be32(b, static_cast<std::uint32_t>(-5));
    write_file(dir / "i32", b);
    auto f = ld::read_idx(dir / "i32");
    CHECK(f.header.element_size() == 4);
    CHECK(f.values<long>() == std::vector<long>{70000, -5});
  }
  SECTION("float") {
    bytes b = idx_header_bytes(0x0D, {2});
    put_be32(b, std::bit_cast<std::uint32_t>(1.5f));
    put_be32(b, std::bit_cast<std::uint32_t>(-0.25f));
    write_gz(dir / "f32.gz", b);
    CHECK(ld::read_idx(dir / "f32.gz").values<float>() == std::vector<float>{1.5f, -0.25f});
  }
  SECTION("double") {
    bytes b = idx_header_bytes(0x0E, {1});
    auto bits = std::bit_cast<std::uint64_t>(3.25);
    put_be32(b, static_cast<std::uint32_t>(bits >> 32));
    put_be32(b, static_cast<std::uint32_t>(bits));
    write_file(dir / "f64", b);
    CHECK(ld::read_idx(dir / "f64").values<double>() == std::vector<double>{3.25});
    CHECK(ld::read_idx(dir / "f64").values<int>() == std::vector<int>{3});
  }
  SECTION("a NaN float decoded to an integer type is a format_error, not undefined behaviour") {
    bytes b = idx_header_bytes(0x0D, {1});
    put_be32(b, 0x7FC00000u);
    auto p = dir / "nan";
    write_file(p, b);
    auto f = ld::read_idx(p);
    LEPTON_CHECK_THROWS_NAMING(f.values<int>(), lepton::format_error, p.string(), "element 0");
    CHECK(std::isnan(f.values<float>()[0]));
  }
  SECTION("zero-sized dimensions are valid") {
    write_file(dir / "empty", idx_u8({0, 28, 28}, {}));
    auto f = ld::read_idx(dir / "empty");
    CHECK(f.header.count() == 0);
    CHECK(f.bytes.empty());
  }
}

TEST_CASE("read_idx_tensor checks rank and static dims", "[data][idx]") {
  temp_dir dir;
  auto p = dir / "x.idx";
  write_file(p, idx_u8({2, 3}, pixels(2, 3, 1)));
  CHECK(ld::read_idx_tensor<int, lepton::dyn, 3>(p).shape() == lepton::shape_t<2>{2, 3});
  LEPTON_CHECK_THROWS_NAMING((ld::read_idx_tensor<int, lepton::dyn, 4>(p)), lepton::format_error, p.string(),
                             "expected (dyn, 4), the file holds 2x3");
  LEPTON_CHECK_THROWS_NAMING((ld::read_idx_tensor<int, lepton::dyn>(p)), lepton::format_error, p.string(),
                             "unexpected dims");
}

TEST_CASE("read_idx: missing files and directories are io_errors naming the path", "[data][idx]") {
  temp_dir dir;
  auto missing = dir / "nope-idx3-ubyte.gz";
  LEPTON_CHECK_THROWS_NAMING(ld::read_idx(missing), lepton::io_error, missing.string(),
                             "No such file or directory");
  fs::create_directory(dir / "adir");
  LEPTON_CHECK_THROWS_NAMING(ld::read_idx(dir / "adir"), lepton::io_error, (dir / "adir").string(),
                             "is a directory");
  // io's file reader (P12): a device is refused after fstat, without reading from it
  LEPTON_CHECK_THROWS_NAMING(ld::read_idx("/dev/zero"), lepton::io_error, "/dev/zero",
                             "not a regular file (a device, FIFO or socket)");
}

TEST_CASE("read_idx rejects hostile raw headers", "[data][idx]") {
  temp_dir dir;
  auto p = dir / "hostile-idx";
  auto expect = [&](bytes const& b, std::string const& what) {
    write_file(p, b);
    LEPTON_CHECK_THROWS_NAMING(ld::read_idx(p), lepton::format_error, p.string(), what);
  };
  expect({0x01, 0x00, 0x08, 0x01, 0, 0, 0, 0}, "wrong magic");
  expect({0x00, 0x01, 0x08, 0x01, 0, 0, 0, 0}, "wrong magic");
  expect(idx_header_bytes(0x07, {1}), "bad element type 0x07");
  expect(idx_header_bytes(0x0A, {1}), "bad element type 0x0A");
  expect(idx_header_bytes(0xFF, {1}), "bad element type 0xFF");
  expect({0x00, 0x00, 0x08, 0x00}, "0 dimensions");
  expect({0x00, 0x00, 0x08, 0xFF, 1, 2, 3, 4}, "255 dimensions");
  expect(idx_header_bytes(0x08, {1, 1, 1, 1, 1, 1, 1}), "7 dimensions");
  // The element count overflows 64 bits.
  expect(idx_header_bytes(0x08, {0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu}), "overflow");
  expect(idx_header_bytes(0x0E, {0xFFFFFFFFu, 0xFFFFFFFFu}), "overflow");
  // Huge but representable: compared with the file size before any allocation.
  expect(idx_header_bytes(0x08, {0xFFFFFFFFu, 0xFFFFFFFFu}),
         "truncated: header says 4294967295x4294967295 = ");
  expect(idx_u8({0xFFFFFFFFu}, {1, 2, 3}),
         "truncated: header says 4294967295 = 4294967295 bytes of data, file has 3");
  expect(idx_u8({60000, 28, 28}, bytes(1000)),
         "truncated: header says 60000x28x28 = 47040000 bytes of data, file has 1000");
  // Extra trailing bytes.
  expect(idx_u8({2, 2}, {1, 2, 3, 4, 5}), "extra bytes: header says 2x2 = 4 bytes of data, file has 5");
  // The max_bytes cap.
  write_file(p, idx_u8({2, 2}, {1, 2, 3, 4}));
  LEPTON_CHECK_THROWS_NAMING(ld::read_idx(p, {.max_bytes = 3}), lepton::format_error, p.string(),
                             "max_bytes");
  CHECK_NOTHROW(ld::read_idx(p, {.max_bytes = 4}));
}

TEST_CASE("read_idx rejects a raw file truncated at every offset", "[data][idx]") {
  temp_dir dir;
  auto p = dir / "cut-idx3-ubyte";
  bytes full = idx_u8({2, 3, 3}, pixels(2, 3, 3));
  for (std::size_t len = 0; len < full.size(); ++len) {
    INFO("length " << len);
    write_file(p, bytes(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(len)));
    LEPTON_CHECK_THROWS_NAMING(ld::read_idx(p), lepton::format_error, p.string(), "truncated");
  }
}

TEST_CASE("read_idx rejects hostile gzip files", "[data][idx]") {
  temp_dir dir;
  auto p = dir / "hostile-idx.gz";
  auto expect_gz = [&](bytes const& content, std::string const& what) {
    write_gz(p, content);
    LEPTON_CHECK_THROWS_NAMING(ld::read_idx(p), lepton::format_error, p.string(), what);
  };
  expect_gz({0x12, 0x34, 0x08, 0x01, 0, 0, 0, 1, 0},
            "wrong magic: an IDX file starts with two zero bytes, this one with 0x12 0x34");
  expect_gz(idx_header_bytes(0x0F, {1}), "bad element type 0x0F");
  expect_gz({0x00, 0x00, 0x08, 0x00, 1, 2, 3}, "0 dimensions");
  expect_gz({0x00, 0x00, 0x08, 0xFF, 1, 2, 3, 4}, "255 dimensions");
  expect_gz(idx_header_bytes(0x08, {0xFFFFFFFFu, 0xFFFFFFFFu, 0xFFFFFFFFu}), "overflow");
  expect_gz({}, "truncated");
  expect_gz({0x00, 0x00}, "truncated");
  expect_gz({0x00, 0x00, 0x08, 0x03, 0, 0, 0, 2}, "truncated");
  // Header claims more data than the stream holds: caught by the trailer size before allocating.
  expect_gz(idx_u8({60000, 28, 28}, bytes(1000)),
            "truncated: header says 60000x28x28 = 47040000 bytes of data");
  expect_gz(idx_u8({0xFFFFFFFFu, 0xFFFFFFFFu}, bytes(10)), "truncated");
  // More decompressed data than the header says.
  expect_gz(
      idx_u8({2, 2}, {1, 2, 3, 4, 5}),
      "extra bytes: header says 2x2 = 4 bytes of data (16 with the header), but the gzip trailer says the "
      "file decompresses to 17 bytes");
  expect_gz(idx_u8({2, 2}, {1, 2, 3}), "truncated: header says 2x2 = 4 bytes of data (16 with the header)");
  expect_gz(idx_u8({0xFFFFFFFFu, 0xFFFFFFFFu}, bytes(10)), "more than a ");

  SECTION("a too-small gzip file") {
    write_file(p, {0x1f, 0x8b, 8, 0});
    LEPTON_CHECK_THROWS_NAMING(ld::read_idx(p), lepton::format_error, p.string(), "at least 18 bytes");
  }
  SECTION("the max_bytes cap applies to gzip files") {
    write_gz(p, idx_u8({4, 4}, pixels(1, 4, 4)));
    LEPTON_CHECK_THROWS_NAMING(ld::read_idx(p, {.max_bytes = 15}), lepton::format_error, p.string(),
                               "max_bytes");
  }
}

TEST_CASE("read_idx checks gzip data during inflation, not only against the trailer", "[data][idx]") {
  temp_dir dir;
  auto src = dir / "src.gz";
  auto p = dir / "forged.gz";

  SECTION("truncated compressed stream, at many offsets") {
    write_gz(src, idx_u8({50, 28, 28}, pixels(50)));
    bytes full = read_file(src);
    for (std::size_t len : {std::size_t{0}, std::size_t{1}, std::size_t{2}, std::size_t{10}, std::size_t{17},
                            std::size_t{18}, std::size_t{30}, full.size() / 2, full.size() - 9,
                            full.size() - 8, full.size() - 4, full.size() - 1}) {
      INFO("length " << len << " of " << full.size());
      write_file(p, bytes(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(len)));
      LEPTON_CHECK_THROWS_NAMING(ld::read_idx(p), lepton::format_error, p.string(), "");
    }
  }
  SECTION("a cut-off stream whose fake trailer has the right size") {
    bytes content = idx_u8({50, 28, 28}, pixels(50));
    write_gz(src, content);
    bytes gz = read_file(src);
    gz.resize(gz.size() / 2);
    gz.insert(gz.end(), 8, 0);
    forge_isize(gz, static_cast<std::uint32_t>(content.size()));
    write_file(p, gz);
    LEPTON_CHECK_THROWS_NAMING(ld::read_idx(p), lepton::format_error, p.string(), "");
  }
  SECTION("longer data with a forged trailer size") {
    write_gz(src, idx_u8({2, 2}, {1, 2, 3, 4, 5, 6}));
    bytes gz = read_file(src);
    forge_isize(gz, 12 + 4);
    write_file(p, gz);
    LEPTON_CHECK_THROWS_NAMING(ld::read_idx(p), lepton::format_error, p.string(), "extra bytes");
  }
  SECTION("shorter data with a forged trailer size") {
    write_gz(src, idx_u8({2, 2}, {1, 2, 3}));
    bytes gz = read_file(src);
    forge_isize(gz, 12 + 4);
    write_file(p, gz);
    LEPTON_CHECK_THROWS_NAMING(ld::read_idx(p), lepton::format_error, p.string(), "");
  }
  SECTION("a header claiming 4 GiB with a matching forged trailer is refused without allocating") {
    // 65536 x 65536 bytes + 12 header bytes = 12 (mod 2^32).
    write_gz(src, idx_u8({65536, 65536}, {}));
    bytes gz = read_file(src);
    forge_isize(gz, 12);
    write_file(p, gz);
    LEPTON_CHECK_THROWS_NAMING(ld::read_idx(p, {.max_bytes = ~std::uint64_t{0}}), lepton::format_error,
                               p.string(), "-byte gzip file can hold");
  }
  SECTION("trailing garbage after the gzip stream") {
    write_gz(src, idx_u8({2, 2}, {1, 2, 3, 4}));
    bytes gz = read_file(src);
    gz.insert(gz.end(), {'j', 'u', 'n', 'k'});
    write_file(p, gz);
    // The trailer is now "junk": the size check or the trailing-bytes check catches it.
    LEPTON_CHECK_THROWS_NAMING(ld::read_idx(p), lepton::format_error, p.string(), "");
    gz.resize(gz.size() - 4);
    bytes tail = gz; // a second member whose size field repeats the first's
    gz.insert(gz.end(), tail.begin(), tail.end());
    write_file(p, gz);
    LEPTON_CHECK_THROWS_NAMING(ld::read_idx(p), lepton::format_error, p.string(), "extra bytes");
  }
  SECTION("trailing bytes after a stream whose sizes agree") {
    write_gz(src, idx_u8({2, 2}, {1, 2, 3, 4}));
    bytes gz = read_file(src);
    bytes trailer(gz.end() - 8, gz.end());
    gz.insert(gz.end(), trailer.begin(), trailer.end()); // ends with the same ISIZE
    write_file(p, gz);
    LEPTON_CHECK_THROWS_NAMING(ld::read_idx(p), lepton::format_error, p.string(), "8 bytes follow the end");
  }
  SECTION("a second gzip member right after a 64 KiB chunk of compressed input is named as such") {
    // The first member fills the inflater's first 64 KiB chunk exactly, so the second one's magic
    // is not in the buffer when the first ends: it is read from the file (issue P12).
    bytes gz;
    for (std::uint32_t n = 65536 - 200; n < 65536 && gz.size() != 65536; ++n) {
      write_gz(src, idx_u8({n}, bytes(n, 1)), "wb0");
      gz = read_file(src);
    }
    REQUIRE(gz.size() == 65536);
    bytes second = gz; // the same member again: the size trailer still matches the header
    gz.insert(gz.end(), second.begin(), second.end());
    write_file(p, gz);
    LEPTON_CHECK_THROWS_NAMING(ld::read_idx(p), lepton::format_error, p.string(),
                               "65536 bytes follow the end of the gzip stream (a second gzip member");
  }
  SECTION("corrupt deflate data") {
    write_gz(src, idx_u8({50, 28, 28}, pixels(50)));
    bytes gz = read_file(src);
    for (std::size_t i = 20; i < 40; ++i) gz[i] ^= 0x5A;
    write_file(p, gz);
    LEPTON_CHECK_THROWS_NAMING(ld::read_idx(p), lepton::format_error, p.string(), "");
  }
}

TEST_CASE("read_idx: idx_options::max_decompressed_bytes caps what a gzip file may inflate to",
          "[data][idx]") {
  temp_dir dir;
  auto p = dir / "capped-idx.gz";
  bytes content = idx_u8({16, 16}, pixels(1, 16, 16)); // 12 + 256 = 268 bytes decompressed
  write_gz(p, content);
  LEPTON_CHECK_THROWS_NAMING(ld::read_idx(p, {.max_decompressed_bytes = 267}), lepton::format_error,
                             p.string(),
                             "16x16 = 256 bytes of data (268 with the header), more than "
                             "idx_options::max_decompressed_bytes = 267");
  CHECK(ld::read_idx(p, {.max_decompressed_bytes = 268}).bytes.size() == 256);
  CHECK(ld::read_idx(p).bytes == std::vector<std::uint8_t>(content.begin() + 12, content.end()));
  // The cap is about inflating: a raw file's size is checked exactly, and max_bytes caps its data.
  write_file(dir / "raw-idx", content);
  CHECK(ld::read_idx(dir / "raw-idx", {.max_decompressed_bytes = 1}).bytes.size() == 256);
  // A file larger than the first chunk of the growing buffer (1 MiB) reads back intact.
  bytes big = idx_u8({3000, 28, 28}, pixels(3000)); // 2352000 bytes of data
  write_gz(dir / "big-idx.gz", big);
  auto f = ld::read_idx(dir / "big-idx.gz");
  REQUIRE(f.bytes.size() == big.size() - 16);
  CHECK(std::equal(f.bytes.begin(), f.bytes.end(), big.begin() + 16));
}

TEST_CASE("read_idx survives random corruption of raw and gzipped files", "[data][idx]") {
  temp_dir dir;
  bytes content = idx_u8({20, 5, 5}, pixels(20, 5, 5));
  write_gz(dir / "base.gz", content);
  bytes gz = read_file(dir / "base.gz");
  std::mt19937_64 rng(7);
  auto p = dir / "mutant";
  std::size_t accepted = 0;
  for (int iter = 0; iter < 400; ++iter) {
    bytes b = iter % 2 ? gz : content;
    int flips = 1 + static_cast<int>(rng() % 4);
    for (int k = 0; k < flips; ++k) b[rng() % b.size()] = static_cast<unsigned char>(rng());
    if (rng() % 4 == 0) b.resize(rng() % b.size());
    write_file(p, b);
    try {
      auto f = ld::read_idx(p, {.max_bytes = 1 << 20});
      CHECK(f.bytes.size() == f.header.data_bytes()); // a mutation in the pixels is undetectable in raw files
      ++accepted;
    } catch (lepton::format_error const& e) {
      CHECK(std::string(e.what()).find(p.string()) != std::string::npos);
    }
  }
  CHECK(accepted < 400);
}
