#pragma once
// Shared by the checkpoint tests: one small model type (with dropout), synthetic data, and a snapshot of
// everything a checkpoint restores, compared bit for bit.

#include <array>
#include <cstdint>
#include <cstring>
#include <random>
#include <string_view>
#include <vector>

#include <lepton/io.hpp>
#include <lepton/lepton.hpp>

namespace ckpt_test {

namespace lp = lepton;
namespace lio = lepton::io;

using X = lp::tensor<float, lp::dyn, 4>;
using Y = lp::tensor<std::int32_t, lp::dyn>;

/// The model of every checkpoint test: 4-16-3 with dropout (its call counter is training state).
struct net {
  lp::nn::linear<4, 16> fc1;
  lp::nn::dropout drop{.p = 0.25, .seed = 3};
  lp::nn::linear<16, 3> fc2;
  static constexpr std::array<char const*, 3> lepton_names{"fc1", "drop", "fc2"};
  auto operator()(auto const& x) const { return fc2(drop(lp::tanh(fc1(x)))); }
};

/// Three Gaussian blobs in 4-D, seeded.
inline lp::data::dataset<X, Y> blobs(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> noise(0.0f, 0.8f);
  X x(n);
  Y y(n);
  float const centers[3][4] = {{2, 0, 0, 1}, {-1, 2, 0, -1}, {0, -2, 2, 0}};
  for (std::size_t i = 0; i < n; ++i) {
    int c = int(i % 3);
    y(i) = c;
    for (std::size_t j = 0; j < 4; ++j) x(i, j) = centers[c][j] + noise(rng);
  }
  return {std::move(x), std::move(y)};
}

inline net make_net(std::uint64_t seed) {
  net m;
  lp::nn::init(m, lp::init::xavier_uniform{}, seed);
  return m;
}

template <class T> void append_bits(std::vector<std::uint64_t>& out, T const* p, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    std::uint64_t b = 0;
    std::memcpy(&b, p + i, sizeof(T));
    out.push_back(b);
  }
}

/// Everything load_checkpoint restores, as bits.
struct snapshot {
  std::vector<std::uint64_t> params, state, rng, sched;
  std::uint64_t steps = 0, lr = 0;
  bool operator==(snapshot const&) const = default;
};

inline std::vector<std::uint64_t> param_bits(net& m) {
  std::vector<std::uint64_t> v;
  lp::nn::for_each_parameter(
      m, [&](std::string_view, auto& p) { append_bits(v, p.value.data(), p.value.size()); });
  return v;
}

template <class Opt> snapshot take(net& m, Opt& opt) {
  snapshot s;
  s.params = param_bits(m);
  opt.for_each_state(
      [&](std::string_view, std::string_view, auto* data, std::size_t n) { append_bits(s.state, data, n); });
  s.steps = opt.steps();
  double const lr = opt.lr();
  append_bits(s.rng, &lr, 1);
  s.lr = s.rng.back();
  s.rng.clear();
  s.rng.push_back(m.drop.seed);
  s.rng.push_back(m.drop.calls);
  return s;
}

template <class Opt, class Sched> snapshot take(net& m, Opt& opt, Sched& sched) {
  snapshot s = take(m, opt);
  sched.for_each_state([&](std::string_view, auto& v) { append_bits(s.sched, &v, 1); });
  return s;
}

/// `steps` optimizer steps on batches of 24 (changes the parameters, optimizer state, step count and dropout counter).
template <class Opt>
void train_steps(net& m, Opt& opt, lp::data::dataset<X, Y> const& data, std::size_t steps) {
  lp::data::loader<X, Y> ld(data, {.batch = 24, .shuffle = true, .seed = 5});
  std::size_t done = 0;
  for (std::size_t e = 0; done < steps; ++e)
    for (auto [x, y] : ld.epoch(e)) {
      if (done == steps) break;
      ++done;
      lp::backward(lp::loss::cross_entropy(m(x), y));
      opt.step();
    }
}

} // namespace ckpt_test
