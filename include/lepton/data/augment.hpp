#pragma once
/// @file augment.hpp
/// @brief Seeded image augmentation for NCHW batches: random crop with padding, horizontal flip and
///        per-channel normalisation, applied in place to a loader's batch.
///
/// Determinism: the transform of sample i in call `step` depends only on (seed, step, i), through
/// lepton's own splitmix64 generator (no implementation-defined distribution), so a training run is
/// reproducible on every platform. The augmenter owns one image of scratch memory, allocated when it
/// first sees a batch of a given image size: applying it allocates nothing after that.

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <vector>

#include "../core/error.hpp"
#include "../core/tensor.hpp"
#include "shuffle.hpp"

namespace lepton::data {

/// @brief What an augmenter does to each image.
///
/// **Example**: `lepton::data::augmenter aug({.crop_padding = 4, .horizontal_flip = true, .seed = 42});`
struct augment_options {
  /// Random crop: the image is padded by this many pixels on every side with `pad_value`, and a
  /// window of the original size is cut at a uniformly drawn offset (0 = no crop).
  std::size_t crop_padding = 0;
  /// Mirror left-right with probability 1/2.
  bool horizontal_flip = false;
  /// Value of the padding pixels (0: black for [0, 1] pixels, the mean colour for standardised ones).
  float pad_value = 0.0f;
  /// Per-channel normalisation applied after crop and flip: x = (x - mean[c]) / stddev[c]. Empty
  /// vectors: none. Sizes must equal the channel count.
  std::vector<float> mean{};
  std::vector<float> stddev{};
  /// Seed of the random transforms.
  std::uint64_t seed = 0;
};

/// @brief Applies augment_options to NCHW batches in place.
///
/// **Example**:
/// ```
/// lepton::data::loader ld(train, {.batch = 128, .seed = 1});
/// lepton::data::augmenter aug({.crop_padding = 4, .horizontal_flip = true, .seed = 1});
/// for (auto [x, y] : ld.epoch(e)) { aug(x); /* x: (b, 3, 32, 32), cropped and flipped */ }
/// ```
class augmenter {
public:
  explicit augmenter(augment_options opt) : m_opt(std::move(opt)) {
    if (m_opt.mean.size() != m_opt.stddev.size())
      throw value_error("data::augmenter: mean has " + std::to_string(m_opt.mean.size()) +
                        " entries, stddev " + std::to_string(m_opt.stddev.size()));
    for (float s : m_opt.stddev)
      if (!(s > 0.0f))
        throw value_error("data::augmenter: every stddev must be positive, got " + std::to_string(s));
  }

  augment_options const& options() const noexcept { return m_opt; }

  /// The number of calls of operator()(batch) so far (the step the next one uses).
  std::uint64_t steps() const noexcept { return m_step; }

  /// Augments `batch` (b, C, H, W) in place with the next step number (0, 1, 2, ...).
  template <class View> void operator()(View const& batch) { apply(batch, m_step++); }

