// Concurrency: inference on one const model from 8 user threads is safe (TSan-clean) and
// bit-identical to a serial run; separate models train concurrently with the results of serial
// training. See docs/reliability.md ("Thread safety").
#include <algorithm>
#include <array>
#include <atomic>
#include <catch2/catch.hpp>
#include <cstring>
#include <thread>
#include <vector>

#include "reliability_util.hpp"

namespace lp = lepton;
namespace rel = lepton_reliability;

namespace {

/// What one inference call computes: softmax probabilities and the mean cross-entropy loss.
struct outputs {
  std::vector<float> probs;
  float loss = 0;
  std::size_t correct = 0;
};

outputs infer(rel::mlp const& model, lp::tensor<float, lp::dyn, 32> const& x,
              lp::tensor<std::int32_t, lp::dyn> const& y) {
  outputs o;
  lp::tensor<float, lp::dyn, 10> p = lp::softmax(model(x));
  o.probs.assign(p.data(), p.data() + p.size());
  o.loss = lp::value(lp::loss::cross_entropy(model(x), y), &o.correct);
  return o;
}

bool bit_equal(outputs const& a, outputs const& b) {
  return a.probs.size() == b.probs.size() &&
         std::memcmp(a.probs.data(), b.probs.data(), a.probs.size() * sizeof(float)) == 0 &&
         std::memcmp(&a.loss, &b.loss, sizeof(float)) == 0 && a.correct == b.correct;
}

} // namespace

TEST_CASE("8 threads x N inference calls on one const model are bit-identical to a serial run",
          "[reliability][concurrency]") {
  rel::thread_count_guard guard;
  // A pool of 3 workers: whichever user thread gets it runs its GEMMs in parallel, the others run
  // inline. Results must not depend on which happened.
  lp::set_num_threads(4, lp::oversubscribe::yes); // 4 even on a 2-core machine
  rel::mlp m;
  lp::nn::init(m, lp::init::kaiming_uniform{}, 42);
  rel::mlp const& model = m;

  // Batches of different sizes: 1 row, odd sizes, and (every 64th call) large ones whose middle GEMM
  // is split across the pool, so that one caller uses the pool while the others run inline.
  constexpr std::array<std::size_t, 8> sizes{1, 2, 3, 5, 8, 13, 256, 512};
  std::vector<lp::tensor<float, lp::dyn, 32>> xs;
  std::vector<lp::tensor<std::int32_t, lp::dyn>> ys;
  for (std::size_t k = 0; k < sizes.size(); ++k) {
    lp::tensor<float, lp::dyn, 32> x(sizes[k]);
    lepton_test::fill_uniform(x, -2.0, 2.0, 100 + k);
    lp::tensor<std::int32_t, lp::dyn> y(sizes[k]);
    for (std::size_t i = 0; i < sizes[k]; ++i) y(i) = std::int32_t((i * 7 + k) % 10);
    xs.push_back(std::move(x));
    ys.push_back(std::move(y));
  }
  std::vector<outputs> reference;
  for (std::size_t k = 0; k < xs.size(); ++k) reference.push_back(infer(model, xs[k], ys[k]));

  // LEPTON_RELIABILITY_CALLS: calls per thread (default 10^4).
  std::size_t const calls = rel::env_size("LEPTON_RELIABILITY_CALLS", 10000);
  constexpr std::size_t n_threads = 8;
  std::atomic<std::size_t> mismatches{0}, done{0};
  std::atomic<bool> go{false};
  std::vector<std::thread> threads;
  for (std::size_t t = 0; t < n_threads; ++t)
    threads.emplace_back([&, t] {
      while (!go.load(std::memory_order_acquire)) std::this_thread::yield();
      for (std::size_t i = 0; i < calls; ++i) {
        std::size_t const k = i % 64 == t * 8 ? 6 + (i / 64) % 2 : (i * 5 + t * 3) % 6;
        if (!bit_equal(infer(model, xs[k], ys[k]), reference[k])) mismatches.fetch_add(1);
        done.fetch_add(1, std::memory_order_relaxed);
      }
    });
  go.store(true, std::memory_order_release);
  for (auto& th : threads) th.join();
  INFO(n_threads << " threads x " << calls << " calls");
  REQUIRE(done.load() == n_threads * calls);
  REQUIRE(mismatches.load() == 0);
}

namespace {
/// A model with a dropout layer: in evaluation mode the layer is the identity and touches no state.
struct dropout_net {
  lp::nn::linear<32, 64> fc1;
  lp::nn::dropout drop{.p = 0.5, .seed = 3};
  lp::nn::linear<64, 10> fc2;
  auto operator()(auto const& x) const { return fc2(drop(lp::relu(fc1(x)))); }
};
} // namespace

TEST_CASE(
    "inference through dropout in evaluation mode from 8 threads is race-free and equals the serial run",
    "[reliability][concurrency]") {
  rel::thread_count_guard guard;
  lp::set_num_threads(1);
  dropout_net m;
  lp::nn::init(m, lp::init::kaiming_uniform{}, 5);
  lp::nn::set_training(m, false);
  dropout_net const& model = m;
  lp::tensor<float, lp::dyn, 32> x(7);
  lepton_test::fill_uniform(x, -2.0, 2.0, 9);
  lp::tensor<float, lp::dyn, 10> reference = model(x);
  // The identity in evaluation mode: fc2(relu(fc1(x))) computed without the layer.
  lp::tensor<float, lp::dyn, 10> direct = m.fc2(lp::relu(m.fc1(x)));
  REQUIRE(std::memcmp(reference.data(), direct.data(), direct.size() * sizeof(float)) == 0);
  std::size_t const calls = std::min<std::size_t>(rel::env_size("LEPTON_RELIABILITY_CALLS", 10000), 2000);
  std::atomic<std::size_t> mismatches{0};
  std::vector<std::thread> threads;
  for (std::size_t t = 0; t < 8; ++t)
    threads.emplace_back([&] {
      for (std::size_t i = 0; i < calls; ++i) {
        lp::tensor<float, lp::dyn, 10> y = model(x);
        if (std::memcmp(y.data(), reference.data(), y.size() * sizeof(float)) != 0) mismatches.fetch_add(1);
      }
    });
  for (auto& th : threads) th.join();
  CHECK(m.drop.calls == 0);
  REQUIRE(mismatches.load() == 0);
}

TEST_CASE("separate models train concurrently with the results of serial training",
          "[reliability][concurrency]") {
  rel::thread_count_guard guard;
  lp::set_num_threads(2);
  auto data = rel::blobs<16>(512, 4, 7);
  auto train_one = [&](std::uint64_t seed) {
    rel::wide_mlp m;
    lp::nn::init(m, lp::init::kaiming_uniform{}, seed);
    lp::optim::adam opt{m, {.lr = 1e-3}};
    lp::train::fit(m, opt, lp::loss::cross_entropy, data,
                   {.epochs = 1, .batch = 64, .seed = seed, .display = lp::train::progress::none});
    return rel::parameter_hash(m);
  };
  constexpr std::size_t n = 4;
  std::array<std::uint64_t, n> serial{}, concurrent{};
  for (std::size_t i = 0; i < n; ++i) serial[i] = train_one(i + 1);
  std::vector<std::thread> threads;
  for (std::size_t i = 0; i < n; ++i) threads.emplace_back([&, i] { concurrent[i] = train_one(i + 1); });
  for (auto& th : threads) th.join();
  REQUIRE(concurrent == serial);
  REQUIRE(serial[0] != serial[1]); // the seeds matter: the hashes are not trivially equal
}
