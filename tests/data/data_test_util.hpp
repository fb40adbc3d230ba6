#pragma once
// Helpers shared by the data tests: a private temporary directory, writers for raw and gzipped
// files, an IDX builder, and a check that an exception has the right type and names the file.

#include <catch2/catch.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <type_traits>
#include <vector>

#include <zlib.h>

#include <lepton/core/error.hpp>

namespace lepton_data_test {

namespace fs = std::filesystem;
using bytes = std::vector<unsigned char>;

/// A fresh directory under the system temp dir, removed with everything in it on destruction.
class temp_dir {
public:
  temp_dir() {
    std::random_device rd;
    auto stamp = static_cast<unsigned long long>(std::chrono::steady_clock::now().time_since_epoch().count());
    m_path = fs::temp_directory_path() / ("lepton-data-test-" + std::to_string(stamp) + "-" +
                                          std::to_string(rd()) + std::to_string(rd()));
    fs::create_directories(m_path);
  }
  temp_dir(temp_dir const&) = delete;
  temp_dir& operator=(temp_dir const&) = delete;
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(m_path, ec);
  }
  fs::path const& path() const { return m_path; }
  fs::path operator/(std::string const& name) const { return m_path / name; }

private:
  fs::path m_path;
};

inline void write_file(fs::path const& p, bytes const& b) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<char const*>(b.data()), static_cast<std::streamsize>(b.size()));
  REQUIRE(f.good());
}

inline void write_text(fs::path const& p, std::string const& s) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f << s;
  REQUIRE(f.good());
}

inline bytes read_file(fs::path const& p) {
  std::ifstream f(p, std::ios::binary);
  return bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
}

/// Writes `b` gzip-compressed with zlib's gz* API; `mode` "wb0" stores it uncompressed (fast, and as
/// large as the data: what a test needs to pass the reader's compression-ratio check).
inline void write_gz(fs::path const& p, bytes const& b, char const* mode = "wb") {
  gzFile g = gzopen(p.string().c_str(), mode);
  REQUIRE(g != nullptr);
  if (!b.empty())
    REQUIRE(gzwrite(g, b.data(), static_cast<unsigned>(b.size())) == static_cast<int>(b.size()));
  REQUIRE(gzclose(g) == Z_OK);
}

inline void put_be32(bytes& b, std::uint32_t v) {
  b.push_back(static_cast<unsigned char>(v >> 24));
  b.push_back(static_cast<unsigned char>(v >> 16));
  b.push_back(static_cast<unsigned char>(v >> 8));
  b.push_back(static_cast<unsigned char>(v));
}

/// Overwrites the ISIZE field (last 4 bytes, the uncompressed size mod 2^32) of a gzip file.
inline void forge_isize(bytes& gz, std::uint32_t v) {
  auto n = gz.size();
  for (int i = 0; i < 4; ++i)
    gz[n - 4 + static_cast<std::size_t>(i)] = static_cast<unsigned char>(v >> (8 * i));
}

/// An IDX header: magic (0, 0, type, ndims) and the dims.
inline bytes idx_header_bytes(unsigned char type, std::vector<std::uint32_t> const& dims) {
  bytes b{0, 0, type, static_cast<unsigned char>(dims.size())};
  for (auto d : dims) put_be32(b, d);
  return b;
}

/// A ubyte IDX file with the given dims and data (data.size() need not match, for hostile files).
inline bytes idx_u8(std::vector<std::uint32_t> const& dims, bytes const& data) {
  bytes b = idx_header_bytes(0x08, dims);
  b.insert(b.end(), data.begin(), data.end());
  return b;
}

/// n*rows*cols pixels with a recognisable pattern.
inline bytes pixels(std::size_t n, std::size_t rows = 28, std::size_t cols = 28) {
  bytes b(n * rows * cols);
  for (std::size_t i = 0; i < b.size(); ++i) b[i] = static_cast<unsigned char>((i * 7 + 3) % 256);
  return b;
}

} // namespace lepton_data_test

/// Checks that `expr` throws exactly `type` (or a subclass) and that what() contains `needle`
/// (usually the file path) and `detail` (what was wrong).
#define LEPTON_CHECK_THROWS_NAMING(expr, type, needle, detail)                                               \
  do {                                                                                                       \
    bool lepton_thrown_ = false;                                                                             \
    try {                                                                                                    \
      (void)(expr);                                                                                          \
    } catch (type const& e_) {                                                                               \
      lepton_thrown_ = true;                                                                                 \
      std::string what_ = e_.what();                                                                         \
      INFO("what(): " << what_);                                                                             \
      CHECK(what_.rfind("lepton: ", 0) == 0);                                                                \
      CHECK(what_.find(std::string(needle)) != std::string::npos);                                           \
      CHECK(what_.find(std::string(detail)) != std::string::npos);                                           \
      /* an io_error expected: not the format_error subclass */                                              \
      if constexpr (std::is_same_v<type, lepton::io_error>)                                                  \
        CHECK(dynamic_cast<lepton::format_error const*>(&e_) == nullptr);                                    \
    }                                                                                                        \
    CHECK(lepton_thrown_);                                                                                   \
  } while (false)
