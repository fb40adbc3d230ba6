#pragma once
/// @file shuffle.hpp
/// @brief Seeded shuffling that gives the same order on every platform and standard library.
///
/// `std::shuffle` and `std::uniform_int_distribution` are implementation-defined, so the same seed
/// gives different orders with libstdc++, libc++ and MSVC. lepton uses only fully specified
/// pieces: `std::mt19937_64` (its output sequence is fixed by the standard), an unbiased bounded
/// draw by rejection, and a Fisher-Yates shuffle written out here.

#include <cstddef>
#include <cstdint>
#include <limits>
#include <numeric>
#include <random>
#include <span>
#include <utility>
#include <vector>

namespace lepton::data {

/// @brief The splitmix64 mixing function: a bijection of 64-bit integers that scatters nearby inputs.
///
/// **Example**: `static_assert(lepton::data::splitmix64(0) == 0xE220A8397B1DCDAFull);`
constexpr std::uint64_t splitmix64(std::uint64_t x) noexcept {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

/// @brief The generator seed used for epoch `epoch` of a loader seeded with `seed`:
///        `splitmix64(splitmix64(seed) ^ epoch)`. Distinct epochs give distinct seeds.
///
/// **Example**: `std::mt19937_64 rng(lepton::data::epoch_seed(42, 3));`
constexpr std::uint64_t epoch_seed(std::uint64_t seed, std::uint64_t epoch) noexcept {
  return splitmix64(splitmix64(seed) ^ epoch);
}

/// @brief A uniform integer in [0, n) (n > 0) drawn from `rng` by rejection: no modulo bias, and
///        the same result on every platform (unlike std::uniform_int_distribution).
///
/// **Example**: `std::mt19937_64 rng(1); auto die = lepton::data::uniform_below(rng, 6) + 1;`
inline std::uint64_t uniform_below(std::mt19937_64& rng, std::uint64_t n) noexcept {
  // Accept r only in [threshold, 2^64), whose length is a multiple of n.
  std::uint64_t const threshold = (0 - n) % n;
  for (;;) {
    std::uint64_t r = rng();
    if (r >= threshold) return r % n;
  }
}

/// @brief Shuffles `items` in place with Fisher-Yates driven by `std::mt19937_64(seed)`.
///        Allocates nothing; the same seed gives the same permutation everywhere.
///
/// **Example**:
/// ```
/// std::vector<int> v{1, 2, 3, 4, 5};
/// lepton::data::seeded_shuffle(std::span<int>(v), 42);
/// ```
template <class T> void seeded_shuffle(std::span<T> items, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  for (std::size_t i = items.size(); i > 1; --i) {
    auto j = static_cast<std::size_t>(uniform_below(rng, i));
    using std::swap;
    swap(items[i - 1], items[j]);
  }
}

/// @brief The indices 0..n-1 in the order seeded_shuffle gives them for `seed`.
///
/// **Example**: `auto order = lepton::data::permutation(10, 42); // a permutation of 0..9`
inline std::vector<std::size_t> permutation(std::size_t n, std::uint64_t seed) {
  std::vector<std::size_t> v(n);
  std::iota(v.begin(), v.end(), std::size_t{0});
  seeded_shuffle(std::span<std::size_t>(v), seed);
  return v;
}

} // namespace lepton::data
