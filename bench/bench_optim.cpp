// Optimizer step on 10^7 parameters: lepton's adam / sgd (momentum) at 1 and 2 threads against
// libtorch 1.13's torch::optim::Adam / SGD on the same sizes, in the same run.
//
//   bench_optim [--reps R]
//
// Prints one JSON line: milliseconds per step (fastest of R steps at each thread count, the two
// counts alternating step by step) for each optimizer, the 2-thread speedups, and libtorch/lepton
// time ratios (above 1: lepton is faster). Wall time.
#include <lepton/lepton.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <memory>
#include <string>

#if LEPTON_BENCH_HAVE_TORCH
#include <torch/torch.h>
#endif

namespace lp = lepton;

namespace {
constexpr std::size_t g_params = 10'000'000;
std::size_t g_reps = 20;

// 10^7 parameters in four tensors (a large weight, two middle ones, a bias), like a model's.
struct model {
  lp::param<float, g_params / 2> a;
  lp::param<float, g_params / 4> b;
  lp::param<float, g_params / 4 - 1000> c;
  lp::param<float, 1000> d;
};

void fill(model& m) {
  std::size_t k = 0;
  lp::nn::for_each_parameter(m, [&](std::string_view, auto& p) {
    p.grad = typename std::remove_cvref_t<decltype(p)>::tensor_type(p.value.shape());
    for (std::size_t i = 0; i < p.value.size(); ++i, ++k) {
      p.value.data()[i] = float(std::sin(0.001 * double(k)));
      p.grad.data()[i] = float(std::cos(0.0013 * double(k)));
    }
  });
}

struct pair_ms {
  double one = std::numeric_limits<double>::infinity(), two = one;
};

/// Times `step` alternately at 1 and at 2 threads (`set_threads(n)` switches, outside the timing),
/// fastest of g_reps each: the host's memory bandwidth drifts, and alternation exposes both thread
/// counts to the same drift.
template <class Step, class SetThreads> pair_ms alternate_ms(Step&& step, SetThreads&& set_threads) {
  auto time_one = [&] {
    auto const t0 = std::chrono::steady_clock::now();
    step();
    return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  };
  pair_ms r;
  for (std::size_t k = 0; k < g_reps; ++k) {
    set_threads(1);
    if (k == 0) step(); // warm-up: pages, caches
    r.one = std::min(r.one, time_one());
    set_threads(2);
    if (k == 0) step(); // warm-up: the pool's threads
    r.two = std::min(r.two, time_one());
  }
  return r;
}

template <class Make> pair_ms lepton_ms(Make make) {
  auto m = std::make_unique<model>();
  fill(*m);
  auto opt = make(*m);
  return alternate_ms([&] { opt.step(); },
                      [](std::size_t n) { lp::set_num_threads(n, lp::oversubscribe::yes); });
}

#if LEPTON_BENCH_HAVE_TORCH
template <class Make> pair_ms torch_ms(Make make) {
  torch::NoGradGuard ng;
  std::vector<torch::Tensor> ps;
  for (long n : {long(g_params / 2), long(g_params / 4), long(g_params / 4 - 1000), 1000L}) {
    auto p = torch::sin(torch::arange(n, torch::kFloat) * 0.001f).requires_grad_(true);
    p.mutable_grad() = torch::cos(torch::arange(n, torch::kFloat) * 0.0013f);
    ps.push_back(p);
  }
  auto opt = make(ps);
  return alternate_ms([&] { opt.step(); }, [](std::size_t n) { torch::set_num_threads(int(n)); });
}
#endif

void parse_args(int argc, char** argv) {
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--reps") == 0 && i + 1 < argc)
      g_reps = std::strtoul(argv[++i], nullptr, 10);
    else {
      std::fprintf(stderr, "usage: bench_optim [--reps R>0]\n");
      std::exit(2);
    }
  }
  if (g_reps == 0) {
    std::fprintf(stderr, "bench_optim: --reps must be > 0\n");
    std::exit(2);
  }
}
} // namespace

int main(int argc, char** argv) {
  parse_args(argc, argv);
  auto adam = [](model& m) { return lp::optim::adam{m, {.lr = 1e-3}}; };
  auto sgd = [](model& m) { return lp::optim::sgd{m, {.lr = 1e-2, .momentum = 0.9}}; };
  auto const la = lepton_ms(adam), ls = lepton_ms(sgd);
  std::printf("{\"params\": %zu, \"adam_ms_1t\": %.3f, \"adam_ms_2t\": %.3f, \"adam_speedup_2t\": %.3f, "
              "\"sgd_ms_1t\": %.3f, \"sgd_ms_2t\": %.3f, \"sgd_speedup_2t\": %.3f",
              g_params, la.one, la.two, la.one / la.two, ls.one, ls.two, ls.one / ls.two);
#if LEPTON_BENCH_HAVE_TORCH
  auto tadam = [](std::vector<torch::Tensor>& p) {
    return torch::optim::Adam(p, torch::optim::AdamOptions(1e-3));
  };
  auto tsgd = [](std::vector<torch::Tensor>& p) {
    return torch::optim::SGD(p, torch::optim::SGDOptions(1e-2).momentum(0.9));
  };
  auto const ta = torch_ms(tadam), ts = torch_ms(tsgd);
  std::printf(", \"torch_adam_ms_1t\": %.3f, \"torch_adam_ms_2t\": %.3f, \"torch_sgd_ms_1t\": %.3f, "
              "\"torch_sgd_ms_2t\": %.3f, \"adam_vs_torch_1t\": %.3f, \"adam_vs_torch_2t\": %.3f, "
              "\"sgd_vs_torch_1t\": %.3f, \"sgd_vs_torch_2t\": %.3f",
              ta.one, ta.two, ts.one, ts.two, ta.one / la.one, ta.two / la.two, ts.one / ls.one,
              ts.two / ls.two);
#endif
  std::printf(", \"threads_available\": %zu}\n", lp::hardware_threads());
  return 0;
}
