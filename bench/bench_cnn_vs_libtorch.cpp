// CNN training step: lepton vs libtorch on the same network, data and optimizer, in one process,
// plus (LeNet) lepton's convolution forward/backward throughput as a fraction of this core's
// measured FMA peak (issues P5, P13).
//
// --net lenet (default): LeNet-5 for 28x28 inputs: conv 5x5 (6, padding 2) - ReLU - max pool 2 -
// conv 5x5 (16) - ReLU - max pool 2 - fc 400-120 - ReLU - fc 120-84 - ReLU - fc 84-10.
// --net cifar: the CIFAR-10 Keras-style net for 3x32x32 inputs: conv 3x3 (32) - ReLU - max pool 2 -
// conv 3x3 (64) - ReLU - max pool 2 - conv 3x3 (64) - ReLU - flatten (1024) - fc 1024-64 - ReLU -
// fc 64-10 (valid convolutions; the pools floor 30 -> 15 and 13 -> 6).
// Both: cross-entropy, Adam (lr 1e-3).
//
//   bench_cnn_vs_libtorch [--net lenet|cifar] [--batch B] [--threads N] [google benchmark flags]
// Last line of stdout: one JSON object.
#include <benchmark/benchmark.h>
#include <cblas.h>
#include <lepton/lepton.hpp>

#include "bench_peak.hpp"
#include <lepton/nn/layers/conv2d.hpp>
#include <lepton/nn/layers/pooling.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#if LEPTON_BENCH_HAVE_TORCH
#include <torch/torch.h>
#endif

namespace lp = lepton;

