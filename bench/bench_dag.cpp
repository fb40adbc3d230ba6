// bench_dag: what a value used twice costs (issue P11, core v2).
//
//   bench_dag [--threads N] [--reps R]
//
// - Residual stacks of N blocks `relu(fc_k(x)) + x` (256 wide, batch 256): the time of one
//   lepton::backward(sum(stack(x))) (forward + backward) for N = 1 .. LEPTON_DAG_MAX_BLOCKS. With a
//   graph that is a DAG the cost grows linearly in N; a tree that recomputes a value once per use
//   doubles the work per block. With a constant input (the data), block 1 needs no input gradient
//   (2 GEMMs) while every later block runs 3, so N = 5 is at least 14/2 = 7x N = 1; the same
//   stacks on an input that needs its gradient (a param) run exactly 3N GEMMs (N = 5: 5x).
// - The constant-input stacks again with each block marked lp::share(...): the residual stream is
//   materialised once per block instead of being recomputed by every fused loop that reads it.
// - h = matmul(x, w) (256 x 256 x 256): backward(sum(h + relu(h))) against backward(sum(h)); a DAG
//   evaluates h once and sums its two incoming gradients before one pass through the matmul's
//   backward (ratio near 1); a tree runs the GEMM and its backward twice (ratio near 2).
//
// Each figure is the fastest of R repetitions (the host drifts; the fastest is the least disturbed).
// The last line of stdout is one JSON object. Build: -DLEPTON_BUILD_BENCH=ON, target bench_dag.
// Compile time is part of the figure: the N = 8 program must compile in <= 25 s at -O2 (P11).

#include <lepton/lepton.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <utility>

#ifndef LEPTON_DAG_MAX_BLOCKS
#define LEPTON_DAG_MAX_BLOCKS 5
#endif

namespace lp = lepton;

namespace {

constexpr std::size_t width = 256, batch = 256;

/// Shared: the block's output is marked lp::share, so the residual stream is materialised once per
/// block (otherwise its elementwise part is recomputed in every fused loop that reads it).
template <bool Shared> struct block {
  lp::nn::linear<width, width> fc;
  auto operator()(auto const& x) const {
    if constexpr (Shared)
      return lp::share(lp::relu(fc(x)) + x);
    else
      return lp::relu(fc(x)) + x;
  }
};

template <std::size_t N, bool Shared = false> struct stack {
  std::array<block<Shared>, N> blocks;
  template <std::size_t I = 0, class X> auto apply(X const& x) const {
    if constexpr (I == N)
      return lp::detail::as_expr(x);
    else
      return apply<I + 1>(blocks[I](x));
  }
  auto operator()(auto const& x) const { return apply(x); }
};

template <class F> double fastest(int reps, F&& f) {
  double best = std::numeric_limits<double>::infinity();
  f(); // warm-up: the arena grows once
  for (int r = 0; r < reps; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    f();
    double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::min(best, s);
  }
  return best;
}

void fill(lp::tensor<float, lp::dyn, width>& x, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  for (auto& v : x.flat()) v = u(rng);
}

template <std::size_t N, bool Shared, class X> double residual_seconds(int reps, X const& x) {
  stack<N, Shared> model;
  lp::nn::init(model, lp::init::kaiming_uniform{}, 7);
  volatile float sink = 0;
  double s = fastest(reps, [&] { sink = lp::backward(lp::sum(model(x))); });
  (void)sink;
  return s;
}

template <bool Shared, class X, std::size_t... I>
void residual_all(int reps, X const& x, double* out, std::index_sequence<I...>) {
  ((out[I] = residual_seconds<I + 1, Shared>(reps, x)), ...);
}

} // namespace

int main(int argc, char** argv) {
  std::size_t threads = 1;
  int reps = 20;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc)
      threads = std::strtoul(argv[++i], nullptr, 10);
    else if (a == "--reps" && i + 1 < argc)
      reps = std::atoi(argv[++i]);
    else {
      std::fprintf(stderr, "usage: bench_dag [--threads N] [--reps R]\n");
      return 2;
    }
  }
  lp::set_num_threads(threads);
  lp::tensor<float, lp::dyn, width> x(batch);
  fill(x, 1);

  constexpr std::size_t max_n = LEPTON_DAG_MAX_BLOCKS;
  double res[max_n];
  residual_all<false>(reps, x, res, std::make_index_sequence<max_n>{});
  for (std::size_t n = 0; n < max_n; ++n)
    std::printf("residual N=%zu: %.3f ms (%.2fx N=1)\n", n + 1, res[n] * 1e3, res[n] / res[0]);
  // The same stacks on an input that needs its gradient (a stack inside a larger network): then
  // block 1 runs three GEMMs like every other block, and the GEMM count is exactly 3N.
  lp::param<float, batch, width> xp;
  std::copy_n(x.data(), x.size(), xp.value.data());
  double res_in[max_n];
  residual_all<false>(reps, xp, res_in, std::make_index_sequence<max_n>{});
  for (std::size_t n = 0; n < max_n; ++n)
    std::printf("residual, input gradient, N=%zu: %.3f ms (%.2fx N=1)\n", n + 1, res_in[n] * 1e3,
                res_in[n] / res_in[0]);
  // The constant-input stacks with each block's output marked lp::share.
  double res_sh[max_n];
  residual_all<true>(reps, x, res_sh, std::make_index_sequence<max_n>{});
  for (std::size_t n = 0; n < max_n; ++n)
    std::printf("residual, shared blocks, N=%zu: %.3f ms (%.2fx N=1)\n", n + 1, res_sh[n] * 1e3,
                res_sh[n] / res_sh[0]);

  lp::param<float, width, width> w;
  {
    std::mt19937 rng(3);
    std::uniform_real_distribution<float> u(-0.06f, 0.06f);
    for (auto& v : w.value.flat()) v = u(rng);
  }
  volatile float sink = 0;
  double const plain = fastest(reps, [&] {
    auto h = lp::matmul(x, w);
    sink = lp::backward(lp::sum(h));
  });
  double const twice = fastest(reps, [&] {
    auto h = lp::matmul(x, w);
    sink = lp::backward(lp::sum(h + lp::relu(h)));
  });
  (void)sink;
  std::printf("backward(sum(h)) %.3f ms, backward(sum(h + relu(h))) %.3f ms: %.2fx\n", plain * 1e3,
              twice * 1e3, twice / plain);

  std::printf("{\"threads\": %zu, \"width\": %zu, \"batch\": %zu, \"residual_ms\": [", threads, width, batch);
  for (std::size_t n = 0; n < max_n; ++n) std::printf("%s%.4f", n ? ", " : "", res[n] * 1e3);
  std::printf("], \"residual_input_grad_ms\": [");
  for (std::size_t n = 0; n < max_n; ++n) std::printf("%s%.4f", n ? ", " : "", res_in[n] * 1e3);
  std::size_t const five = std::min<std::size_t>(max_n, 5) - 1;
  std::printf("], \"residual_shared_ms\": [");
  for (std::size_t n = 0; n < max_n; ++n) std::printf("%s%.4f", n ? ", " : "", res_sh[n] * 1e3);
  std::printf("], \"residual_shared_ratio_5_vs_1\": %.3f", res_sh[five] / res_sh[0]);
  std::printf(", \"residual_ratio_5_vs_1\": %.3f, \"residual_input_grad_ratio_5_vs_1\": %.3f, "
              "\"h_plus_relu_h_vs_h\": %.3f}\n",
              res[five] / res[0], res_in[five] / res_in[0], twice / plain);
}
