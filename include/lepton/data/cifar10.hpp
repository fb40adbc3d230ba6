#pragma once
/// @file cifar10.hpp
/// @brief Reader for the CIFAR-10 binary format: 32x32 colour images (NCHW) and labels 0..9.
///
/// A CIFAR-10 binary file is a sequence of 3073-byte records: one label byte (0..9), then 3072
/// pixel bytes: the 1024 red values of the 32x32 image in row-major order, then the 1024 green and
/// the 1024 blue ones, which is exactly one (3, 32, 32) NCHW sample. The distribution
/// (`cifar-10-binary.tar.gz`) unpacks to `cifar-10-batches-bin/` with `data_batch_1.bin` ...
/// `data_batch_5.bin` (10000 records each) and `test_batch.bin`.
///
/// Every file is validated before anything is allocated: its size must be a non-zero multiple of
/// 3073 bytes (and below `cifar10_options::max_bytes`), and every label must be in 0..9. Errors
/// throw lepton::io_error / lepton::format_error naming the file, like the IDX reader's.

#include <algorithm>
#include <array>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "../io/reader.hpp"
#include "dataset.hpp"
#include "fashion_mnist.hpp"

namespace lepton::data {

/// @brief CIFAR-10 images: (n, 3, 32, 32) floats, channels red, green, blue.
using cifar10_images = tensor<float, dyn, 3, 32, 32>;
/// @brief CIFAR-10 labels: (n) integers in 0..9.
using cifar10_labels = tensor<std::int32_t, dyn>;
/// @brief The dataset type cifar10() returns.
using cifar10_dataset = dataset<cifar10_images, cifar10_labels>;

/// Per-channel mean and standard deviation of the CIFAR-10 training pixels scaled to [0, 1].
inline constexpr std::array<float, 3> cifar10_mean{0.4914f, 0.4822f, 0.4465f};
inline constexpr std::array<float, 3> cifar10_stddev{0.2470f, 0.2435f, 0.2616f};

/// Bytes of one record: 1 label byte and 3 x 32 x 32 pixel bytes.
inline constexpr std::size_t cifar10_record_bytes = 3073;

/// @brief Options of cifar10() and read_cifar10_file().
///
/// **Example**: `auto d = lepton::data::cifar10(dir, lepton::data::split::train, {.normalize = true});`
struct cifar10_options {
  /// After scaling to [0, 1], map each pixel of channel c to (x - mean[c]) / stddev[c].
  bool normalize = false;
  /// Override the statistics used by `normalize` (default: cifar10_mean and cifar10_stddev).
  std::optional<std::array<float, 3>> mean{};
  std::optional<std::array<float, 3>> stddev{};
  /// Read at most this many samples in total (0 = all), for quick experiments.
  std::size_t max_samples = 0;
  /// Largest file, in bytes, the reader agrees to read (default 1 GiB; a real batch is 30 MB).
  std::uint64_t max_bytes = std::uint64_t{1} << 30;
};

namespace detail {

/// "lepton: <file>: <reason>" as a format_error or an io_error.
using io::detail::format_fail;
using io::detail::io_fail;

/// Checks a CIFAR-10 file's size; returns its number of records.
inline std::size_t cifar10_records(std::string const& p, std::uint64_t size, cifar10_options const& opt) {
  if (size == 0) format_fail(p, "empty file (a CIFAR-10 binary file holds 3073-byte records)");
  if (size % cifar10_record_bytes != 0)
    format_fail(p, "size " + std::to_string(size) +
                       " bytes is not a multiple of the 3073-byte CIFAR-10 record "
                       "(1 label byte + 3072 pixel bytes); the file is truncated or not CIFAR-10 binary");
  if (size > opt.max_bytes)
    format_fail(p, "too large: " + std::to_string(size) +
                       " bytes, more than cifar10_options::max_bytes = " + std::to_string(opt.max_bytes));
  return static_cast<std::size_t>(size / cifar10_record_bytes);
}

/// Reads `n` records of `path` into rows [row, row + n) of x and y (pixels scaled by `scale[c]`,
/// shifted by `shift[c]`).
inline void read_cifar10_records(std::filesystem::path const& path, std::size_t n, std::size_t row, float* x,
                                 std::int32_t* y, std::array<float, 3> const& scale,
                                 std::array<float, 3> const& shift) {
  io::detail::file_reader f(path);
  std::string const& p = f.name();
  if (f.size() < n * cifar10_record_bytes)
    format_fail(p, "truncated: the file has " + std::to_string(f.size()) + " bytes, " + std::to_string(n) +
                       " records need " + std::to_string(n * cifar10_record_bytes) +
                       " (the file shrank after its size was checked)");
  constexpr std::size_t chunk = 256; // records per read
  std::vector<unsigned char> buf(std::min(n, chunk) * cifar10_record_bytes);
  for (std::size_t done = 0; done < n;) {
    std::size_t const k = std::min(chunk, n - done);
    f.read_at(done * cifar10_record_bytes, buf.data(), k * cifar10_record_bytes,
              "records " + std::to_string(done) + " to " + std::to_string(done + k - 1));
    for (std::size_t r = 0; r < k; ++r) {
      unsigned char const* rec = buf.data() + r * cifar10_record_bytes;
      std::size_t const i = done + r;
      if (rec[0] > 9)
        format_fail(p, "label " + std::to_string(rec[0]) + " of record " + std::to_string(i) +
                           " (byte offset " + std::to_string(i * cifar10_record_bytes) + ") is outside 0..9");
      y[row + i] = static_cast<std::int32_t>(rec[0]);
      float* dst = x + (row + i) * 3072;
      for (std::size_t c = 0; c < 3; ++c)
        for (std::size_t q = 0; q < 1024; ++q)
          dst[c * 1024 + q] = static_cast<float>(rec[1 + c * 1024 + q]) * scale[c] - shift[c];
    }
    done += k;
  }
}

/// Number of training batches of CIFAR-10: data_batch_1.bin ... data_batch_5.bin.
inline constexpr unsigned cifar10_train_batches = 5;

/// The k of a canonical training batch name "data_batch_<k>.bin", k in 1..5 written without leading
/// zeros; nothing for any other name.
inline std::optional<unsigned> cifar10_batch_number(std::string_view name) {
  for (unsigned k = 1; k <= cifar10_train_batches; ++k)
    if (name == "data_batch_" + std::to_string(k) + ".bin") return k;
  return std::nullopt;
}

inline char ascii_lower(char c) noexcept {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
}

/// Whether `name` looks like a training batch (starts with "data_batch", ends with ".bin", in any
/// case) without being a canonical one: "data_batch_01.bin", "data_batch_6.bin", "Data_Batch_1.bin".
inline bool cifar10_batch_lookalike(std::string_view name) {
  std::string low(name);
  for (char& c : low) c = ascii_lower(c);
  return low.starts_with("data_batch") && low.ends_with(".bin") && !cifar10_batch_number(name);
}

/// For a look-alike name: " (it would be read as batch k, a duplicate of data_batch_k.bin)" when the
/// digits between "data_batch_" and ".bin" denote a canonical k, "" otherwise.
inline std::string cifar10_lookalike_hint(std::string_view name) {
  std::string low(name);
  for (char& c : low) c = ascii_lower(c);
  std::string_view const pre = "data_batch_", post = ".bin";
  if (low.size() <= pre.size() + post.size() || !std::string_view(low).starts_with(pre)) return {};
  char const* b = low.data() + pre.size();
  char const* e = low.data() + low.size() - post.size();
  unsigned v = 0;
  auto [ptr, ec] = std::from_chars(b, e, v);
  if (ec != std::errc() || ptr != e || v < 1 || v > cifar10_train_batches) return {};
  std::string const canon = "data_batch_" + std::to_string(v) + ".bin";
  return " (it would be read as batch " + std::to_string(v) + ", a duplicate of " + canon + ")";
}

/// Throws if both `dir` and `dir/cifar-10-batches-bin` hold CIFAR-10 files: which set is meant is unclear.
inline void check_one_cifar10_root(std::filesystem::path const& dir, std::filesystem::path const& root) {
  std::error_code ec;
  std::vector<std::string> names{"test_batch.bin"};
  for (unsigned k = 1; k <= cifar10_train_batches; ++k)
    names.push_back("data_batch_" + std::to_string(k) + ".bin");
  for (auto const& n : names)
    if (std::filesystem::exists(dir / n, ec))
      format_fail((dir / n).string(), "duplicate CIFAR-10 file: " + root.string() +
                                          " holds the data set too; keep one of the two directories");
}

} // namespace detail

/// @brief Loads CIFAR-10 binary files, in order, into one dataset: images (n, 3, 32, 32) scaled to
///        [0, 1] (then standardised per channel if `options.normalize`) and labels (n) in 0..9.
/// @throws lepton::io_error if a file is missing or unreadable; lepton::format_error if its size is
///         not a non-zero multiple of 3073 bytes or a label is outside 0..9 (messages name the file)
/// **Example**: `auto ds = lepton::data::read_cifar10_files(std::vector<std::filesystem::path>{"test_batch.bin"});`
inline cifar10_dataset read_cifar10_files(std::span<std::filesystem::path const> files,
                                          cifar10_options const& options = {}) {
  std::array<float, 3> const mean = options.mean.value_or(cifar10_mean);
  std::array<float, 3> const sd = options.stddev.value_or(cifar10_stddev);
  std::array<float, 3> scale{}, shift{};
  for (std::size_t c = 0; c < 3; ++c) {
    if (options.normalize && !(sd[c] > 0.0f))
      throw value_error("data::cifar10_options: stddev " + std::to_string(sd[c]) + " of channel " +
                        std::to_string(c) + " must be positive");
    scale[c] = options.normalize ? 1.0f / (255.0f * sd[c]) : 1.0f / 255.0f;
    shift[c] = options.normalize ? mean[c] / sd[c] : 0.0f;
  }
  // Validate every file's size first: a damaged last file is reported before reading the others.
  std::vector<std::size_t> counts;
  std::size_t total = 0;
  for (auto const& p : files) {
    io::detail::file_reader f(p);
    std::size_t n = detail::cifar10_records(f.name(), f.size(), options);
    if (options.max_samples) n = std::min(n, options.max_samples - std::min(options.max_samples, total));
    counts.push_back(n);
    total += n;
  }
  cifar10_images x(total);
  cifar10_labels y(total);
  std::size_t row = 0;
  for (std::size_t i = 0; i < files.size(); ++i) {
    if (counts[i]) detail::read_cifar10_records(files[i], counts[i], row, x.data(), y.data(), scale, shift);
    row += counts[i];
  }
  return cifar10_dataset(std::move(x), std::move(y));
}

/// @brief Loads one CIFAR-10 binary file (see read_cifar10_files).
/// **Example**: `auto test = lepton::data::read_cifar10_file(dir / "test_batch.bin");`
inline cifar10_dataset read_cifar10_file(std::filesystem::path const& file,
                                         cifar10_options const& options = {}) {
  std::filesystem::path const one[1] = {file};
  return read_cifar10_files(one, options);
}

/// @brief The files of a CIFAR-10 split in `dir` (or in `dir/cifar-10-batches-bin`): for
///        split::train `data_batch_1.bin` ... `data_batch_k.bin` in order, for split::test `test_batch.bin`.
///
/// Only the canonical names count. The training batches must be a gap-free prefix of 1..5 (all five
/// for the full data set; `data_batch_1.bin` and `data_batch_2.bin` alone are accepted, for quick
/// experiments); a name that looks like a batch but is not canonical (`data_batch_01.bin`,
/// `data_batch_6.bin`, `Data_Batch_1.bin`) is an error rather than silently read or skipped.
/// @throws lepton::io_error naming the directory if it or the split's files are missing, or naming
///         the first missing batch of a gap (data_batch_3.bin when data_batch_4.bin exists)
/// @throws lepton::format_error naming the file: a non-canonical batch name, or the same CIFAR-10
///         file in both `dir` and `dir/cifar-10-batches-bin`
///
/// **Example**:
/// ```
/// auto files = lepton::data::cifar10_files("/data/cifar-10-batches-bin", lepton::data::split::train);
/// // {".../data_batch_1.bin", ..., ".../data_batch_5.bin"}
/// ```
inline std::vector<std::filesystem::path> cifar10_files(std::filesystem::path const& dir, split s) {
  namespace fs = std::filesystem;
  std::error_code ec;
  if (!fs::exists(dir, ec)) detail::io_fail(dir.string(), "cannot open: no such directory");
  if (!fs::is_directory(dir, ec)) detail::io_fail(dir.string(), "cannot open: not a directory");
  fs::path root = dir;
  if (fs::is_directory(dir / "cifar-10-batches-bin", ec)) {
    root = dir / "cifar-10-batches-bin";
    detail::check_one_cifar10_root(dir, root);
  }
  std::vector<fs::path> out;
  if (s == split::test) {
    if (!fs::exists(root / "test_batch.bin", ec))
      detail::io_fail(root.string(), "no test_batch.bin (CIFAR-10 binary test split)");
    out.push_back(root / "test_batch.bin");
    return out;
  }
  std::array<bool, detail::cifar10_train_batches + 1> have{};
  std::vector<std::string> lookalikes;
  fs::directory_iterator it(root, ec), end;
  for (; !ec && it != end; it.increment(ec)) {
    std::string const name = it->path().filename().string();
    if (auto k = detail::cifar10_batch_number(name))
      have[*k] = true;
    else if (detail::cifar10_batch_lookalike(name))
      lookalikes.push_back(name);
  }
  if (ec) detail::io_fail(root.string(), "cannot list the directory: " + ec.message());
  if (!lookalikes.empty()) {
    std::sort(lookalikes.begin(), lookalikes.end()); // the directory order is arbitrary
    auto const& bad = lookalikes.front();
    detail::format_fail((root / bad).string(),
                        "not a CIFAR-10 batch name" + detail::cifar10_lookalike_hint(bad) +
                            ": the training split is data_batch_1.bin ... data_batch_5.bin; rename "
                            "or remove it" +
                            (lookalikes.size() > 1
                                 ? " (and " + std::to_string(lookalikes.size() - 1) + " more like it)"
                                 : std::string()));
  }
  unsigned last = 0;
  for (unsigned k = 1; k <= detail::cifar10_train_batches; ++k)
    if (have[k]) last = k;
  if (last == 0)
    detail::io_fail(root.string(), "no data_batch_<k>.bin files (CIFAR-10 binary training split)");
  for (unsigned k = 1; k <= last; ++k) {
    std::string const name = "data_batch_" + std::to_string(k) + ".bin";
    if (!have[k])
      detail::io_fail(root.string(), "missing " + name + ", but data_batch_" + std::to_string(last) +
                                         ".bin exists (the training batches must be data_batch_1.bin ... "
                                         "data_batch_k.bin without a gap)");
    out.push_back(root / name);
  }
  return out;
}

/// @brief Loads the CIFAR-10 training split (`data_batch_1.bin` ... `data_batch_5.bin`, 50000 samples
///        for the real data set; cifar10_files says which names are accepted) or test split
///        (`test_batch.bin`, 10000) from `dir`.
///
/// Returns images (n, 3, 32, 32) scaled to [0, 1] (standardised per channel with `normalize`) and
/// labels (n) in 0..9. `dir` may be the `cifar-10-batches-bin` directory or its parent.
/// @throws lepton::io_error / lepton::format_error naming the offending directory or file
/// **Example**:
/// ```
/// auto train = lepton::data::cifar10("/data/cifar-10-batches-bin", lepton::data::split::train, {.normalize = true});
/// // train.features(): (50000, 3, 32, 32), train.targets(): (50000)
/// ```
inline cifar10_dataset cifar10(std::filesystem::path const& dir, split s,
                               cifar10_options const& options = {}) {
  auto files = cifar10_files(dir, s);
  return read_cifar10_files(files, options);
}

} // namespace lepton::data
