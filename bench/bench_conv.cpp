// Convolution throughput per pass (issue P13): lepton against oneDNN 2.x (the Debian libdnnl-dev
// build, when CMake finds it) and libtorch, in the same run, as a fraction of this core's FMA peak.
//
// Layers (batch 64, fp32, NCHW, stride 1): LeNet conv1 1->6 5x5 pad 2 on 28x28, conv2 6->16 5x5 on
// 14x14; the CIFAR-10 Keras-style net's c1 3->32 3x3 on 32x32, c2 32->64 on 15x15, c3 64->64 on 6x6.
// Passes: forward (with bias), backward-data (dX), backward-weights (dW and db). Each pass counts
// 2 * N*Co*Ho*Wo*Ci*Kh*Kw flops (the bias is not counted).
//
// lepton: the conv2d evaluator (backend/cpu/conv.hpp) driven directly, the code lp::backward runs
// for an nn::conv2d layer: `compute` for the forward pass and `backward_rule` with a fixed dY and
// only the wanted operands unfrozen for each gradient (the forward value is computed once, outside
// the timed loop). Also the layer through the public API: `y = conv(x)` and
// `lp::backward(lp::sum(conv(x)))` (dW, db, and dX unless the layer is the first of its net).
// oneDNN: convolution_forward / convolution_backward_data / convolution_backward_weights with
// algorithm::convolution_direct in two layouts: `any` (oneDNN's blocked layouts; the reorders from
// NCHW are done once, outside the timed loop) and plain nchw/oihw. libtorch: torch::conv2d and
// at::convolution_backward (output_mask picks the gradient) on NCHW tensors.
//
//   bench_conv [--threads N] [--algo auto|direct|im2col] [google benchmark flags]
// --algo forces lepton's conv2d algorithm (the tests' switch, detail::conv_algo_override) where the
// shape allows it; the JSON's lepton_algo says what each lepton pass ran.
// Last line of stdout: one JSON object.
#include <benchmark/benchmark.h>
#include <cblas.h>
#include <lepton/lepton.hpp>

#include "bench_peak.hpp"
#include <lepton/nn/layers/conv2d.hpp>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <string>
#include <unordered_map>
#include <vector>

#include <unistd.h>

#if LEPTON_BENCH_HAVE_DNNL
#include <omp.h>
#include <oneapi/dnnl/dnnl.hpp>
#endif
#if LEPTON_BENCH_HAVE_TORCH
#include <torch/torch.h>
#endif

namespace lp = lepton;
namespace ld = lepton::detail;

