#pragma once
// Helpers shared by the io tests: a scratch directory, whole-file reads and writes (plain, not atomic),
// and tensors filled with random bit patterns.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>
#include <vector>

#include <unistd.h>

#include <lepton/io.hpp>

namespace io_test {

namespace fs = std::filesystem;

/// A fresh directory under $TMPDIR (or /tmp), removed with everything in it at the end of the scope.
class scratch_dir {
public:
  scratch_dir() {
    char const* base = std::getenv("TMPDIR");
    std::string tmpl = std::string(base && *base ? base : "/tmp") + "/lepton-io-test-XXXXXX";
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    m_path = tmpl;
  }
  scratch_dir(scratch_dir const&) = delete;
  scratch_dir& operator=(scratch_dir const&) = delete;
  ~scratch_dir() {
    std::error_code ec;
    fs::remove_all(m_path, ec);
  }
  fs::path const& path() const { return m_path; }
  fs::path operator/(std::string const& name) const { return m_path / name; }

  /// Files whose name starts with `prefix`.
  std::size_t count_prefix(std::string const& prefix) const {
    std::size_t n = 0;
    for (auto const& e : fs::directory_iterator(m_path))
      if (e.path().filename().string().rfind(prefix, 0) == 0) ++n;
    return n;
  }
  std::size_t count_files() const {
    return static_cast<std::size_t>(std::distance(fs::directory_iterator(m_path), fs::directory_iterator{}));
  }

private:
  fs::path m_path;
};

inline std::vector<std::byte> read_bytes(fs::path const& p) {
  std::ifstream f(p, std::ios::binary);
  std::vector<char> c((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  std::vector<std::byte> out(c.size());
  if (!c.empty()) std::memcpy(out.data(), c.data(), c.size());
  return out;
}

inline void write_bytes(fs::path const& p, std::span<std::byte const> b) {
  // unlink first: ext4 flushes a file that is truncated and rewritten (auto_da_alloc), which is slow
  std::error_code ec;
  fs::remove(p, ec);
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f.write(reinterpret_cast<char const*>(b.data()), static_cast<std::streamsize>(b.size()));
}

inline void write_text(fs::path const& p, std::string const& s) {
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f << s;
}

inline std::vector<std::byte> to_bytes(std::string const& s) {
  std::vector<std::byte> out(s.size());
  if (!s.empty()) std::memcpy(out.data(), s.data(), s.size());
  return out;
}

/// A safetensors file from a header text (no padding added) and `data_bytes` bytes of data.
inline std::vector<std::byte> safetensors_blob(std::string const& header, std::size_t data_bytes,
                                               std::uint64_t claimed_len = ~std::uint64_t{0}) {
  std::uint64_t n = claimed_len == ~std::uint64_t{0} ? header.size() : claimed_len;
  std::vector<std::byte> out(8 + header.size() + data_bytes, std::byte{0});
  for (int i = 0; i < 8; ++i) out[static_cast<std::size_t>(i)] = std::byte((n >> (8 * i)) & 0xff);
  std::memcpy(out.data() + 8, header.data(), header.size());
  for (std::size_t i = 0; i < data_bytes; ++i) out[8 + header.size() + i] = std::byte(i * 37 & 0xff);
  return out;
}

/// Fills a tensor with random bits (floats then include NaNs, infinities, subnormals and -0).
template <class Tensor> void fill_random_bits(Tensor& t, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto* p = reinterpret_cast<unsigned char*>(t.data());
  std::size_t n = t.size() * sizeof(typename Tensor::value_type);
  for (std::size_t i = 0; i < n; ++i) p[i] = static_cast<unsigned char>(rng());
}

/// Bitwise equality of a typed tensor and a dyn_tensor.
template <class Tensor> bool same_bits(Tensor const& t, lepton::io::dyn_tensor const& d) {
  auto s = t.shape();
  if (d.type() != lepton::io::dtype_of<typename Tensor::value_type>) return false;
  if (std::vector<std::size_t>(s.begin(), s.end()) != d.shape()) return false;
  return t.size() == 0 || std::memcmp(t.data(), d.data(), d.nbytes()) == 0;
}

template <class A, class B> bool same_tensor_bits(A const& a, B const& b) {
  return a.shape() == b.shape() &&
         (a.size() == 0 || std::memcmp(a.data(), b.data(), a.size() * sizeof(*a.data())) == 0);
}

} // namespace io_test