  /// Augments `batch` (b, C, H, W) in place as call number `step` (any order, any repetition: the
  /// result depends only on the seed, the step and the sample's position in the batch).
  template <class View> void apply(View const& batch, std::uint64_t step) {
    static_assert(std::remove_cvref_t<View>::rank == 4,
                  "lepton: augmenter takes NCHW batches (batch, C, H, W)");
    using T = typename std::remove_cvref_t<View>::value_type;
    static_assert(std::is_same_v<T, float>, "lepton: augmenter works on float images");
    auto const s = batch.shape();
    std::size_t const n = s[0], ch = s[1], h = s[2], w = s[3];
    if (!m_opt.mean.empty() && m_opt.mean.size() != ch)
      throw shape_error("data::augmenter: normalisation statistics for " + std::to_string(m_opt.mean.size()) +
                        " channels, the batch " + to_string(s) + " has " + std::to_string(ch));
    if (m_scratch.size() < ch * h * w) m_scratch.resize(ch * h * w);
    std::uint64_t const base = epoch_seed(m_opt.seed, step);
    std::size_t const p = m_opt.crop_padding;
    for (std::size_t i = 0; i < n; ++i) {
      float* img = batch.data() + i * ch * h * w;
      std::uint64_t r = splitmix64(base + i * 0x9E3779B97F4A7C15ull);
      std::size_t dy = 0, dx = 0;
      bool flip = false;
      if (p) {
        dy = below(r, 2 * p + 1);
        r = splitmix64(r);
        dx = below(r, 2 * p + 1);
        r = splitmix64(r);
      }
      if (m_opt.horizontal_flip) flip = (r >> 63) != 0;
      if (p && (dy != p || dx != p)) crop(img, ch, h, w, dy, dx);
      if (flip) mirror(img, ch, h, w);
      if (!m_opt.mean.empty())
        for (std::size_t c = 0; c < ch; ++c) {
          float const m = m_opt.mean[c], inv = 1.0f / m_opt.stddev[c];
          float* pl = img + c * h * w;
          for (std::size_t q = 0; q < h * w; ++q) pl[q] = (pl[q] - m) * inv;
        }
    }
  }

private:
  /// A value in [0, n) from the high bits of r (multiply-shift; the bias is below 2^-32 n).
  static std::size_t below(std::uint64_t r, std::size_t n) {
    return static_cast<std::size_t>(((r >> 32) * static_cast<std::uint64_t>(n)) >> 32);
  }
  /// out[y][x] = padded[y + dy][x + dx], where padded is the image with p pixels of pad_value around.
  void crop(float* img, std::size_t ch, std::size_t h, std::size_t w, std::size_t dy, std::size_t dx) {
    std::size_t const p = m_opt.crop_padding;
    float* tmp = m_scratch.data();
    std::copy_n(img, ch * h * w, tmp);
    for (std::size_t c = 0; c < ch; ++c)
      for (std::size_t y = 0; y < h; ++y) {
        float* dst = img + (c * h + y) * w;
        std::ptrdiff_t const sy = static_cast<std::ptrdiff_t>(y + dy) - static_cast<std::ptrdiff_t>(p);
        if (sy < 0 || sy >= static_cast<std::ptrdiff_t>(h)) {
          std::fill_n(dst, w, m_opt.pad_value);
          continue;
        }
        float const* src = tmp + (c * h + static_cast<std::size_t>(sy)) * w;
        for (std::size_t x = 0; x < w; ++x) {
          std::ptrdiff_t const sx = static_cast<std::ptrdiff_t>(x + dx) - static_cast<std::ptrdiff_t>(p);
          dst[x] = sx < 0 || sx >= static_cast<std::ptrdiff_t>(w) ? m_opt.pad_value : src[sx];
        }
      }
  }
  static void mirror(float* img, std::size_t ch, std::size_t h, std::size_t w) {
    for (std::size_t r = 0; r < ch * h; ++r) std::reverse(img + r * w, img + (r + 1) * w);
  }

  augment_options m_opt;
  std::vector<float> m_scratch;
  std::uint64_t m_step = 0;
};

/// @brief Standardises NCHW images in place per channel: x = (x - mean[c]) / stddev[c].
/// @throws lepton::shape_error if the statistics do not have one entry per channel
/// **Example**: `lepton::data::normalize_channels(ds.features(), {0.49f, 0.48f, 0.45f}, {0.25f, 0.24f, 0.26f});`
template <class D>
void normalize_channels(D& images, std::vector<float> const& mean, std::vector<float> const& stddev) {
  static_assert(std::remove_cvref_t<D>::rank == 4,
                "lepton: normalize_channels takes NCHW images (n, C, H, W)");
  auto const s = images.shape();
  if (mean.size() != s[1] || stddev.size() != s[1])
    throw shape_error("data::normalize_channels: statistics for " + std::to_string(mean.size()) + " / " +
                      std::to_string(stddev.size()) + " channels, the images " + to_string(s) + " have " +
                      std::to_string(s[1]));
  std::size_t const plane = s[2] * s[3];
  for (std::size_t i = 0; i < s[0]; ++i)
    for (std::size_t c = 0; c < s[1]; ++c) {
      if (!(stddev[c] > 0.0f)) throw value_error("data::normalize_channels: stddev must be positive");
      auto* pl = images.data() + (i * s[1] + c) * plane;
      for (std::size_t q = 0; q < plane; ++q) pl[q] = (pl[q] - mean[c]) / stddev[c];
    }
}

} // namespace lepton::data