namespace {
std::size_t g_batch = 64, g_threads = 1;
bool g_cifar = false;                    // --net cifar
std::map<std::string, double> g_seconds; // benchmark name -> seconds per iteration

// With one thread the comparison uses CPU time: on a shared machine, wall time also counts the time
// other processes hold the core. With more threads it uses wall time (CPU time would only count
// the calling thread).
bool use_cpu_time() { return g_threads == 1; }

struct capture : benchmark::ConsoleReporter {
  void ReportRuns(std::vector<Run> const& runs) override {
    for (auto const& r : runs)
      if (r.run_type == Run::RT_Iteration && r.iterations > 0) {
        std::string name = r.benchmark_name();
        if (auto at = name.find("/min_time:"); at != std::string::npos) name.erase(at); // "lepton/train_step"
        double const ns =
            use_cpu_time() ? r.GetAdjustedCPUTime() : r.GetAdjustedRealTime(); // default unit: ns
        g_seconds[name] = ns * 1e-9;
      }
    ConsoleReporter::ReportRuns(runs);
  }
};

struct lenet {
  lp::nn::conv2d<1, 6, 5, 5, 1, 2> conv1; // (b, 1, 28, 28) -> (b, 6, 28, 28)
  lp::nn::max_pool2d<2> pool1;            //                -> (b, 6, 14, 14)
  lp::nn::conv2d<6, 16, 5, 5> conv2;      //                -> (b, 16, 10, 10)
  lp::nn::max_pool2d<2> pool2;            //                -> (b, 16, 5, 5)
  lp::nn::linear<400, 120> fc1;
  lp::nn::linear<120, 84> fc2;
  lp::nn::linear<84, 10> fc3;
  auto operator()(auto const& x) const {
    auto h = pool2(lp::relu(conv2(pool1(lp::relu(conv1(x))))));
    return fc3(lp::relu(fc2(lp::relu(fc1(lp::flatten(h))))));
  }
};

struct cifar_keras {
  lp::nn::conv2d<3, 32, 3, 3> conv1;  // (b, 3, 32, 32) -> (b, 32, 30, 30)
  lp::nn::max_pool2d<2> pool1;        //                -> (b, 32, 15, 15)
  lp::nn::conv2d<32, 64, 3, 3> conv2; //                -> (b, 64, 13, 13)
  lp::nn::max_pool2d<2> pool2;        //                -> (b, 64, 6, 6)
  lp::nn::conv2d<64, 64, 3, 3> conv3; //                -> (b, 64, 4, 4)
  lp::nn::linear<1024, 64> fc1;
  lp::nn::linear<64, 10> fc2;
  auto operator()(auto const& x) const {
    auto h = lp::relu(conv3(pool2(lp::relu(conv2(pool1(lp::relu(conv1(x))))))));
    return fc2(lp::relu(fc1(lp::flatten(h))));
  }
};

// Multiply-adds per sample of each CIFAR layer (forward).
constexpr double cifar_conv_macs[3] = {32.0 * 3 * 9 * 30 * 30, 64.0 * 32 * 9 * 13 * 13,
                                       64.0 * 64 * 9 * 4 * 4};
constexpr double cifar_fc_macs = 1024.0 * 64 + 64.0 * 10;

// Multiply-adds per sample of each layer (forward).
constexpr double conv1_macs = 6.0 * 1 * 25 * 28 * 28;
constexpr double conv2_macs = 16.0 * 6 * 25 * 10 * 10;
constexpr double fc_macs = 400.0 * 120 + 120.0 * 84 + 84.0 * 10;

template <class X> void fill_inputs(X& x, lp::tensor<int, lp::dyn>& y) {
  for (std::size_t i = 0; i < x.size(); ++i) x.data()[i] = float((i * 2654435761u) % 1000) / 1000.0f;
  for (std::size_t i = 0; i < y.size(); ++i) y(i) = int(i % 10);
}

/// One training step (update) or forward + backward of Net on inputs (batch, C, H, W).
template <class Net, std::size_t C, std::size_t H, std::size_t W>
void lepton_step(benchmark::State& st, bool update) {
  Net model;
  lp::nn::init(model, lp::init::kaiming_uniform{}, 1);
  lp::optim::adam opt{model, {.lr = 1e-3}};
  lp::tensor<float, lp::dyn, C, H, W> x(g_batch);
  lp::tensor<int, lp::dyn> y(g_batch);
  fill_inputs(x, y);
  for (auto _ : st) {
    float l = lp::backward(lp::loss::cross_entropy(model(x), y));
    if (update) opt.step();
    benchmark::DoNotOptimize(l);
  }
  st.counters["samples_per_s"] =
      benchmark::Counter(double(g_batch), benchmark::Counter::kIsIterationInvariantRate);
}

/// The two LeNet convolutions alone, bias included, at a fixed batch of `conv_batch`: forward, or
/// forward + backward (dW and db of both, dX of conv2; conv1's input is data and gets no gradient,
/// as in training).
constexpr std::size_t conv_batch = 64;
void lepton_convs(benchmark::State& st, bool backward) {
  lp::nn::conv2d<1, 6, 5, 5, 1, 2> c1;
  lp::nn::conv2d<6, 16, 5, 5> c2;
  lp::nn::init(c1, lp::init::kaiming_uniform{}, 1);
  lp::nn::init(c2, lp::init::kaiming_uniform{}, 2);
  lp::tensor<float, lp::dyn, 1, 28, 28> x1(conv_batch);
  lp::tensor<int, lp::dyn> unused(conv_batch);
  fill_inputs(x1, unused);
  lp::param<float, conv_batch, 6, 14, 14> x2; // a parameter: its gradient (dX) is computed
  for (std::size_t i = 0; i < x2.value.size(); ++i) x2.value.data()[i] = float((i * 40503u) % 1000) / 1000.0f;
  lp::tensor<float, lp::dyn, 6, 28, 28> y1(conv_batch);
  lp::tensor<float, conv_batch, 16, 10, 10> y2;
  for (auto _ : st) {
    if (backward) {
      // Sums of the outputs: their gradient (all ones) costs one fill, the rest is the convs' backward.
      float l = lp::backward(lp::sum(c1(x1)) + lp::sum(c2(x2)));
      benchmark::DoNotOptimize(l);
    } else {
      y1 = c1(x1);
      y2 = c2(x2);
      benchmark::DoNotOptimize(y1.data());
      benchmark::DoNotOptimize(y2.data());
    }
  }
}

#if LEPTON_BENCH_HAVE_TORCH
struct torch_lenet : torch::nn::Module {
  torch::nn::Conv2d conv1{torch::nn::Conv2dOptions(1, 6, 5).padding(2)};
  torch::nn::Conv2d conv2{torch::nn::Conv2dOptions(6, 16, 5)};
  torch::nn::Linear fc1{400, 120}, fc2{120, 84}, fc3{84, 10};
  torch_lenet() {
    register_module("conv1", conv1);
    register_module("conv2", conv2);
    register_module("fc1", fc1);
    register_module("fc2", fc2);
    register_module("fc3", fc3);
  }
  torch::Tensor forward(torch::Tensor x) {
    x = torch::max_pool2d(torch::relu(conv1->forward(x)), 2);
    x = torch::max_pool2d(torch::relu(conv2->forward(x)), 2);
    x = x.flatten(1);
    return fc3->forward(torch::relu(fc2->forward(torch::relu(fc1->forward(x)))));
  }
};

struct torch_cifar_keras : torch::nn::Module {
  torch::nn::Conv2d conv1{torch::nn::Conv2dOptions(3, 32, 3)};
  torch::nn::Conv2d conv2{torch::nn::Conv2dOptions(32, 64, 3)};
  torch::nn::Conv2d conv3{torch::nn::Conv2dOptions(64, 64, 3)};
  torch::nn::Linear fc1{1024, 64}, fc2{64, 10};
  torch_cifar_keras() {
    register_module("conv1", conv1);
    register_module("conv2", conv2);
    register_module("conv3", conv3);
    register_module("fc1", fc1);
    register_module("fc2", fc2);
  }
  torch::Tensor forward(torch::Tensor x) {
    x = torch::max_pool2d(torch::relu(conv1->forward(x)), 2);
    x = torch::max_pool2d(torch::relu(conv2->forward(x)), 2);
    x = torch::relu(conv3->forward(x)).flatten(1);
    return fc2->forward(torch::relu(fc1->forward(x)));
  }
};

template <class Net> void torch_step(benchmark::State& st, long c, long h, long w) {
  torch::manual_seed(1);
  auto net = std::make_shared<Net>();
  torch::optim::Adam opt(net->parameters(), torch::optim::AdamOptions(1e-3));
  auto x = torch::rand({long(g_batch), c, h, w});
  auto y = torch::arange(long(g_batch)).remainder(10);
  for (auto _ : st) {
    opt.zero_grad();
    auto loss = torch::nn::functional::cross_entropy(net->forward(x), y);
    loss.backward();
    opt.step();
    benchmark::DoNotOptimize(loss.template item<float>());
  }
  st.counters["samples_per_s"] =
      benchmark::Counter(double(g_batch), benchmark::Counter::kIsIterationInvariantRate);
}

void torch_convs(benchmark::State& st, bool backward) {
  torch::manual_seed(1);
  torch::nn::Conv2d c1{torch::nn::Conv2dOptions(1, 6, 5).padding(2)};
  torch::nn::Conv2d c2{torch::nn::Conv2dOptions(6, 16, 5)};
  auto x1 = torch::rand({long(conv_batch), 1, 28, 28});
  auto x2 = torch::rand({long(conv_batch), 6, 14, 14}, torch::requires_grad(backward));
  for (auto _ : st) {
    if (backward) {
      c1->zero_grad();
      c2->zero_grad();
      x2.mutable_grad() = torch::Tensor();
      auto l = c1->forward(x1).sum() + c2->forward(x2).sum();
      l.backward();
      benchmark::DoNotOptimize(l.item<float>());
    } else {
      torch::NoGradGuard ng;
      auto a = c1->forward(x1);
      auto b = c2->forward(x2);
      benchmark::DoNotOptimize(a.data_ptr());
      benchmark::DoNotOptimize(b.data_ptr());
    }
  }
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
    else if (auto n = take("--net")) {
      if (std::strcmp(n, "cifar") == 0)
        g_cifar = true;
      else if (std::strcmp(n, "lenet") != 0)
        g_batch = 0; // the usage message below
    } else if (auto v2 = take("--threads"))
      g_threads = std::strtoul(v2, nullptr, 10);
    else
      argv[out++] = argv[i];
  }
  argc = out;
  if (g_batch == 0 || g_threads == 0) {
    std::fprintf(stderr, "usage: bench_cnn_vs_libtorch [--net lenet|cifar] [--batch B>0] [--threads N>0]\n");
    std::exit(2);
  }
}
/// The start of the JSON line, the same for both nets: the net, the setup, lepton's samples/s and
/// libtorch's with the ratio (null when libtorch was not built in or not run). `ls`, `ts`: the
/// step times in seconds.
void print_json_head(char const* net, double ls, double ts) {
  double const b = double(g_batch);
  std::printf("{\"net\": \"%s\", \"batch\": %zu, \"threads\": %zu, \"timing\": \"%s\", "
              "\"lepton_samples_per_s\": %.0f, ",
              net, g_batch, g_threads, use_cpu_time() ? "cpu" : "wall", b / ls);
  if (ts > 0)
    std::printf("\"libtorch_samples_per_s\": %.0f, \"ratio\": %.3f, ", b / ts, ts / ls);
  else
    std::printf("\"libtorch_samples_per_s\": null, \"ratio\": null, ");
}

