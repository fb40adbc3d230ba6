// bench_core: lepton's core yardsticks, measured in one run on one machine.
//
//   bench_core [--threads N] [Google Benchmark flags...]
//
// - STREAM triad a[i] = b[i] + s * c[i] over 1e8 floats on lepton's pool: the bandwidth ceiling of
//   fused elementwise work (3 x 4 bytes counted per element, as STREAM does).
// - SGEMM, square 128..2048: lepton::detail::cpu::gemm against OpenBLAS cblas_sgemm.
// - GEMM + bias + ReLU: the fused GEMM epilogue against GEMM followed by a separate bias + ReLU pass.
// - z = a*x + b*y*y - tanh(x) over 1e8 floats: lepton's fused loop against the triad (timed in
//   alternation with the non-temporal triad: fused_vs_triad) and libtorch.
//
// Each figure is taken from the fastest iteration (the host is shared and drifts; the fastest
// iteration is the least disturbed one, and both sides of every comparison are treated alike).
// The last line of stdout is one JSON object with the figures. OPENBLAS_CORETYPE is recorded in it:
// it moves OpenBLAS by several percent, and without it OpenBLAS 0.3.21 may not recognise the CPU and
// fall back to an old kernel (openblas_corename says which one ran).

#include "bench_peak.hpp"
#include <lepton/backend/cpu/gemm.hpp>
#include <lepton/core/memory.hpp>
#include <lepton/core/parallel.hpp>
#include <lepton/lepton.hpp>

#include <benchmark/benchmark.h>
#include <cblas.h>
#include <xsimd/xsimd.hpp>

#if defined(LEPTON_BENCH_HAVE_TORCH)
#include <ATen/Parallel.h>
#include <torch/torch.h>
#endif

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <utility>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;
constexpr double nan_value = std::numeric_limits<double>::quiet_NaN();

/// Best (smallest) seconds per iteration of each named measurement, over all runs of it.
std::map<std::string, double>& best_seconds() {
  static std::map<std::string, double> m;
  return m;
}

void record(std::string const& key, double seconds) {
  auto [it, inserted] = best_seconds().try_emplace(key, seconds);
  if (!inserted) it->second = std::min(it->second, seconds);
}

double best_of(std::string const& key) {
  auto it = best_seconds().find(key);
  return it == best_seconds().end() ? nan_value : it->second;
}

/// Runs op once to warm up (caches, pages, packing buffers), then times every benchmark iteration;
/// returns the fastest.
template <class Op> double time_loop(benchmark::State& state, Op&& op) {
  op();
  double best = std::numeric_limits<double>::infinity();
  for (auto _ : state) {
    auto const t0 = clock_type::now();
    op();
    auto const t1 = clock_type::now();
    best = std::min(best, std::chrono::duration<double>(t1 - t0).count());
  }
  return best;
}

