#pragma once
// Test helpers: seeded random fills, float64 references, allocation counting.
#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <random>

namespace lepton_test {

template <class Tensor> void fill_uniform(Tensor& t, double lo, double hi, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::uniform_real_distribution<double> d(lo, hi);
  for (std::size_t i = 0; i < t.size(); ++i) t.data()[i] = static_cast<typename Tensor::value_type>(d(rng));
}

/// |a - b| <= atol + rtol |b|
inline bool close(double a, double b, double rtol = 1e-5, double atol = 1e-6) {
  if (std::isnan(a) || std::isnan(b)) return std::isnan(a) && std::isnan(b);
  if (std::isinf(a) || std::isinf(b)) return a == b;
  return std::abs(a - b) <= atol + rtol * std::abs(b);
}

} // namespace lepton_test
