// MLP training step: lepton vs libtorch 1.13 on the same network, data and optimizer, in one
// process. Also reports lepton's forward+backward time against the FLOP count as a fraction of
// this core's measured FMA peak (issue P3).
//
//   bench_mlp_vs_libtorch [--batch B] [--threads N] [--net 784-256-128-10|784-32-10]
//                         [google benchmark flags]
// Last line of stdout: one JSON object.
#include <benchmark/benchmark.h>
#include <cblas.h>
#include <lepton/lepton.hpp>

#include "bench_peak.hpp"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <map>
#include <string>
#include <vector>

#if LEPTON_BENCH_HAVE_TORCH
#include <torch/torch.h>
#endif

namespace lp = lepton;

namespace {
std::size_t g_batch = 64, g_threads = 1;
std::string g_net = "784-256-128-10";
std::map<std::string, double> g_seconds; // benchmark name -> seconds per iteration (wall)
std::map<std::string, double> g_cpu;     // benchmark name -> CPU seconds per iteration (main thread)

struct capture : benchmark::ConsoleReporter {
  void ReportRuns(std::vector<Run> const& runs) override {
    for (auto const& r : runs)
      if (r.run_type == Run::RT_Iteration && r.iterations > 0) {
        std::string name = r.benchmark_name();
        name = name.substr(0, name.find("/min_time"));
        g_seconds[name] = r.GetAdjustedRealTime() * 1e-9; // default unit: ns
        g_cpu[name] = r.GetAdjustedCPUTime() * 1e-9;
      }
    ConsoleReporter::ReportRuns(runs);
  }
};

struct mlp3 {
  lp::nn::linear<784, 256> fc1;
  lp::nn::linear<256, 128> fc2;
  lp::nn::linear<128, 10> fc3;
  auto operator()(auto const& x) const { return fc3(lp::relu(fc2(lp::relu(fc1(x))))); }
};
struct mlp2 {
  lp::nn::linear<784, 32> fc1;
  lp::nn::linear<32, 10> fc2;
  auto operator()(auto const& x) const { return fc2(lp::relu(fc1(x))); }
};

double g_optimizer_median = 0; // seconds: median of opt.step() inside lepton/train_step

/// The clock of the summary: the thread's CPU time at 1 thread, wall time otherwise (as below).
double step_clock_seconds() {
  timespec t;
  clock_gettime(g_threads == 1 ? CLOCK_THREAD_CPUTIME_ID : CLOCK_MONOTONIC, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

template <class Model> void lepton_step(benchmark::State& st, bool update) {
  Model model;
  lp::nn::init(model, lp::init::kaiming_uniform{}, 1);
  lp::optim::adam opt{model, {.lr = 1e-3}};
  lp::tensor<float, lp::dyn, 784> x(g_batch);
  lp::tensor<int, lp::dyn> y(g_batch);
  for (std::size_t i = 0; i < x.size(); ++i) x.data()[i] = float((i * 2654435761u) % 1000) / 1000.0f;
  for (std::size_t i = 0; i < g_batch; ++i) y(i) = int(i % 10);
  std::vector<double> opt_s; // the optimizer's part of each train step
  for (auto _ : st) {
    float l = lp::backward(lp::loss::cross_entropy(model(x), y));
    if (update) {
      double const t0 = step_clock_seconds();
      opt.step();
      opt_s.push_back(step_clock_seconds() - t0);
    }
    benchmark::DoNotOptimize(l);
  }
  if (update && !opt_s.empty()) {
    std::nth_element(opt_s.begin(), opt_s.begin() + std::ptrdiff_t(opt_s.size() / 2), opt_s.end());
    g_optimizer_median = opt_s[opt_s.size() / 2];
  }
  st.counters["samples_per_s"] =
      benchmark::Counter(double(g_batch), benchmark::Counter::kIsIterationInvariantRate);
}

#if LEPTON_BENCH_HAVE_TORCH
template <int Layers> void torch_step(benchmark::State& st) {
  torch::manual_seed(1);
  torch::nn::Sequential net;
  if (Layers == 3)
    net = torch::nn::Sequential(torch::nn::Linear(784, 256), torch::nn::ReLU(), torch::nn::Linear(256, 128),
                                torch::nn::ReLU(), torch::nn::Linear(128, 10));
  else
    net = torch::nn::Sequential(torch::nn::Linear(784, 32), torch::nn::ReLU(), torch::nn::Linear(32, 10));
  torch::optim::Adam opt(net->parameters(), torch::optim::AdamOptions(1e-3));
  auto x = torch::rand({long(g_batch), 784});
  auto y = torch::arange(long(g_batch)).remainder(10);
  for (auto _ : st) {
    opt.zero_grad();
    auto loss = torch::nn::functional::cross_entropy(net->forward(x), y);
    loss.backward();
    opt.step();
    benchmark::DoNotOptimize(loss.item<float>());
  }
  st.counters["samples_per_s"] =
      benchmark::Counter(double(g_batch), benchmark::Counter::kIsIterationInvariantRate);
}
#endif

void parse_args(int& argc, char** argv) {
  int out = 1;
  for (int i = 1; i < argc; ++i) {
    auto take = [&](char const* flag) -> char const* {
      if (std::strcmp(argv[i], flag) == 0 && i + 1 < argc) return argv[++i];
      return nullptr;
    };
    if (auto v = take("--batch"))
      g_batch = std::strtoul(v, nullptr, 10);
    else if (auto v2 = take("--threads"))
      g_threads = std::strtoul(v2, nullptr, 10);
    else if (auto v3 = take("--net"))
      g_net = v3;
    else
      argv[out++] = argv[i];
  }
  argc = out;
  if (g_batch == 0 || g_threads == 0 || (g_net != "784-256-128-10" && g_net != "784-32-10")) {
    std::fprintf(
        stderr,
        "usage: bench_mlp_vs_libtorch [--batch B>0] [--threads N>0] [--net 784-256-128-10|784-32-10]\n");
    std::exit(2);
  }
}
} // namespace

int main(int argc, char** argv) {
  parse_args(argc, argv);
  lp::set_num_threads(g_threads);
#if LEPTON_BENCH_HAVE_TORCH
  torch::set_num_threads(int(g_threads));
  // Debian's libtorch runs its GEMMs through OpenBLAS, whose own thread pool ignores
  // torch::set_num_threads: without this, "1 thread" libtorch multiplies on every core while
  // the main thread's CPU time counts only part of the work.
  openblas_set_num_threads(int(g_threads));
  // lepton flushes denormals during its computations (core/fpenv.hpp); give libtorch the same
  // setting so that neither side slows down as training drives values into the denormal range.
  at::globalContext().setFlushDenormal(true);
#endif
  bool const big = g_net == "784-256-128-10";
  if (big) {
    benchmark::RegisterBenchmark("lepton/train_step", [](benchmark::State& s) {
      lepton_step<mlp3>(s, true);
    })->MinTime(1.0);
    benchmark::RegisterBenchmark("lepton/forward_backward", [](benchmark::State& s) {
      lepton_step<mlp3>(s, false);
    })->MinTime(1.0);
#if LEPTON_BENCH_HAVE_TORCH
    benchmark::RegisterBenchmark("libtorch/train_step", torch_step<3>)->MinTime(1.0);
#endif
  } else {
    benchmark::RegisterBenchmark("lepton/train_step", [](benchmark::State& s) {
      lepton_step<mlp2>(s, true);
    })->MinTime(1.0);
    benchmark::RegisterBenchmark("lepton/forward_backward", [](benchmark::State& s) {
      lepton_step<mlp2>(s, false);
    })->MinTime(1.0);
#if LEPTON_BENCH_HAVE_TORCH
    benchmark::RegisterBenchmark("libtorch/train_step", torch_step<2>)->MinTime(1.0);
#endif
  }
  benchmark::Initialize(&argc, argv);
  capture rep;
  benchmark::RunSpecifiedBenchmarks(&rep);
  double const peak = lepton_bench::fma_peak_gflops() * double(g_threads);
  double const b = double(g_batch);
  // forward 2*B*sum(in*out); backward: dW for every layer + dX for all but the first layer
  double const fwd =
      big ? 2 * b * (784.0 * 256 + 256.0 * 128 + 128.0 * 10) : 2 * b * (784.0 * 32 + 32.0 * 10);
  double const bwd_x = big ? 2 * b * (256.0 * 128 + 128.0 * 10) : 2 * b * (32.0 * 10);
  double const flops = fwd + fwd + bwd_x;
  // One thread: CPU time of the (only) thread, robust when other processes share the machine.
  // Several threads: wall time (CPU time would count the calling thread only).
  auto& t = g_threads == 1 ? g_cpu : g_seconds;
  double const ls = t["lepton/train_step"], lfb = t["lepton/forward_backward"];
  double const ts = t.count("libtorch/train_step") ? t["libtorch/train_step"] : 0;
  char const* core = std::getenv("OPENBLAS_CORETYPE");
  std::printf("{\"net\": \"%s\", \"batch\": %zu, \"threads\": %zu, \"lepton_samples_per_s\": %.0f, ",
              g_net.c_str(), g_batch, g_threads, b / ls);
  if (ts > 0)
    std::printf("\"libtorch_samples_per_s\": %.0f, \"ratio\": %.3f, \"wall_ratio\": %.3f, ", b / ts, ts / ls,
                g_seconds["libtorch/train_step"] / g_seconds["lepton/train_step"]);
  else
    std::printf("\"libtorch_samples_per_s\": null, \"ratio\": null, ");
  std::printf(
      "\"lepton_step_us\": %.1f, \"libtorch_step_us\": %.1f, \"fwd_bwd_us\": %.1f, \"fwd_bwd_gflops\": %.1f, "
      "\"fma_peak_gflops\": %.1f, \"fwd_bwd_fraction_of_peak\": %.3f, \"optimizer_us\": %.1f, "
      "\"optimizer_fraction\": %.3f, \"timing\": \"%s\", "
      "\"openblas_coretype\": "
      "%s%s%s}\n",
      ls * 1e6, ts * 1e6, lfb * 1e6, flops / lfb * 1e-9, peak, flops / lfb * 1e-9 / peak,
      g_optimizer_median * 1e6, g_optimizer_median / ls, g_threads == 1 ? "cpu" : "wall", core ? "\"" : "",
      core ? core : "null", core ? "\"" : "");
}