template <class Op> double seconds_of(Op&& op) {
  auto const t0 = clock_type::now();
  op();
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

/// Times two contenders in alternation, each benchmark iteration running both (in swapped order
/// every other iteration so neither always inherits the other's cache state); returns the fastest
/// run of each. Interleaving makes their ratio robust to the host's drift and to other users.
template <class OpA, class OpB>
std::pair<double, double> time_pair(benchmark::State& state, OpA&& a, OpB&& b) {
  a();
  b();
  double best_a = std::numeric_limits<double>::infinity(), best_b = best_a;
  bool a_first = true;
  for (auto _ : state) {
    if (a_first) {
      best_a = std::min(best_a, seconds_of(a));
      best_b = std::min(best_b, seconds_of(b));
    } else {
      best_b = std::min(best_b, seconds_of(b));
      best_a = std::min(best_a, seconds_of(a));
    }
    a_first = !a_first;
  }
  return {best_a, best_b};
}

/// 64-byte aligned storage, like every lepton tensor's.
template <class T> using aligned_vector = std::vector<T, xsimd::aligned_allocator<T, 64>>;

/// 64-byte aligned float array (no value initialisation: first touch happens on the pool).
struct float_array {
  float* p = nullptr;
  std::size_t n = 0;
  explicit float_array(std::size_t count)
      : p(static_cast<float*>(lepton::detail::aligned_alloc_bytes(count * sizeof(float)))), n(count) {}
  float_array(float_array const&) = delete;
  float_array& operator=(float_array const&) = delete;
  ~float_array() { lepton::detail::aligned_free_bytes(p); }
};

aligned_vector<float> random_floats(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  aligned_vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

// ------------------------------------------------------------------------------------------ triad

constexpr std::size_t triad_n = 100'000'000;

/// Contiguous chunks per thread, big enough that the pool's wake-up cost is noise.
constexpr std::size_t triad_grain = 1 << 16;

void bm_triad(benchmark::State& state) {
  float_array a(triad_n), b(triad_n), c(triad_n);
  // First touch with the same partition as the timed loop, so each thread's pages are its own.
  lepton::detail::parallel_range(triad_n, triad_grain, [&](std::size_t i0, std::size_t i1) {
    for (std::size_t i = i0; i < i1; ++i) {
      a.p[i] = 0.f;
      b.p[i] = 1.f;
      c.p[i] = 2.f;
    }
  });
  float const s = 3.f;
  using batch = xsimd::batch<float>;
  auto triad = [&] {
    lepton::detail::parallel_range(triad_n, triad_grain, [&](std::size_t i0, std::size_t i1) {
      std::size_t i = i0;
      batch const vs(s);
      for (; i < i1 && (i % batch::size) != 0; ++i) a.p[i] = b.p[i] + s * c.p[i];
      for (; i + batch::size <= i1; i += batch::size)
        xsimd::fma(vs, batch::load_aligned(c.p + i), batch::load_aligned(b.p + i)).store_aligned(a.p + i);
      for (; i < i1; ++i) a.p[i] = b.p[i] + s * c.p[i];
    });
    benchmark::DoNotOptimize(a.p);
    benchmark::ClobberMemory();
  };
  double const t = time_loop(state, triad);
  record("triad", t);
  state.counters["GB/s"] = 3.0 * sizeof(float) * double(triad_n) / t / 1e9;
}

/// The same triad with non-temporal stores (no read-for-ownership of a): the stricter yardstick,
/// since lepton's fused loops stream large outputs the same way. Arrays first-touched with the
/// timed loop's partition, so each thread's pages are its own.
struct nt_triad {
  float_array a{triad_n}, b{triad_n}, c{triad_n};
  nt_triad() {
    lepton::detail::parallel_range(triad_n, triad_grain, [&](std::size_t i0, std::size_t i1) {
      for (std::size_t i = i0; i < i1; ++i) {
        a.p[i] = 0.f;
        b.p[i] = 1.f;
        c.p[i] = 2.f;
      }
    });
  }
  void run() {
    using batch = xsimd::batch<float>;
    float const s = 3.f;
    lepton::detail::parallel_range(triad_n, triad_grain, [&](std::size_t i0, std::size_t i1) {
      std::size_t i = i0;
      batch const vs(s);
      for (; i < i1 && (i % batch::size) != 0; ++i) a.p[i] = b.p[i] + s * c.p[i];
      for (; i + batch::size <= i1; i += batch::size)
        lepton::detail::stream_store<batch>(
            a.p + i, xsimd::fma(vs, batch::load_aligned(c.p + i), batch::load_aligned(b.p + i)));
      for (; i < i1; ++i) a.p[i] = b.p[i] + s * c.p[i];
      lepton::detail::stream_fence();
    });
    benchmark::DoNotOptimize(a.p);
    benchmark::ClobberMemory();
  }
};

void bm_triad_nt(benchmark::State& state) {
  nt_triad t;
  double const sec = time_loop(state, [&] { t.run(); });
  record("triad_nt", sec);
  state.counters["GB/s"] = 3.0 * sizeof(float) * double(triad_n) / sec / 1e9;
}

// ------------------------------------------------------------------------------------------ sgemm

double gflops(double m, double n, double k, double seconds) { return 2.0 * m * n * k / seconds / 1e9; }

/// Square SGEMM C = A * B: lepton::detail::cpu::gemm and cblas_sgemm on the same operands.
void bm_sgemm(benchmark::State& state, std::size_t n) {
  aligned_vector<float> const a = random_floats(n * n, 1), b = random_floats(n * n, 2);
  aligned_vector<float> c_ours(n * n), c_blas(n * n);
  int const ni = static_cast<int>(n);
  auto [t_ours, t_blas] = time_pair(
      state,
      [&] {
    lepton::detail::cpu::gemm<float>(false, false, n, n, n, 1.f, a.data(), n, b.data(), n, 0.f, c_ours.data(),
                                     n);
    benchmark::DoNotOptimize(c_ours.data());
    benchmark::ClobberMemory();
      },
      [&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, ni, ni, ni, 1.f, a.data(), ni, b.data(), ni, 0.f,
                c_blas.data(), ni);
    benchmark::DoNotOptimize(c_blas.data());
    benchmark::ClobberMemory();
  });
  record("sgemm_lepton/" + std::to_string(n), t_ours);
  record("sgemm_openblas/" + std::to_string(n), t_blas);
  state.counters["lepton_GFLOPS"] = gflops(n, n, n, t_ours);
  state.counters["openblas_GFLOPS"] = gflops(n, n, n, t_blas);
  state.counters["ratio"] = t_blas / t_ours;
}

/// One contender alone (used with several threads): interleaving iterations of two threaded
/// libraries is unfair, because each one's idle workers keep spinning for a while (OpenBLAS's for
/// ~0.1 s) on the cores the other one needs; measured at 2 threads, interleaving cut lepton from ~300
/// to ~150 GFLOP/s at n = 512. Running each one for its own min_time lets the other's workers settle.
void bm_sgemm_alone(benchmark::State& state, std::size_t n, bool openblas) {
  aligned_vector<float> const a = random_floats(n * n, 1), b = random_floats(n * n, 2);
  aligned_vector<float> c(n * n);
  int const ni = static_cast<int>(n);
  double const t = time_loop(state, [&] {
    if (openblas)
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, ni, ni, ni, 1.f, a.data(), ni, b.data(), ni, 0.f,
                  c.data(), ni);
    else
      lepton::detail::cpu::gemm<float>(false, false, n, n, n, 1.f, a.data(), n, b.data(), n, 0.f, c.data(),
                                       n);
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  });
  record((openblas ? "sgemm_openblas/" : "sgemm_lepton/") + std::to_string(n), t);
  state.counters["GFLOPS"] = gflops(n, n, n, t);
}

