// The single-core FMA peak the benches report fractions of (GEMM, conv, MLP step).
//
// The loop is compiled once per x86 level with GCC/clang target attributes (raw intrinsics) and the
// best level the CPU runs is chosen at run time, so a default build (no -march flag, the
// `bench-default` preset) reports the machine's peak, not the SSE2 build's (before, the default
// build compiled the loop without FMA and reported about half the real peak).
//
// Method: 12 independent FMA chains on registers (enough to cover a 4-cycle latency on two FMA
// pipes), 20 M iterations, the best of 3 runs timed on the thread's CPU clock (the figure stays
// right when other processes share the core). 2 flops per FMA lane.
#pragma once

#include <lepton/core/isa.hpp>

#include <algorithm>
#include <ctime>

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define LEPTON_BENCH_PEAK_X86 1
#endif

namespace lepton_bench {

namespace peak_detail {
inline volatile float sink_store = 0; // where the accumulators' sum goes, so no loop is dropped
constexpr int chains = 12;
constexpr long iters = 20'000'000;

inline double thread_seconds() {
  timespec t;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return double(t.tv_sec) + 1e-9 * double(t.tv_nsec);
}

// Each kernel returns the sum of its accumulators so that the loop cannot be dropped.
#if LEPTON_BENCH_PEAK_X86
__attribute__((target("avx512f"))) inline float run_avx512(float* sink) {
  __m512 acc[chains];
  for (int i = 0; i < chains; ++i) acc[i] = _mm512_set1_ps(1.0f + 0.001f * float(i));
  __m512 const a = _mm512_set1_ps(0.999999f), b = _mm512_set1_ps(1e-7f);
  for (long k = 0; k < iters; ++k)
    for (int i = 0; i < chains; ++i) acc[i] = _mm512_fmadd_ps(acc[i], a, b);
  alignas(64) float lanes[16];
  float s = 0;
  for (int i = 0; i < chains; ++i) {
    _mm512_store_ps(lanes, acc[i]);
    for (float v : lanes) s += v;
  }
  *sink = s;
  return 16;
}

__attribute__((target("avx2,fma"))) inline float run_avx2(float* sink) {
  __m256 acc[chains];
  for (int i = 0; i < chains; ++i) acc[i] = _mm256_set1_ps(1.0f + 0.001f * float(i));
  __m256 const a = _mm256_set1_ps(0.999999f), b = _mm256_set1_ps(1e-7f);
  for (long k = 0; k < iters; ++k)
    for (int i = 0; i < chains; ++i) acc[i] = _mm256_fmadd_ps(acc[i], a, b);
  alignas(32) float lanes[8];
  float s = 0;
  for (int i = 0; i < chains; ++i) {
    _mm256_store_ps(lanes, acc[i]);
    for (float v : lanes) s += v;
  }
  *sink = s;
  return 8;
}
#endif

// Portable: a separate multiply and add (no FMA in baseline x86-64); 4 lanes of SSE2 when the
// compiler vectorises, which it does at -O3. Reported as what the build's own level can reach.
inline float run_portable(float* sink) {
  float acc[chains][4];
  for (int i = 0; i < chains; ++i)
    for (int l = 0; l < 4; ++l) acc[i][l] = 1.0f + 0.001f * float(i);
  float const a = 0.999999f, b = 1e-7f;
  for (long k = 0; k < iters; ++k)
    for (int i = 0; i < chains; ++i)
      for (int l = 0; l < 4; ++l) acc[i][l] = acc[i][l] * a + b;
  float s = 0;
  for (int i = 0; i < chains; ++i)
    for (int l = 0; l < 4; ++l) s += acc[i][l];
  *sink = s;
  return 4;
}
} // namespace peak_detail

/// The level the peak loop ran at: the best the CPU supports (lepton::cpu_isa()), independent of
/// the build's flags and of LEPTON_ISA (the peak is the machine's, the kernels' level is theirs).
inline lepton::isa fma_peak_isa() noexcept {
#if LEPTON_BENCH_PEAK_X86
  return lepton::cpu_isa();
#else
  return lepton::isa::portable;
#endif
}

/// Single-core FMA peak in GFLOP/s (2 flops per lane per FMA), best of 3 runs.
inline double fma_peak_gflops() {
  using namespace peak_detail;
  double best = 0;
  for (int rep = 0; rep < 3; ++rep) {
    float sink = 0;
    double const t0 = thread_seconds();
    float lanes = 0;
#if LEPTON_BENCH_PEAK_X86
    switch (fma_peak_isa()) {
    case lepton::isa::avx512: lanes = run_avx512(&sink); break;
    case lepton::isa::avx2: lanes = run_avx2(&sink); break;
    default: lanes = run_portable(&sink); break;
    }
#else
    lanes = run_portable(&sink);
#endif
    double const s = thread_seconds() - t0;
    sink_store = sink;
    best = std::max(best, double(iters) * chains * double(lanes) * 2 / s * 1e-9);
  }
  return best;
}

} // namespace lepton_bench