namespace {
constexpr std::size_t batch = 64;
std::size_t g_threads = 1;
std::map<std::string, double> g_seconds;   // benchmark name -> seconds per iteration
std::map<std::string, std::string> g_impl; // "<layer>/<pass>/<variant>" -> oneDNN implementation
std::map<std::string, std::string> g_algo; // "<layer>/<pass>" -> lepton's algorithm
char const* g_algo_flag = "auto";
bool use_cpu_time() { return g_threads == 1; } // as in bench_cnn_vs_libtorch: CPU time at 1 thread

struct capture : benchmark::ConsoleReporter {
  // Colours only on a terminal: a reset code would otherwise start the JSON line in a log file.
  capture() : ConsoleReporter(isatty(fileno(stdout)) ? OO_ColorTabular : OO_Tabular) {}
  void ReportRuns(std::vector<Run> const& runs) override {
    for (auto const& r : runs)
      if (r.run_type == Run::RT_Iteration && r.iterations > 0) {
        std::string name = r.benchmark_name();
        if (auto at = name.find("/min_time:"); at != std::string::npos) name.erase(at);
        double const ns = use_cpu_time() ? r.GetAdjustedCPUTime() : r.GetAdjustedRealTime();
        g_seconds[name] = ns * 1e-9;
      }
    ConsoleReporter::ReportRuns(runs);
  }
};

enum class pass { fwd, bwd_data, bwd_weights };
constexpr pass passes[] = {pass::fwd, pass::bwd_data, pass::bwd_weights};
char const* pass_name(pass p) {
  return p == pass::fwd ? "fwd" : p == pass::bwd_data ? "bwd_data" : "bwd_weights";
}

/// One convolution layer: square input (c, h, h), co output channels, k x k kernel, padding p.
struct spec {
  char const* name;
  std::size_t c, co, k, p, h;
  bool first; // the first layer of its net: its input is data, training computes no dX for it
  std::size_t ho() const { return h + 2 * p - k + 1; }
  double macs() const { return double(batch * co * ho() * ho() * c * k * k); }
};
constexpr spec specs[] = {
    {"lenet_conv1", 1, 6, 5, 2, 28, true}, {"lenet_conv2", 6, 16, 5, 0, 14, false},
    {"cifar_c1", 3, 32, 3, 0, 32, true},   {"cifar_c2", 32, 64, 3, 0, 15, false},
    {"cifar_c3", 64, 64, 3, 0, 6, false},
};

// Deterministic inputs in [-0.5, 0.5).
void fill(float* p, std::size_t n, unsigned salt) {
  for (std::size_t i = 0; i < n; ++i) p[i] = float(((i + salt) * 2654435761u) % 1000) / 1000.0f - 0.5f;
}

// ---------------------------------------------------------------------------------------------- lepton
template <std::size_t C, std::size_t Co, std::size_t K, std::size_t P, std::size_t H> struct lepton_conv {
  static constexpr std::size_t Ho = H + 2 * P - K + 1;
  lp::param<float, batch, C, H, H> x; // (batch, C, H, H)
  lp::param<float, Co, C, K, K> w;    // (Co, C, K, K)
  lp::param<float, Co> b;             // (Co)
  lp::tensor<float, batch, Co, Ho, Ho> dy;
  lepton_conv() {
    fill(x.value.data(), x.value.size(), 1);
    fill(w.value.data(), w.value.size(), 2);
    fill(b.value.data(), b.value.size(), 3);
    fill(dy.data(), dy.size(), 4);
  }
};

/// One pass of the conv2d evaluator, the code nn::conv2d runs inside lp::backward.
template <std::size_t C, std::size_t Co, std::size_t K, std::size_t P, std::size_t H>
void lepton_pass(benchmark::State& st, char const* name, pass ps) {
  lepton_conv<C, Co, K, P, H> l;
  l.x.frozen = ps != pass::bwd_data;
  l.w.frozen = l.b.frozen = ps != pass::bwd_weights;
  auto e = lp::conv2d<1, P>(l.x, l.w, l.b);
  using node = decltype(e);
  ld::fp_scope fp;
  ld::arena& mem = ld::thread_arena();
  ld::arena_scope outer(mem);
  ld::eval_context ctx(mem);
  ctx.keep_values = true;
  ctx.params_get_grads = true;
  ld::evaluator<node, lp::cpu_backend> ev(e);
  lp::isa const lvl = lp::active_isa();
  bool const direct = ps == pass::fwd        ? ld::direct_forward<float>(lvl, ev.geo)
                      : ps == pass::bwd_data ? ld::direct_input_grad<float>(lvl, ev.geo)
                                             : ld::direct_weight_grad<float>(lvl, ev.geo);
  g_algo[std::string(name) + "/" + pass_name(ps)] = direct ? "direct" : "im2col_gemm";
  if (ps == pass::fwd) {
    for (auto _ : st) {
      ld::arena_scope s(mem);
      ev.compute(ctx);
      benchmark::DoNotOptimize(ev.out.ptr);
    }
    return;
  }
  ev.compute(ctx); // xv, wv: what backward_rule reads
  ld::view_ev<float, 4> gv(l.dy.data(), ev.shape());
  for (auto _ : st) {
    ld::arena_scope s(mem);
    ctx.pass = ld::next_pass_id(); // each pass overwrites the gradients, as in lp::backward
    ev.backward_rule(ctx, gv);
    benchmark::ClobberMemory();
  }
  benchmark::DoNotOptimize(l.x.grad.data());
  benchmark::DoNotOptimize(l.w.grad.data());
}

/// The layer through the public API: forward, or lp::backward of the sum of its output.
template <std::size_t C, std::size_t Co, std::size_t K, std::size_t P, std::size_t H>
void lepton_layer(benchmark::State& st, bool backward, bool first) {
  lp::nn::conv2d<C, Co, K, K, 1, P> conv;
  lp::nn::init(conv, lp::init::kaiming_uniform{}, 1);
  lepton_conv<C, Co, K, P, H> l;
  l.x.frozen = first; // the data of the first layer gets no gradient
  lp::tensor<float, batch, Co, lepton_conv<C, Co, K, P, H>::Ho, lepton_conv<C, Co, K, P, H>::Ho> y;
  for (auto _ : st) {
    if (backward) {
      float s = lp::backward(lp::sum(conv(l.x)));
      benchmark::DoNotOptimize(s);
    } else {
      y = conv(l.x);
      benchmark::DoNotOptimize(y.data());
    }
  }
}

template <std::size_t I> void register_lepton() {
  constexpr spec s = specs[I];
  for (pass p : passes)
    benchmark::RegisterBenchmark((std::string("lepton/") + s.name + "/" + pass_name(p)).c_str(),
                                 [p](benchmark::State& st) {
      lepton_pass<specs[I].c, specs[I].co, specs[I].k, specs[I].p, specs[I].h>(st, specs[I].name, p);
    })->MinTime(0.3);
  benchmark::RegisterBenchmark((std::string("lepton_layer/") + s.name + "/fwd").c_str(),
                               [](benchmark::State& st) {
    lepton_layer<specs[I].c, specs[I].co, specs[I].k, specs[I].p, specs[I].h>(st, false, specs[I].first);
  })->MinTime(0.3);
  benchmark::RegisterBenchmark((std::string("lepton_layer/") + s.name + "/fwd_bwd").c_str(),
                               [](benchmark::State& st) {
    lepton_layer<specs[I].c, specs[I].co, specs[I].k, specs[I].p, specs[I].h>(st, true, specs[I].first);
  })->MinTime(0.3);
}

// ---------------------------------------------------------------------------------------------- oneDNN
#if LEPTON_BENCH_HAVE_DNNL
void onednn_pass(benchmark::State& st, spec const& s, pass ps, bool any) {
  using dnnl::memory;
  using tag = memory::format_tag;
  using dt = memory::data_type;
  dnnl::engine eng(dnnl::engine::kind::cpu, 0);
  dnnl::stream strm(eng);
  long const n = long(batch), c = long(s.c), co = long(s.co), k = long(s.k), p = long(s.p), h = long(s.h),
             ho = long(s.ho());
  memory::dims const src{n, c, h, h}, wei{co, c, k, k}, bia{co}, dst{n, co, ho, ho}, str{1, 1}, pad{p, p};
  auto md = [&](memory::dims const& d, tag plain) {
    return memory::desc(d, dt::f32, any ? tag::any : plain);
  };
  memory::desc const bias_md(bia, dt::f32, tag::x);
  // Plain NCHW data, moved into each primitive's own layout once (no copy when it is the same).
  std::vector<float> xs(std::size_t(n * c * h * h)), ws(std::size_t(co * c * k * k)), bs(s.co),
      dys(std::size_t(n * co * ho * ho));
  fill(xs.data(), xs.size(), 1);
  fill(ws.data(), ws.size(), 2);
  fill(bs.data(), bs.size(), 3);
  fill(dys.data(), dys.size(), 4);
  memory xp({src, dt::f32, tag::nchw}, eng, xs.data()), wp({wei, dt::f32, tag::oihw}, eng, ws.data()),
      bp(bias_md, eng, bs.data()), dyp({dst, dt::f32, tag::nchw}, eng, dys.data());
  auto to = [&](memory plain, memory::desc const& want) {
    if (want == plain.get_desc()) return plain;
    memory m(want, eng);
    dnnl::reorder(plain, m).execute(strm, plain, m);
    strm.wait();
    return m;
  };
  dnnl::convolution_forward::desc fd(dnnl::prop_kind::forward_training, dnnl::algorithm::convolution_direct,
                                     md(src, tag::nchw), md(wei, tag::oihw), bias_md, md(dst, tag::nchw), str,
                                     pad, pad);
  dnnl::convolution_forward::primitive_desc fpd(fd, eng);
  dnnl::primitive prim;
  std::unordered_map<int, memory> args;
  std::string impl;
  if (ps == pass::fwd) {
    prim = dnnl::convolution_forward(fpd);
    args = {{DNNL_ARG_SRC, to(xp, fpd.src_desc())},
            {DNNL_ARG_WEIGHTS, to(wp, fpd.weights_desc())},
            {DNNL_ARG_BIAS, to(bp, fpd.bias_desc())},
            {DNNL_ARG_DST, memory(fpd.dst_desc(), eng)}};
    impl = fpd.impl_info_str();
  } else if (ps == pass::bwd_data) {
    dnnl::convolution_backward_data::desc bd(dnnl::algorithm::convolution_direct, md(src, tag::nchw),
                                             md(wei, tag::oihw), md(dst, tag::nchw), str, pad, pad);
    dnnl::convolution_backward_data::primitive_desc bpd(bd, eng, fpd);
    prim = dnnl::convolution_backward_data(bpd);
    args = {{DNNL_ARG_DIFF_DST, to(dyp, bpd.diff_dst_desc())},
            {DNNL_ARG_WEIGHTS, to(wp, bpd.weights_desc())},
            {DNNL_ARG_DIFF_SRC, memory(bpd.diff_src_desc(), eng)}};
    impl = bpd.impl_info_str();
  } else {
    dnnl::convolution_backward_weights::desc bd(dnnl::algorithm::convolution_direct, md(src, tag::nchw),
                                                md(wei, tag::oihw), bias_md, md(dst, tag::nchw), str, pad,
                                                pad);
    dnnl::convolution_backward_weights::primitive_desc bpd(bd, eng, fpd);
    prim = dnnl::convolution_backward_weights(bpd);
    args = {{DNNL_ARG_SRC, to(xp, bpd.src_desc())},
            {DNNL_ARG_DIFF_DST, to(dyp, bpd.diff_dst_desc())},
            {DNNL_ARG_DIFF_WEIGHTS, memory(bpd.diff_weights_desc(), eng)},
            {DNNL_ARG_DIFF_BIAS, memory(bpd.diff_bias_desc(), eng)}};
    impl = bpd.impl_info_str();
  }
  g_impl[std::string(s.name) + "/" + pass_name(ps) + (any ? "/any" : "/plain")] = impl;
  for (auto _ : st) {
    prim.execute(strm, args);
    strm.wait();
  }
}
#endif

// ---------------------------------------------------------------------------------------------- libtorch
#if LEPTON_BENCH_HAVE_TORCH
void torch_pass(benchmark::State& st, spec const& s, pass ps) {
  torch::NoGradGuard ng;
  long const n = long(batch), c = long(s.c), co = long(s.co), k = long(s.k), p = long(s.p), h = long(s.h),
             ho = long(s.ho());
  torch::manual_seed(1);
  auto x = torch::rand({n, c, h, h}) - 0.5, w = torch::rand({co, c, k, k}) - 0.5, b = torch::rand({co}) - 0.5,
       dy = torch::rand({n, co, ho, ho}) - 0.5;
  std::vector<int64_t> const bias_sizes{co}, one{1, 1}, padding{p, p}, zero{0, 0};
  for (auto _ : st) {
    if (ps == pass::fwd) {
      auto y = torch::conv2d(x, w, b, one, padding);
      benchmark::DoNotOptimize(y.data_ptr());
    } else {
      bool const d = ps == pass::bwd_data;
      auto r = at::convolution_backward(dy, x, w, at::IntArrayRef(bias_sizes), one, padding, one, false, zero,
                                        1, {d, !d, !d});
      benchmark::DoNotOptimize(std::get<0>(r).defined() ? std::get<0>(r).data_ptr()
                                                        : std::get<1>(r).data_ptr());
    }
  }
}
#endif

void parse_args(int& argc, char** argv) {
  int out = 1;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--threads") == 0 && i + 1 < argc)
      g_threads = std::strtoul(argv[++i], nullptr, 10);
    else if (std::strcmp(argv[i], "--algo") == 0 && i + 1 < argc)
      g_algo_flag = argv[++i];
    else
      argv[out++] = argv[i];
  }
  argc = out;
  bool const algo_ok = std::strcmp(g_algo_flag, "auto") == 0 || std::strcmp(g_algo_flag, "direct") == 0 ||
                       std::strcmp(g_algo_flag, "im2col") == 0;
  if (g_algo_flag[0] == 'd') ld::conv_algo_override() = ld::conv_algo::direct;
  if (g_algo_flag[0] == 'i') ld::conv_algo_override() = ld::conv_algo::im2col;
  if (g_threads == 0 || !algo_ok) {
    std::fprintf(stderr, "usage: bench_conv [--threads N>0] [--algo auto|direct|im2col]\n");
    std::exit(2);
  }
}