// ------------------------------------------------------------------------------ gemm + bias + relu

/// y = max(y + bias, 0) on the block [i0, i1) x [j0, j1) of y: the epilogue of a linear + ReLU layer.
struct bias_relu {
  float* y;
  std::size_t ldy;
  float const* bias;
  void operator()(std::size_t i0, std::size_t i1, std::size_t j0, std::size_t j1) const noexcept {
    using batch = xsimd::batch<float>;
    batch const zero(0.f);
    for (std::size_t i = i0; i < i1; ++i) {
      float* row = y + i * ldy;
      std::size_t j = j0;
      for (; j + batch::size <= j1; j += batch::size)
        xsimd::max(batch::load_unaligned(row + j) + batch::load_unaligned(bias + j), zero)
            .store_unaligned(row + j);
      for (; j < j1; ++j) row[j] = std::max(row[j] + bias[j], 0.f);
    }
  }
};

struct layer_shape {
  std::size_t m, k, n; // (m, k) x (k, n) + bias(n)
  std::string name() const { return std::to_string(m) + "x" + std::to_string(k) + "x" + std::to_string(n); }
};

// MLP layers at batch 64 and 256, a wide layer with a short k, a square one, and a wide layer at a
// large batch whose output (32 MiB) outgrows the caches: there the separate pass goes to memory.
// (Where y stays in this machine's 1 MiB L2, the separate pass costs under 1% of the GEMM.)
std::vector<layer_shape> const epilogue_shapes = {
    {64, 784, 256}, {256, 784, 256}, {1024, 128, 1024}, {1024, 1024, 1024}, {8192, 128, 1024}};