/// The JSON line of --net cifar: the step keys of the LeNet line.
void print_cifar() {
  double const peak = lepton_bench::fma_peak_gflops() * double(g_threads);
  double const b = double(g_batch);
  double const ls = g_seconds["lepton/train_step"], lfb = g_seconds["lepton/forward_backward"];
  double const ts = g_seconds.count("libtorch/train_step") ? g_seconds["libtorch/train_step"] : 0;
  double const convs = cifar_conv_macs[0] + cifar_conv_macs[1] + cifar_conv_macs[2];
  // forward + dW of every layer + dX of every layer but the first
  double const step_flops =
      2 * b * (2 * (convs + cifar_fc_macs) + cifar_conv_macs[1] + cifar_conv_macs[2] + cifar_fc_macs);
  char const* core = std::getenv("OPENBLAS_CORETYPE");
  print_json_head("cifar10_keras", ls, ts);
  std::printf(
      "\"lepton_step_us\": %.1f, \"libtorch_step_us\": %.1f, \"fwd_bwd_us\": %.1f, \"fwd_bwd_gflops\": "
      "%.2f, \"fwd_bwd_fraction_of_peak\": %.3f, \"fma_peak_gflops\": %.1f, \"isa\": \"%s\", "
      "\"openblas_coretype\": %s%s%s}\n",
      ls * 1e6, ts * 1e6, lfb * 1e6, step_flops / lfb * 1e-9, step_flops / lfb * 1e-9 / peak, peak,
      lp::to_string(lp::active_isa()), core ? "\"" : "", core ? core : "null", core ? "\"" : "");
}
} // namespace

