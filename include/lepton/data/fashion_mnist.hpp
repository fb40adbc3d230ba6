#pragma once
/// @file fashion_mnist.hpp
/// @brief Loaders for Fashion-MNIST and MNIST (the same IDX file layout): 28x28 grey images scaled
///        to [0, 1] and labels 0..9.
///
/// A directory holds `train-images-idx3-ubyte`, `train-labels-idx1-ubyte`, `t10k-images-idx3-ubyte`
/// and `t10k-labels-idx1-ubyte`, each optionally gzip-compressed (`.gz`, tried first) or in the
/// `train-images.idx3-ubyte` spelling of some mirrors.

#include <array>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../core/shape.hpp"
#include "../core/tensor.hpp"
#include "../io/reader.hpp"
#include "dataset.hpp"
#include "idx.hpp"

namespace lepton::data {

/// @brief Which part of a data set to load.
///
/// **Example**: `auto test = lepton::data::fashion_mnist(dir, lepton::data::split::test);`
enum class split { train, test };

/// @brief Shape of the loaded images: flat rows for MLPs, or one channel of 28x28 for CNNs.
///
/// **Example**: `auto ds = lepton::data::fashion_mnist<lepton::data::image_layout::nchw>(dir, split::train);`
enum class image_layout {
  flat, ///< `tensor<float, dyn, 784>`: (n, 784)
  nchw, ///< `tensor<float, dyn, 1, 28, 28>`: (n, 1, 28, 28)
};

/// @brief The images tensor type for a layout: (n, 784) or (n, 1, 28, 28).
template <image_layout L> using mnist_images =
    std::conditional_t<L == image_layout::flat, tensor<float, dyn, 784>, tensor<float, dyn, 1, 28, 28>>;

/// @brief The labels tensor type: (n) integers in 0..9.
using mnist_labels = tensor<std::int32_t, dyn>;

/// @brief The dataset type fashion_mnist() and mnist() return.
template <image_layout L = image_layout::flat> using mnist_dataset = dataset<mnist_images<L>, mnist_labels>;

/// Mean and standard deviation of the Fashion-MNIST training pixels scaled to [0, 1].
inline constexpr float fashion_mnist_mean = 0.2860406f;
inline constexpr float fashion_mnist_stddev = 0.3530242f;
/// Mean and standard deviation of the MNIST training pixels scaled to [0, 1].
inline constexpr float mnist_mean = 0.1306605f;
inline constexpr float mnist_stddev = 0.3081078f;

/// @brief Options of fashion_mnist() / mnist().
///
/// **Example**: `lepton::data::fashion_mnist(dir, split::train, {.normalize = true});`
struct mnist_options {
  /// After scaling to [0, 1], map each pixel to (x - mean) / stddev.
  bool normalize = false;
  /// Override the statistics used by `normalize`; by default the training set's (fashion_mnist_mean
  /// and fashion_mnist_stddev for fashion_mnist(), mnist_mean and mnist_stddev for mnist()), for
  /// both splits.
  std::optional<float> mean{};
  std::optional<float> stddev{};
  /// Limits applied to each IDX file.
  idx_options idx{};
};

namespace detail {

/// "lepton: <file>: <reason>" as a format_error or an io_error.
using io::detail::format_fail;
using io::detail::io_fail;

/// The existing file among the spellings of `stem` ("train-images", "idx3") in `dir`.
inline std::filesystem::path find_mnist_file(std::filesystem::path const& dir, std::string const& stem,
                                             std::string const& kind) {
  std::array<std::string, 3> names{stem + "-" + kind + "-ubyte.gz", stem + "-" + kind + "-ubyte",
                                   stem + "." + kind + "-ubyte"};
  std::error_code ec;
  for (auto const& n : names)
    if (std::filesystem::exists(dir / n, ec)) return dir / n;
  if (!std::filesystem::exists(dir, ec)) io_fail(dir.string(), "cannot open: no such directory");
  if (!std::filesystem::is_directory(dir, ec)) io_fail(dir.string(), "cannot open: not a directory");
  io_fail(dir.string(),
          "no " + stem + " file (looked for " + names[0] + ", " + names[1] + ", " + names[2] + ")");
}

template <image_layout L>
mnist_dataset<L> load_mnist_impl(std::filesystem::path const& img_path, std::filesystem::path const& lbl_path,
                                 mnist_options const& opt, float mean, float stddev) {
  if (opt.normalize && !(stddev > 0.0f))
    throw value_error("data::mnist_options: stddev " + std::to_string(stddev) + " must be positive");
  // Labels first: the smaller file, and a mismatch is then reported before inflating 47 MB.
  idx_file lbl = read_idx(lbl_path, opt.idx);
  if (lbl.header.type != idx_type::u8)
    format_fail(lbl_path.string(), "labels must be unsigned bytes (type 0x08), the file has type " +
                                       idx_type_name(lbl.header.type));
  if (lbl.header.dims.size() != 1)
    format_fail(lbl_path.string(),
                "labels must have 1 dimension, the file holds " + lbl.header.dims_string());
  std::size_t const n = lbl.header.dims[0];
  for (std::size_t i = 0; i < n; ++i)
    if (lbl.bytes[i] > 9)
      format_fail(lbl_path.string(), "label " + std::to_string(lbl.bytes[i]) + " at index " +
                                         std::to_string(i) + " is outside 0..9");

  idx_file img = read_idx(img_path, opt.idx);
  if (img.header.type != idx_type::u8)
    format_fail(img_path.string(), "images must be unsigned bytes (type 0x08), the file has type " +
                                       idx_type_name(img.header.type));
  auto const& d = img.header.dims;
  if (d.size() != 3 || d[1] != 28 || d[2] != 28)
    format_fail(img_path.string(), "images must be (n, 28, 28), the file holds " + img.header.dims_string());
  if (d[0] != n)
    throw format_error(img_path.string() + ": image/label count mismatch: " + std::to_string(d[0]) +
                       " images, but " + lbl_path.string() + " has " + std::to_string(n) + " labels");

  mnist_images<L> x(n);
  float const scale = opt.normalize ? 1.0f / (255.0f * stddev) : 1.0f / 255.0f;
  float const shift = opt.normalize ? mean / stddev : 0.0f;
  float* px = x.data();
  std::uint8_t const* src = img.bytes.data();
  for (std::size_t i = 0, total = n * 784; i < total; ++i) px[i] = static_cast<float>(src[i]) * scale - shift;

  mnist_labels y(n);
  for (std::size_t i = 0; i < n; ++i) y(i) = static_cast<std::int32_t>(lbl.bytes[i]);
  return mnist_dataset<L>(std::move(x), std::move(y));
}

template <image_layout L> mnist_dataset<L> load_mnist(std::filesystem::path const& dir, split s,
                                                      mnist_options const& opt, float mean, float stddev) {
  std::string const prefix = s == split::train ? "train" : "t10k";
  auto img_path = find_mnist_file(dir, prefix + "-images", "idx3");
  auto lbl_path = find_mnist_file(dir, prefix + "-labels", "idx1");
  return load_mnist_impl<L>(img_path, lbl_path, opt, mean, stddev);
}

} // namespace detail

/// @brief Loads MNIST-style images and labels from two IDX files (raw or .gz).
///
/// Checks that the images are unsigned bytes of shape (n, 28, 28), the labels unsigned bytes of shape
/// (n) with the same n, and every label in 0..9. Pixels become float in [0, 1] (x / 255), then
/// (x - mean) / stddev if `options.normalize` (default statistics: Fashion-MNIST's).
/// @throws lepton::io_error / lepton::format_error naming the offending file
///
/// **Example**:
/// ```
/// auto ds = lepton::data::load_mnist_files(dir / "train-images-idx3-ubyte.gz",
///                                          dir / "train-labels-idx1-ubyte.gz");
/// ```
template <image_layout L = image_layout::flat>
mnist_dataset<L> load_mnist_files(std::filesystem::path const& images, std::filesystem::path const& labels,
                                  mnist_options const& options = {}) {
  return detail::load_mnist_impl<L>(images, labels, options, options.mean.value_or(fashion_mnist_mean),
                                    options.stddev.value_or(fashion_mnist_stddev));
}

/// @brief Loads Fashion-MNIST from `dir` (see the file comment for the file names).
///
/// Returns images (n, 784) or (n, 1, 28, 28) scaled to [0, 1] (optionally standardised) and labels
/// (n) in 0..9; n = 60000 for split::train, 10000 for split::test.
/// @tparam L image_layout::flat (default) or image_layout::nchw
/// @throws lepton::io_error if `dir` or a file is missing; lepton::format_error if a file is damaged
///         or inconsistent (counts, label values, image size); messages name the file
///
/// **Example**:
/// ```
/// auto train = lepton::data::fashion_mnist("/usr/share/datasets/fashion-mnist", lepton::data::split::train);
/// // train.features(): (60000, 784), train.targets(): (60000)
/// auto cnn = lepton::data::fashion_mnist<lepton::data::image_layout::nchw>(dir, lepton::data::split::test);
/// // cnn.features(): (10000, 1, 28, 28)
/// ```
template <image_layout L = image_layout::flat>
mnist_dataset<L> fashion_mnist(std::filesystem::path const& dir, split s, mnist_options const& options = {}) {
  return detail::load_mnist<L>(dir, s, options, options.mean.value_or(fashion_mnist_mean),
                               options.stddev.value_or(fashion_mnist_stddev));
}

/// @brief Loads MNIST (handwritten digits) from `dir`: the same as fashion_mnist(), with MNIST's
///        statistics for `normalize`.
///
/// **Example**: `auto test = lepton::data::mnist("/data/mnist", lepton::data::split::test);`
template <image_layout L = image_layout::flat>
mnist_dataset<L> mnist(std::filesystem::path const& dir, split s, mnist_options const& options = {}) {
  return detail::load_mnist<L>(dir, s, options, options.mean.value_or(mnist_mean),
                               options.stddev.value_or(mnist_stddev));
}

} // namespace lepton::data