/// A linear + ReLU layer y = relu(x w + bias): GEMM with the fused bias + ReLU register epilogue
/// (applied to the accumulators before the store) against GEMM followed by a separate bias + ReLU
/// pass (which gets the pool too, split by rows).
void bm_gemm_bias_relu(benchmark::State& state, layer_shape s) {
  aligned_vector<float> const x = random_floats(s.m * s.k, 3), w = random_floats(s.k * s.n, 4);
  aligned_vector<float> const bias = random_floats(s.n, 5);
  aligned_vector<float> y_fused(s.m * s.n), y_separate(s.m * s.n);
  // The fused form lepton uses for relu(x w + b): bias + relu on the accumulator registers.
  lepton::detail::cpu::gemm_bias_act<float> const epi_fused{bias.data(),
                                                            lepton::detail::cpu::gemm_activation::relu};
  bias_relu const epi_separate{y_separate.data(), s.n, bias.data()};
  std::size_t const grain_rows = std::max<std::size_t>(1, (std::size_t{1} << 16) / s.n);
  auto [t_fused, t_separate] = time_pair(
      state,
      [&] {
    lepton::detail::cpu::gemm<float>(false, false, s.m, s.n, s.k, 1.f, x.data(), s.k, w.data(), s.n, 0.f,
                                     y_fused.data(), s.n, epi_fused);
    benchmark::DoNotOptimize(y_fused.data());
    benchmark::ClobberMemory();
      },
      [&] {
    lepton::detail::cpu::gemm<float>(false, false, s.m, s.n, s.k, 1.f, x.data(), s.k, w.data(), s.n, 0.f,
                                     y_separate.data(), s.n);
    lepton::detail::parallel_range(s.m, grain_rows,
                                   [&](std::size_t i0, std::size_t i1) { epi_separate(i0, i1, 0, s.n); });
    benchmark::DoNotOptimize(y_separate.data());
    benchmark::ClobberMemory();
  });
  record("fused/" + s.name(), t_fused);
  record("separate/" + s.name(), t_separate);
  state.counters["fused_us"] = t_fused * 1e6;
  state.counters["separate_us"] = t_separate * 1e6;
  state.counters["speedup"] = t_separate / t_fused;
}

// ------------------------------------------------------------------------------ fused expressions

/// The operands of the fused expression: x and y filled once (1.2 GB with z, shared by the
/// benchmarks below).
struct fused_operands {
  lepton::tensor<float, lepton::dyn> x{triad_n}, y{triad_n}, z{triad_n};
  fused_operands() {
    auto const r = random_floats(1 << 20, 11);
    for (std::size_t i = 0; i < triad_n; ++i) {
      x.data()[i] = r[i & ((1 << 20) - 1)];
      y.data()[i] = r[(i * 7) & ((1 << 20) - 1)];
    }
  }
  /// z = a*x + b*y*y - tanh(x): one fused SIMD loop in lepton (reads x and y, writes z: 3 x 4
  /// bytes per element, counted like the triad).
  void run() {
    float const a = 0.5f, b = 1.5f;
    z = a * x + b * y * y - lepton::tanh(x);
    benchmark::DoNotOptimize(z.data());
    benchmark::ClobberMemory();
  }
};
fused_operands& fused() {
  static fused_operands f;
  return f;
}