int main(int argc, char** argv) {
  parse_args(argc, argv);
  lp::set_num_threads(g_threads);
#if LEPTON_BENCH_HAVE_TORCH
  torch::set_num_threads(int(g_threads));
  // libtorch's GEMMs (im2col convolutions, linear layers) run in OpenBLAS, whose thread pool
  // ignores torch::set_num_threads.
  openblas_set_num_threads(int(g_threads));
#endif
  if (g_cifar) {
    benchmark::RegisterBenchmark("lepton/train_step", [](benchmark::State& s) {
      lepton_step<cifar_keras, 3, 32, 32>(s, true);
    })->MinTime(1.0);
    benchmark::RegisterBenchmark("lepton/forward_backward", [](benchmark::State& s) {
      lepton_step<cifar_keras, 3, 32, 32>(s, false);
    })->MinTime(1.0);
#if LEPTON_BENCH_HAVE_TORCH
    benchmark::RegisterBenchmark("libtorch/train_step", [](benchmark::State& s) {
      torch_step<torch_cifar_keras>(s, 3, 32, 32);
    })->MinTime(1.0);
#endif
    benchmark::Initialize(&argc, argv);
    capture rep;
    benchmark::RunSpecifiedBenchmarks(&rep);
    print_cifar();
    return 0;
  }
  benchmark::RegisterBenchmark("lepton/train_step", [](benchmark::State& s) {
    lepton_step<lenet, 1, 28, 28>(s, true);
  })->MinTime(1.0);
  benchmark::RegisterBenchmark("lepton/forward_backward", [](benchmark::State& s) {
    lepton_step<lenet, 1, 28, 28>(s, false);
  })->MinTime(1.0);
  benchmark::RegisterBenchmark("lepton/convs_forward", [](benchmark::State& s) {
    lepton_convs(s, false);
  })->MinTime(0.5);
  benchmark::RegisterBenchmark("lepton/convs_forward_backward", [](benchmark::State& s) {
    lepton_convs(s, true);
  })->MinTime(0.5);
#if LEPTON_BENCH_HAVE_TORCH
  benchmark::RegisterBenchmark("libtorch/train_step", [](benchmark::State& s) {
    torch_step<torch_lenet>(s, 1, 28, 28);
  })->MinTime(1.0);
  benchmark::RegisterBenchmark("libtorch/convs_forward", [](benchmark::State& s) {
    torch_convs(s, false);
  })->MinTime(0.5);
  benchmark::RegisterBenchmark("libtorch/convs_forward_backward", [](benchmark::State& s) {
    torch_convs(s, true);
  })->MinTime(0.5);
#endif
  benchmark::Initialize(&argc, argv);
  capture rep;
  benchmark::RunSpecifiedBenchmarks(&rep);
  double const peak = lepton_bench::fma_peak_gflops() * double(g_threads);
  double const b = double(g_batch);
  // conv forward: 2 flops per MAC; conv backward: dW of both convs + dX of conv2 (conv1's input is data).
  double const cbatch = double(conv_batch);
  double const conv_fwd = 2 * cbatch * (conv1_macs + conv2_macs);
  double const conv_bwd = 2 * cbatch * (conv1_macs + 2 * conv2_macs);
  double const ls = g_seconds["lepton/train_step"], lfb = g_seconds["lepton/forward_backward"];
  double const cf = g_seconds["lepton/convs_forward"], cfb = g_seconds["lepton/convs_forward_backward"];
  double const cb = cfb > cf ? cfb - cf : 0;
  double const ts = g_seconds.count("libtorch/train_step") ? g_seconds["libtorch/train_step"] : 0;
  double const tcf = g_seconds.count("libtorch/convs_forward") ? g_seconds["libtorch/convs_forward"] : 0;
  double const tcfb =
      g_seconds.count("libtorch/convs_forward_backward") ? g_seconds["libtorch/convs_forward_backward"] : 0;
  // whole step: forward + dW of every layer + dX of every layer but the first
  double const step_flops = 2 * b * (2 * (conv1_macs + conv2_macs + fc_macs) + conv2_macs + fc_macs);
  char const* core = std::getenv("OPENBLAS_CORETYPE");
  print_json_head("lenet5", ls, ts);
  std::printf(
      "\"lepton_step_us\": %.1f, \"libtorch_step_us\": %.1f, \"fwd_bwd_us\": %.1f, \"fwd_bwd_gflops\": %.2f, "
      "\"conv_fwd_us\": %.1f, \"conv_bwd_us\": %.1f, \"conv_fwd_gflops\": %.2f, \"conv_bwd_gflops\": %.2f, "
      "\"libtorch_conv_fwd_us\": %.1f, \"libtorch_conv_fwd_bwd_us\": %.1f, \"fma_peak_gflops\": %.1f, "
      "\"conv_fwd_fraction_of_peak\": %.3f, \"conv_bwd_fraction_of_peak\": %.3f, \"openblas_coretype\": "
      "%s%s%s}\n",
      ls * 1e6, ts * 1e6, lfb * 1e6, step_flops / lfb * 1e-9, cf * 1e6, cb * 1e6, conv_fwd / cf * 1e-9,
      cb > 0 ? conv_bwd / cb * 1e-9 : 0.0, tcf * 1e6, tcfb * 1e6, peak, conv_fwd / cf * 1e-9 / peak,
      cb > 0 ? conv_bwd / cb * 1e-9 / peak : 0.0, core ? "\"" : "", core ? core : "null", core ? "\"" : "");
}
