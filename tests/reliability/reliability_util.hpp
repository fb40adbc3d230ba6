#pragma once
// Helpers of the reliability tests: models, synthetic data, parameter hashes.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <lepton/lepton.hpp>
#include <support/util.hpp>

namespace lepton_reliability {
namespace lp = lepton;

/// A small MLP: 32 -> 64 -> 256 -> 10 with ReLU and tanh (GEMMs with fused epilogues). Cheap at a
/// few rows; from 256 rows its middle GEMM (rows x 64 x 256 multiply-adds >= 2^22) is split across
/// the thread pool.
struct mlp {
  lp::nn::linear<32, 64> fc1;
  lp::nn::linear<64, 256> fc2;
  lp::nn::linear<256, 10> fc3;
  auto operator()(auto const& x) const { return fc3(lp::tanh(fc2(lp::relu(fc1(x))))); }
};

/// Wider, so that the GEMMs of a training step are large enough to be split across threads.
struct wide_mlp {
  lp::nn::linear<16, 256> fc1;
  lp::nn::linear<256, 256> fc2;
  lp::nn::linear<256, 4> fc3;
  auto operator()(auto const& x) const { return fc3(lp::relu(fc2(lp::relu(fc1(x))))); }
};

/// FNV-1a over bytes.
inline std::uint64_t fnv1a(void const* p, std::size_t n, std::uint64_t h = 1469598103934665603ull) {
  auto const* b = static_cast<unsigned char const*>(p);
  for (std::size_t i = 0; i < n; ++i) h = (h ^ b[i]) * 1099511628211ull;
  return h;
}

/// Hash of every parameter value, in reflection order (names included).
template <class Model> std::uint64_t parameter_hash(Model& m) {
  std::uint64_t h = 1469598103934665603ull;
  lp::nn::for_each_parameter(m, [&](std::string_view name, auto& p) {
    h = fnv1a(name.data(), name.size(), h);
    h = fnv1a(p.value.data(), p.value.size() * sizeof(*p.value.data()), h);
  });
  return h;
}

/// Whether every parameter value of the model is finite.
template <class Model> bool all_finite(Model& model) {
  bool ok = true;
  lp::nn::for_each_parameter(model, [&](std::string_view, auto& p) {
    for (auto v : p.value.flat()) ok = ok && std::isfinite(v);
  });
  return ok;
}

/// Gaussian blobs: `classes` centres in `F` dimensions, seeded.
template <std::size_t F> lp::data::dataset<lp::tensor<float, lp::dyn, F>, lp::tensor<std::int32_t, lp::dyn>>
blobs(std::size_t n, int classes, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> noise(0.0f, 0.7f);
  std::uniform_real_distribution<float> centre(-2.0f, 2.0f);
  std::vector<float> centres(std::size_t(classes) * F);
  for (auto& c : centres) c = centre(rng);
  lp::tensor<float, lp::dyn, F> x(n);
  lp::tensor<std::int32_t, lp::dyn> y(n);
  for (std::size_t i = 0; i < n; ++i) {
    int c = int(i % std::size_t(classes));
    y(i) = c;
    for (std::size_t j = 0; j < F; ++j) x(i, j) = centres[std::size_t(c) * F + j] + noise(rng);
  }
  return {std::move(x), std::move(y)};
}

/// An integer from the environment, or `fallback`.
inline std::size_t env_size(char const* name, std::size_t fallback) {
  char const* v = std::getenv(name);
  if (!v || !*v) return fallback;
  return static_cast<std::size_t>(std::strtoull(v, nullptr, 10));
}

/// Restores the library's thread count when it goes out of scope.
struct thread_count_guard {
  std::size_t saved = lp::num_threads();
  ~thread_count_guard() { lp::set_num_threads(saved); }
};

} // namespace lepton_reliability