/// z = a*x + b*y*y - tanh(x) over triad_n floats in lepton, against libtorch's ops.
void bm_fused_lepton(benchmark::State& state) {
  double const t = time_loop(state, [&] { fused().run(); });
  record("expr_lepton", t);
  state.counters["GB/s"] = 3.0 * sizeof(float) * double(triad_n) / t / 1e9;
}

/// The fused expression and the non-temporal triad in alternation (time_pair): their ratio, the
/// figure fused_vs_triad reports, does not depend on when the host's memory bandwidth drifts (on
/// this 2-vCPU VM it moved between 60 and 108 GB/s from one minute to the next at 2 threads).
void bm_fused_vs_triad(benchmark::State& state) {
  nt_triad triad;
  auto [t_fused, t_triad] = time_pair(
      state, [&] { fused().run(); }, [&] { triad.run(); });
  record("pair_expr_lepton", t_fused);
  record("pair_triad_nt", t_triad);
  state.counters["fused_GB/s"] = 3.0 * sizeof(float) * double(triad_n) / t_fused / 1e9;
  state.counters["triad_GB/s"] = 3.0 * sizeof(float) * double(triad_n) / t_triad / 1e9;
}

#if defined(LEPTON_BENCH_HAVE_TORCH)
void bm_fused_torch(benchmark::State& state) {
  torch::NoGradGuard no_grad;
  auto const x = torch::rand({static_cast<long>(triad_n)}), y = torch::rand({static_cast<long>(triad_n)});
  float const a = 0.5f, b = 1.5f;
  double const t = time_loop(state, [&] {
    auto z = a * x + b * y * y - torch::tanh(x);
    benchmark::DoNotOptimize(z.data_ptr());
    benchmark::ClobberMemory();
  });
  record("expr_torch", t);
  state.counters["GB/s"] = 3.0 * sizeof(float) * double(triad_n) / t / 1e9;
}
#endif

/// GB/s of the fused expression (to be compared with triad_gbs), NaN if it did not run.
static double fused_expression_gbs(std::size_t n) {
  return 3.0 * sizeof(float) * double(n) / best_of("expr_lepton") / 1e9;
}

// ------------------------------------------------------------------------------------------ output

/// A JSON number, or null for NaN/inf (a missing measurement).
std::string json_number(double x) {
  if (!std::isfinite(x)) return "null";
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.4g", x);
  return buf;
}

std::string json_string_or_null(char const* s) {
  if (!s) return "null";
  std::string out = "\"";
  for (char const* p = s; *p; ++p) {
    if (*p == '"' || *p == '\\') out += '\\';
    if (static_cast<unsigned char>(*p) >= 0x20) out += *p;
  }
  return out + "\"";
}

/// Builds one JSON object from keys and values that are already JSON text.
class json_object {
public:
  json_object& add(std::string const& key, std::string const& value) {
    m_text += m_text.empty() ? '{' : ',';
    m_text += '"';
    m_text += key;
    m_text += "\":";
    m_text += value;
    return *this;
  }
  std::string str() const { return m_text.empty() ? std::string("{}") : m_text + '}'; }

private:
  std::string m_text;
};

/// Removes `--threads N` / `--threads=N` from argv; returns N, or 0 when absent.
std::size_t take_threads_flag(int& argc, char** argv) {
  std::size_t threads = 0;
  int out = 1;
  for (int i = 1; i < argc; ++i) {
    char const* arg = argv[i];
    char const* value = nullptr;
    if (std::strcmp(arg, "--threads") == 0 && i + 1 < argc) {
      value = argv[++i];
    } else if (std::strncmp(arg, "--threads=", 10) == 0) {
      value = arg + 10;
    } else {
      argv[out++] = argv[i];
      continue;
    }
    char* end = nullptr;
    long v = std::strtol(value, &end, 10);
    if (end == value || *end != '\0' || v <= 0 || v > 4096) {
      std::fprintf(stderr, "bench_core: --threads expects a positive integer, got '%s'\n", value);
      std::exit(2);
    }
    threads = static_cast<std::size_t>(v);
  }
  argc = out;
  argv[argc] = nullptr;
  return threads;
}

} // namespace

