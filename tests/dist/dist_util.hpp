// Shared by the dist tests and bench: the Fashion-MNIST-shaped MLP, synthetic data, a minimal
// check macro (the programs run under mpirun, one process per rank, without Catch2) and the
// single-process references that dist::fit is compared with.
#pragma once

#include <lepton/dist.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

namespace lp = lepton;

namespace dist_test {

using X = lp::tensor<float, lp::dyn, 784>;
using Y = lp::tensor<std::int32_t, lp::dyn>;
using dataset = lp::data::dataset<X, Y>;

/// The example's model: 784-256-128-10, 235146 parameters.
struct mlp {
  lp::nn::linear<784, 256> fc1;
  lp::nn::linear<256, 128> fc2;
  lp::nn::linear<128, 10> fc3;
  static constexpr std::array<char const*, 3> lepton_names{"fc1", "fc2", "fc3"};
  auto operator()(auto const& x) const { return fc3(lp::relu(fc2(lp::relu(fc1(x))))); }
};
static_assert(lp::nn::parameter_count<mlp> == 235146);

/// The same shape with tanh: a smooth function of its parameters (no ReLU kinks), for the
/// tolerance comparison with train::fit (see test_dist_train.cpp).
struct tanh_mlp {
  lp::nn::linear<784, 256> fc1;
  lp::nn::linear<256, 128> fc2;
  lp::nn::linear<128, 10> fc3;
  auto operator()(auto const& x) const { return fc3(lp::tanh(fc2(lp::tanh(fc1(x))))); }
};

/// n samples of "images" in [0, 1) labelled by a fixed random linear teacher: learnable, and
/// the same on every rank (the generator is fully specified).
inline dataset synthetic(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto unit = [&] { return float(rng() >> 40) * (1.0f / 16777216.0f); };
  std::vector<float> teacher(10 * 784);
  for (auto& w : teacher) w = unit() - 0.5f;
  X x({n, 784});
  Y y({n});
  for (std::size_t i = 0; i < n; ++i) {
    float best = -1e30f;
    int arg = 0;
    for (std::size_t j = 0; j < 784; ++j) x(i, j) = unit();
    for (int c = 0; c < 10; ++c) {
      float s = 0;
      for (std::size_t j = 0; j < 784; ++j) s += teacher[std::size_t(c) * 784 + j] * (x(i, j) - 0.5f);
      if (s > best) best = s, arg = c;
    }
    y(i) = arg;
  }
  return {std::move(x), std::move(y)};
}

template <class Model> std::vector<float> flat_params(Model& m) {
  std::vector<float> v;
  lp::nn::for_each_parameter(m, [&](std::string_view, auto& p) {
    v.insert(v.end(), p.value.data(), p.value.data() + p.value.size());
  });
  return v;
}

/// How far apart two parameter vectors are.
struct difference {
  std::size_t differing = 0; ///< elements that are not bit-identical
  double max_abs = 0;        ///< max |a - b|
  double max_rel = 0;        ///< max |a - b| / max(|b|, 1e-3): elementwise, floored for values near 0
  double norm_rel = 0;       ///< ||a - b||_2 / ||b||_2
};
inline difference compare(std::vector<float> const& a, std::vector<float> const& b) {
  difference d;
  double num = 0, den = 0;
  for (std::size_t i = 0; i < a.size(); ++i) {
    if (std::bit_cast<std::uint32_t>(a[i]) != std::bit_cast<std::uint32_t>(b[i])) ++d.differing;
    double const e = std::abs(double(a[i]) - double(b[i]));
    d.max_abs = std::max(d.max_abs, e);
    d.max_rel = std::max(d.max_rel, e / std::max(std::abs(double(b[i])), 1e-3));
    num += e * e;
    den += double(b[i]) * double(b[i]);
  }
  d.norm_rel = den > 0 ? std::sqrt(num / den) : std::sqrt(num);
  return d;
}

inline int failures = 0;
#define DIST_CHECK(cond, ...)                                                                                \
  do {                                                                                                       \
    if (!(cond)) {                                                                                           \
      ++dist_test::failures;                                                                                 \
      std::fprintf(stderr, "rank %d: CHECK FAILED %s:%d: %s: ", lp::dist::rank(), __FILE__, __LINE__,        \
                   #cond);                                                                                   \
      std::fprintf(stderr, __VA_ARGS__);                                                                     \
      std::fprintf(stderr, "\n");                                                                            \
    }                                                                                                        \
  } while (0)

/// The single-process reference with the same sharding: each global batch is computed as the N
/// ranks' shards one after the other, their weighted gradients summed in rank order (exactly what
/// N ranks with grad_reducer compute), then one optimizer step. Runs in one process, no MPI.
template <class Model, class Opt> void emulate_ranks(Model& m, Opt& opt, dataset const& data, int ranks,
                                                     std::size_t batch, std::uint64_t seed,
                                                     std::size_t epochs) {
  std::vector<std::unique_ptr<lp::dist::shard_loader<X, Y>>> loaders;
  for (int r = 0; r < ranks; ++r)
    loaders.push_back(std::make_unique<lp::dist::shard_loader<X, Y>>(
        data, lp::dist::shard_options{.batch = batch, .seed = seed}, r, ranks));
  std::vector<float*> grads;
  std::vector<std::size_t> sizes;
  lp::nn::for_each_parameter(m, [&](std::string_view, auto& p) {
    grads.push_back(p.grad.data());
    sizes.push_back(p.value.size());
  });
  std::size_t const total = lp::nn::parameter_count<Model>;
  std::vector<float> sum(total), part(total);
  for (std::size_t e = 0; e < epochs; ++e) {
    for (auto& l : loaders) l->epoch(e);
    std::size_t const nb = loaders[0]->batches_per_epoch();
    for (std::size_t k = 0; k < nb; ++k) {
      for (int r = 0; r < ranks; ++r) {
        auto sh = loaders[std::size_t(r)]->get_batch(k);
        float const w = float(sh.weight());
        if (sh.size() == 0) {
          std::fill(part.begin(), part.end(), 0.0f);
        } else {
          lp::backward(lp::loss::cross_entropy(m(sh.x), sh.y));
          std::size_t off = 0;
          for (std::size_t t = 0; t < grads.size(); ++t)
            for (std::size_t i = 0; i < sizes[t]; ++i)
              part[off++] = w == 1.0f ? grads[t][i] : grads[t][i] * w;
        }
        if (r == 0)
          sum = part;
        else
          for (std::size_t i = 0; i < total; ++i) sum[i] += part[i];
      }
      std::size_t off = 0;
      for (std::size_t t = 0; t < grads.size(); ++t)
        for (std::size_t i = 0; i < sizes[t]; ++i) grads[t][i] = sum[off++];
      opt.step();
    }
  }
}

} // namespace dist_test