std::string fixed1(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", v);
  return buf;
}

double seconds(std::string const& name) { return g_seconds.count(name) ? g_seconds[name] : 0; }

/// {"us": .., "gflops": .., "fraction_of_peak": ..} for `flops` in `sec` seconds, or null.
std::string figures(double flops, double sec, double peak) {
  if (sec <= 0) return "null";
  char buf[160];
  std::snprintf(buf, sizeof buf, "{\"us\": %.1f, \"gflops\": %.2f, \"fraction_of_peak\": %.3f}", sec * 1e6,
                flops / sec * 1e-9, flops / sec * 1e-9 / peak);
  return buf;
}
} // namespace

int main(int argc, char** argv) {
  parse_args(argc, argv);
  lp::set_num_threads(g_threads);
#if LEPTON_BENCH_HAVE_DNNL
  omp_set_num_threads(int(g_threads)); // oneDNN's (Debian's build) threads are OpenMP's
#endif
#if LEPTON_BENCH_HAVE_TORCH
  torch::set_num_threads(int(g_threads));
  openblas_set_num_threads(int(g_threads));
#endif
  register_lepton<0>();
  register_lepton<1>();
  register_lepton<2>();
  register_lepton<3>();
  register_lepton<4>();
  for (spec const& s : specs)
    for (pass p : passes) {
      std::string const tail = std::string(s.name) + "/" + pass_name(p);
#if LEPTON_BENCH_HAVE_DNNL
      for (bool any : {true, false})
        benchmark::RegisterBenchmark(((any ? "onednn_any/" : "onednn_plain/") + tail).c_str(),
                                     [&s, p, any](benchmark::State& st) {
          onednn_pass(st, s, p, any);
        })->MinTime(0.3);
#endif
#if LEPTON_BENCH_HAVE_TORCH
      benchmark::RegisterBenchmark(("libtorch/" + tail).c_str(), [&s, p](benchmark::State& st) {
        torch_pass(st, s, p);
      })->MinTime(0.3);
#endif
    }
  benchmark::Initialize(&argc, argv);
  capture rep;
  benchmark::RunSpecifiedBenchmarks(&rep);

  double const peak = lepton_bench::fma_peak_gflops() * double(g_threads);
  std::string j = "{\"bench\": \"conv\", \"batch\": " + std::to_string(batch) +
                  ", \"threads\": " + std::to_string(g_threads) + ", \"timing\": \"" +
                  (use_cpu_time() ? "cpu" : "wall") + "\", \"isa\": \"" + lp::to_string(lp::active_isa()) +
                  "\", \"fma_peak_gflops\": " + fixed1(peak);
#if LEPTON_BENCH_HAVE_DNNL
  dnnl_version_t const* v = dnnl_version();
  j += ", \"onednn_version\": \"" + std::to_string(v->major) + "." + std::to_string(v->minor) + "." +
       std::to_string(v->patch) + "\"";
#else
  j += ", \"onednn_version\": null";
#endif
#if LEPTON_BENCH_HAVE_TORCH
  j += std::string(", \"libtorch_mkldnn\": ") + (at::hasMKLDNN() ? "true" : "false");
#endif
  j += ", \"layers\": {";
  bool first_layer = true;
  for (spec const& s : specs) {
    double const f = 2 * s.macs();
    j += std::string(first_layer ? "" : ", ") + "\"" + s.name +
         "\": {\"flops_per_pass\": " + std::to_string(std::llround(f));
    first_layer = false;
    for (pass p : passes) {
      std::string const tail = std::string("/") + s.name + "/" + pass_name(p);
      j += std::string(", \"") + pass_name(p) + "\": {";
      j += "\"lepton\": " + figures(f, seconds("lepton" + tail), peak);
      j += ", \"onednn_any\": " + figures(f, seconds("onednn_any" + tail), peak);
      j += ", \"onednn_plain\": " + figures(f, seconds("onednn_plain" + tail), peak);
      j += ", \"libtorch\": " + figures(f, seconds("libtorch" + tail), peak) + "}";
    }
    // The layer through lp::backward: forward + dW + db (+ dX unless it is the first layer).
    double const fb_flops = f * (s.first ? 2 : 3);
    j += ", \"lepton_layer_fwd\": " +
         figures(f, seconds(std::string("lepton_layer/") + s.name + "/fwd"), peak);
    j += ", \"lepton_layer_fwd_bwd\": " +
         figures(fb_flops, seconds(std::string("lepton_layer/") + s.name + "/fwd_bwd"), peak);
    j += std::string(", \"layer_fwd_bwd_computes_dx\": ") + (s.first ? "false" : "true") + "}";
  }
  j += "}, \"lepton_algo_flag\": \"" + std::string(g_algo_flag) + "\", \"lepton_algo\": {";
  bool first_algo = true;
  for (auto const& [k, v] : g_algo) {
    j += std::string(first_algo ? "" : ", ") + "\"" + k + "\": \"" + v + "\"";
    first_algo = false;
  }
  j += "}, \"onednn_impl\": {";
  bool first_impl = true;
  for (auto const& [k, v] : g_impl) {
    j += std::string(first_impl ? "" : ", ") + "\"" + k + "\": \"" + v + "\"";
    first_impl = false;
  }
  char const* core = std::getenv("OPENBLAS_CORETYPE");
  j += std::string("}, \"openblas_coretype\": ") + (core ? "\"" + std::string(core) + "\"" : "null") + "}";
  std::printf("%s\n", j.c_str());
}