int main(int argc, char** argv) {
  std::size_t threads = take_threads_flag(argc, argv);
  if (threads != 0) lepton::set_num_threads(threads);
  threads = lepton::num_threads();
  openblas_set_num_threads(static_cast<int>(threads));
#if defined(LEPTON_BENCH_HAVE_TORCH)
  at::set_num_threads(static_cast<int>(threads));
#endif

  benchmark::RegisterBenchmark("triad/1e8", bm_triad)
      ->MinTime(0.5)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("triad_nt/1e8", bm_triad_nt)
      ->MinTime(0.5)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
  std::vector<std::size_t> const sizes = {128, 256, 512, 1024, 2048};
  for (std::size_t n : sizes) {
    double const min_time = n >= 1024 ? 1.2 : 0.5;
    if (threads == 1) { // interleaved, see time_pair
      benchmark::RegisterBenchmark(("sgemm/" + std::to_string(n)).c_str(), bm_sgemm, n)
          ->MinTime(min_time)
          ->UseRealTime()
          ->Unit(benchmark::kMicrosecond);
      continue;
    }
    for (bool openblas : {false, true}) // back to back, see bm_sgemm_alone
      benchmark::RegisterBenchmark(
          ((openblas ? "sgemm/openblas/" : "sgemm/lepton/") + std::to_string(n)).c_str(), bm_sgemm_alone, n,
          openblas)
          ->MinTime(min_time)
          ->UseRealTime()
          ->Unit(benchmark::kMicrosecond);
  }
  benchmark::RegisterBenchmark("fused_vs_triad/interleaved", bm_fused_vs_triad)
      ->MinTime(1.0)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
  benchmark::RegisterBenchmark("fused_expr/lepton", bm_fused_lepton)
      ->MinTime(0.5)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
#if defined(LEPTON_BENCH_HAVE_TORCH)
  benchmark::RegisterBenchmark("fused_expr/libtorch", bm_fused_torch)
      ->MinTime(0.5)
      ->UseRealTime()
      ->Unit(benchmark::kMillisecond);
#endif
  for (layer_shape s : epilogue_shapes)
    benchmark::RegisterBenchmark(("gemm_bias_relu/" + s.name()).c_str(), bm_gemm_bias_relu, s)
        ->MinTime(0.5)
        ->UseRealTime()
        ->Unit(benchmark::kMicrosecond);

  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();

  // ------------------------------------------------------------------ the summary line
  // The yardstick is the faster of the two triads (plain stores, non-temporal stores).
  double const triad_plain_gbs = 3.0 * sizeof(float) * double(triad_n) / best_of("triad") / 1e9;
  double const triad_nt_gbs = 3.0 * sizeof(float) * double(triad_n) / best_of("triad_nt") / 1e9;
  double const triad_gbs =
      std::isfinite(triad_nt_gbs) ? std::max(triad_plain_gbs, triad_nt_gbs) : triad_plain_gbs;
  double const fused_gbs = fused_expression_gbs(triad_n);
  // The ratio from the interleaved pair (fused vs non-temporal triad in alternation), robust to the
  // host's drift; the separate runs above are kept for reference (fused_vs_triad_separate).
  double const pair_fused_gbs = 3.0 * sizeof(float) * double(triad_n) / best_of("pair_expr_lepton") / 1e9;
  double const pair_triad_gbs = 3.0 * sizeof(float) * double(triad_n) / best_of("pair_triad_nt") / 1e9;
  // The FMA peak of this machine in the same run (bench_peak.hpp: the CPU's best level, whatever the
  // build's flags), times the threads the GEMMs ran on.
  double const peak = lepton_bench::fma_peak_gflops() * double(threads);
  json_object ours, blas, ratios, fractions;
  double min_ratio = nan_value, min_fraction = nan_value;
  for (std::size_t n : sizes) {
    std::string const key = std::to_string(n);
    double const g_ours = gflops(n, n, n, best_of("sgemm_lepton/" + key));
    double const g_blas = gflops(n, n, n, best_of("sgemm_openblas/" + key));
    double const ratio = g_ours / g_blas;
    ours.add(key, json_number(g_ours));
    blas.add(key, json_number(g_blas));
    ratios.add(key, json_number(ratio));
    fractions.add(key, json_number(g_ours / peak));
    if (n >= 256 && n <= 2048 && std::isfinite(ratio))
      min_ratio = std::isnan(min_ratio) ? ratio : std::min(min_ratio, ratio);
    if (n >= 256 && n <= 2048 && std::isfinite(g_ours))
      min_fraction = std::isnan(min_fraction) ? g_ours / peak : std::min(min_fraction, g_ours / peak);
  }
  // The epilogue saves one pass over y, so its gain shrinks as k grows (at k = 784 the pass is under
  // 1% of the GEMM): epilogue_speedup is the geometric mean over the shapes, epilogue_speedup_min
  // the worst shape, and "epilogue" has every shape.
  json_object epilogue;
  double min_speedup = nan_value, log_sum = 0;
  std::size_t measured = 0;
  for (layer_shape s : epilogue_shapes) {
    double const fused = best_of("fused/" + s.name()), separate = best_of("separate/" + s.name());
    double const speedup = separate / fused;
    if (std::isfinite(speedup)) {
      min_speedup = std::isnan(min_speedup) ? speedup : std::min(min_speedup, speedup);
      log_sum += std::log(speedup);
      ++measured;
    }
    epilogue.add(s.name(), json_object()
                               .add("fused_us", json_number(fused * 1e6))
                               .add("separate_us", json_number(separate * 1e6))
                               .add("speedup", json_number(speedup))
                               .str());
  }
  double const mean_speedup = measured ? std::exp(log_sum / double(measured)) : nan_value;

  json_object json;
  json.add("threads", std::to_string(threads));
  json.add("triad_gbs", json_number(triad_gbs));
  json.add("triad_plain_gbs", json_number(triad_plain_gbs));
  json.add("triad_nt_gbs", json_number(triad_nt_gbs));
  json.add("fused_gbs", json_number(fused_gbs));
  json.add("fused_vs_triad", json_number(pair_fused_gbs / pair_triad_gbs));
  json.add("fused_vs_triad_separate", json_number(fused_gbs / triad_gbs));
  json.add("pair_fused_gbs", json_number(pair_fused_gbs));
  json.add("pair_triad_nt_gbs", json_number(pair_triad_gbs));
  json.add("fused_vs_libtorch", json_number(best_of("expr_torch") / best_of("expr_lepton")));
  json.add("sgemm_gflops", ours.str());
  json.add("openblas_gflops", blas.str());
  json.add("sgemm_ratio", ratios.str());
  json.add("sgemm_vs_openblas", json_number(min_ratio));
  json.add("fma_peak_gflops", json_number(peak));
  json.add("fma_peak_isa", json_string_or_null(lepton::to_string(lepton_bench::fma_peak_isa())));
  json.add("kernel_isa", json_string_or_null(lepton::to_string(lepton::active_isa())));
  json.add("sgemm_fraction_of_peak", fractions.str());
  json.add("sgemm_fraction_of_peak_min", json_number(min_fraction));
  json.add("epilogue_speedup", json_number(mean_speedup));
  json.add("epilogue_speedup_min", json_number(min_speedup));
  json.add("epilogue", epilogue.str());
  json.add("openblas_coretype", json_string_or_null(std::getenv("OPENBLAS_CORETYPE")));
  json.add("openblas_corename", json_string_or_null(openblas_get_corename()));
#if defined(LEPTON_BENCH_HAVE_TORCH)
  json.add("torch", "true");
#else
  json.add("torch", "false");
#endif
  std::fflush(stderr);
  std::printf("%s\n", json.str().c_str());
  return 0;
}
