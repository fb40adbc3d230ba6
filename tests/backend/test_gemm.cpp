// Tests of lepton::detail::cpu::gemm against a naive float64 reference.
//
// Compile time is kept low on purpose: gemm is instantiated for float and double with the default
// epilogue, and for float with two small epilogue structs; every case goes through one runner per type.
//
// This executable replaces the global operator new with a counting one (see the end of the file),
// to check that gemm does not allocate once warmed up.

#include <lepton/backend/cpu/gemm.hpp>
#include <xsimd/xsimd.hpp>

#include <catch2/catch.hpp>

#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>
#include <random>
#include <string>
#include <vector>

namespace {
/// Heap allocations made through operator new by any thread of this test program.
std::atomic<std::size_t> allocation_count{0};
} // namespace

namespace {

using lepton::detail::cpu::gemm;

/// One product to check: op(A) m x k, op(B) k x n, leading dimensions = minimum + pad.
struct gemm_case {
  bool ta = false, tb = false;
  std::size_t m = 0, n = 0, k = 0;
  double alpha = 1, beta = 0;
  std::size_t pad_a = 0, pad_b = 0, pad_c = 0;
};

std::string describe(gemm_case const& g) {
  return "ta=" + std::to_string(g.ta) + " tb=" + std::to_string(g.tb) + " m=" + std::to_string(g.m) +
         " n=" + std::to_string(g.n) + " k=" + std::to_string(g.k) + " alpha=" + std::to_string(g.alpha) +
         " beta=" + std::to_string(g.beta) + " pads=" + std::to_string(g.pad_a) + "," +
         std::to_string(g.pad_b) + "," + std::to_string(g.pad_c);
}

/// Storage of one case: A, B, C with their leading dimensions, filled with values in [-1, 1].
template <class T> struct operands {
  std::size_t lda, ldb, ldc;
  std::vector<T> a, b, c;

  operands(gemm_case const& g, std::uint32_t seed) {
    std::mt19937 rng(seed);
    std::uniform_real_distribution<double> dist(-1.0, 1.0);
    std::size_t const a_rows = g.ta ? g.k : g.m, a_cols = g.ta ? g.m : g.k;
    std::size_t const b_rows = g.tb ? g.n : g.k, b_cols = g.tb ? g.k : g.n;
    lda = a_cols + g.pad_a;
    ldb = b_cols + g.pad_b;
    ldc = g.n + g.pad_c;
    // The padding holds NaN: reading it would poison the result. Sizes are exact, so that the
    // sanitizer build catches any read past the last row.
    T const nan = std::numeric_limits<T>::quiet_NaN();
    a.assign(a_rows * lda, nan);
    b.assign(b_rows * ldb, nan);
    c.assign(g.m * ldc, nan);
    for (std::size_t i = 0; i < a_rows; ++i)
      for (std::size_t j = 0; j < a_cols; ++j) a[i * lda + j] = T(dist(rng));
    for (std::size_t i = 0; i < b_rows; ++i)
      for (std::size_t j = 0; j < b_cols; ++j) b[i * ldb + j] = T(dist(rng));
    // beta == 0 must not read C: leave it NaN then.
    if (g.beta != 0)
      for (std::size_t i = 0; i < g.m; ++i)
        for (std::size_t j = 0; j < g.n; ++j) c[i * ldc + j] = T(dist(rng));
  }

  T op_a(gemm_case const& g, std::size_t i, std::size_t p) const {
    return g.ta ? a[p * lda + i] : a[i * lda + p];
  }
  T op_b(gemm_case const& g, std::size_t p, std::size_t j) const {
    return g.tb ? b[j * ldb + p] : b[p * ldb + j];
  }
};

/// alpha * op(A) op(B) + beta * C in float64 (C not read when beta == 0), and the error bound a
/// floating-point evaluation in T may have: k * eps * sum |a||b| scaled, plus the beta term.
template <class T> void reference(gemm_case const& g, operands<T> const& o, std::vector<double>& want,
                                  std::vector<double>& tol) {
  want.assign(g.m * g.n, 0.0);
  tol.assign(g.m * g.n, 0.0);
  double const eps = std::numeric_limits<T>::epsilon();
  for (std::size_t i = 0; i < g.m; ++i)
    for (std::size_t j = 0; j < g.n; ++j) {
      double s = 0, sa = 0;
      for (std::size_t p = 0; p < g.k; ++p) {
        double const x = double(o.op_a(g, i, p)) * double(o.op_b(g, p, j));
        s += x;
        sa += std::abs(x);
      }
      double const c0 = g.beta != 0 ? double(o.c[i * o.ldc + j]) : 0.0;
      want[i * g.n + j] = g.alpha * s + g.beta * c0;
      tol[i * g.n + j] = 2 * eps * (double(g.k + 2) * std::abs(g.alpha) * sa + std::abs(g.beta * c0)) + 1e-30;
    }
}

/// Runs one case for T and checks every element of C, and that C's padding is untouched.
template <class T> void check_case(gemm_case const& g, std::uint32_t seed = 1) {
  INFO(describe(g) << (sizeof(T) == 4 ? " float" : " double"));
  operands<T> o(g, seed);
  std::vector<double> want, tol;
  reference(g, o, want, tol);
  gemm<T>(g.ta, g.tb, g.m, g.n, g.k, T(g.alpha), o.a.data(), o.lda, o.b.data(), o.ldb, T(g.beta), o.c.data(),
          o.ldc);
  std::size_t bad = 0;
  for (std::size_t i = 0; i < g.m; ++i) {
    for (std::size_t j = 0; j < g.n; ++j) {
      double const got = double(o.c[i * o.ldc + j]);
      if (!(std::abs(got - want[i * g.n + j]) <= tol[i * g.n + j])) {
        if (bad++ < 5)
          UNSCOPED_INFO("C(" << i << "," << j << ") = " << got << ", want " << want[i * g.n + j]);
      }
    }
    for (std::size_t j = g.n; j < o.ldc; ++j)
      if (!std::isnan(o.c[i * o.ldc + j])) ++bad; // padding written
  }
  CHECK(bad == 0);
}

void check_both(gemm_case const& g) {
  check_case<float>(g);
  check_case<double>(g);
}

std::vector<std::size_t> const sizes = {0, 1, 2, 7, 15, 17, 33, 64, 100, 129, 257};

} // namespace

TEST_CASE("gemm matches a float64 reference for all transposes and awkward sizes", "[backend][gemm]") {
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      // Square sizes, and each size against small/odd partners so edge tiles appear on every side.
      for (std::size_t s : sizes) check_both({ta, tb, s, s, s, 1.0, 0.0});
      for (std::size_t s : sizes) {
        check_both({ta, tb, s, 17, 33, 1.0, 0.0});
        check_both({ta, tb, 15, s, 7, 1.0, 0.0});
        check_both({ta, tb, 33, 2, s, 1.0, 0.0});
      }
      check_both({ta, tb, 1, 300, 1, 1.0, 0.0});
      check_both({ta, tb, 300, 1, 300, 1.0, 0.0});
    }
}

TEST_CASE("gemm handles alpha, beta and leading dimensions above the minimum", "[backend][gemm]") {
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      check_both({ta, tb, 37, 45, 61, 1.0, 1.0});
      check_both({ta, tb, 37, 45, 61, -0.5, 0.0});
      check_both({ta, tb, 37, 45, 61, 2.0, -1.5});
      check_both({ta, tb, 37, 45, 61, 0.75, 0.25, 3, 5, 7});
      check_both({ta, tb, 100, 129, 64, 1.0, 0.0, 16, 1, 33});
      check_both({ta, tb, 29, 70, 300, -1.0, 2.0, 1, 17, 2}); // k spans two k blocks
    }
}

TEST_CASE("gemm with k > kc splits k into several blocks", "[backend][gemm]") {
  // k = 600 (float: kc = 256) and k = 257 (kc + 1) exercise the k blocking and the beta -> 1 switch.
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      check_both({ta, tb, 30, 40, 600, 1.0, 0.5});
      check_both({ta, tb, 30, 40, 257, 1.0, 0.0});
    }
}

TEST_CASE("gemm degenerate shapes: empty C, k == 0, alpha == 0", "[backend][gemm]") {
  // m == 0 or n == 0: nothing touched (C pointer may even be null).
  gemm<float>(false, false, 0, 5, 3, 1.f, nullptr, 3, nullptr, 5, 0.f, nullptr, 5);
  gemm<double>(true, true, 4, 0, 3, 1.0, nullptr, 4, nullptr, 3, 0.0, nullptr, 1);

  for (double beta : {0.0, 1.0, -2.0}) {
    check_both({false, false, 7, 9, 0, 1.0, beta, 0, 0, 3});
    check_both({true, true, 33, 17, 0, 1.0, beta});
  }
  // k == 0, beta == 0: C becomes exactly zero even if it held NaN; A and B are never read.
  std::vector<float> c(6 * 5, std::numeric_limits<float>::quiet_NaN());
  gemm<float>(false, false, 6, 5, 0, 1.f, nullptr, 1, nullptr, 5, 0.f, c.data(), 5);
  for (float x : c) CHECK(x == 0.f);
  // alpha == 0: C = beta * C, and NaN in A/B must not leak (BLAS semantics).
  std::vector<float> a(4 * 3, std::numeric_limits<float>::quiet_NaN()), b(3 * 2, 1.f), c2(4 * 2, 2.f);
  gemm<float>(false, false, 4, 2, 3, 0.f, a.data(), 3, b.data(), 2, 0.5f, c2.data(), 2);
  for (float x : c2) CHECK(x == 1.f);
}

namespace {

/// Epilogue that records which elements it saw and checks their values are final: it stores, per
/// element, the number of visits and the value seen, which the test compares with C after gemm.
struct coverage_epilogue {
  std::size_t n;
  float const* c;
  std::size_t ldc;
  std::atomic<int>* visits; // m * n counters
  float* seen;              // m * n values
  void operator()(std::size_t i0, std::size_t i1, std::size_t j0, std::size_t j1) const {
    for (std::size_t i = i0; i < i1; ++i)
      for (std::size_t j = j0; j < j1; ++j) {
        visits[i * n + j].fetch_add(1, std::memory_order_relaxed);
        seen[i * n + j] = c[i * ldc + j];
      }
  }
};

/// A fused bias + ReLU epilogue, the use the hook exists for.
struct bias_relu_epilogue {
  float* c;
  std::size_t ldc;
  float const* bias;
  void operator()(std::size_t i0, std::size_t i1, std::size_t j0, std::size_t j1) const noexcept {
    for (std::size_t i = i0; i < i1; ++i)
      for (std::size_t j = j0; j < j1; ++j) c[i * ldc + j] = std::max(c[i * ldc + j] + bias[j], 0.f);
  }
};

} // namespace

TEST_CASE("gemm epilogue covers each element exactly once, after its final value", "[backend][gemm]") {
  std::size_t const threads_before = lepton::num_threads();
  for (std::size_t threads : {std::size_t{1}, std::size_t{2}, std::size_t{3}}) {
    lepton::set_num_threads(threads, lepton::oversubscribe::yes); // 3 splits even on 2 cores
    struct shape {
      std::size_t m, n, k;
    };
    for (shape s : {shape{1, 1, 1}, shape{15, 33, 7}, shape{100, 129, 300}, shape{257, 300, 100},
                    shape{64, 1100, 40}, shape{0, 5, 5}, shape{9, 9, 0}}) {
      INFO("threads=" << threads << " m=" << s.m << " n=" << s.n << " k=" << s.k);
      gemm_case const g{false, true, s.m, s.n, s.k, 1.0, 0.5, 0, 0, 3};
      operands<float> o(g, 7);
      std::vector<std::atomic<int>> visits(s.m * s.n);
      std::vector<float> seen(s.m * s.n, std::numeric_limits<float>::quiet_NaN());
      coverage_epilogue epi{s.n, o.c.data(), o.ldc, visits.data(), seen.data()};
      gemm<float>(false, true, s.m, s.n, s.k, 1.f, o.a.data(), o.lda, o.b.data(), o.ldb, 0.5f, o.c.data(),
                  o.ldc, epi);
      std::size_t wrong_count = 0, wrong_value = 0;
      for (std::size_t i = 0; i < s.m; ++i)
        for (std::size_t j = 0; j < s.n; ++j) {
          wrong_count += visits[i * s.n + j].load() != 1;
          // Bitwise: the epilogue must have seen exactly the final value.
          wrong_value += std::memcmp(&seen[i * s.n + j], &o.c[i * o.ldc + j], sizeof(float)) != 0;
        }
      CHECK(wrong_count == 0);
      CHECK(wrong_value == 0);
    }
  }
  lepton::set_num_threads(threads_before);
}

TEST_CASE("gemm with a fused bias + relu epilogue equals gemm followed by bias + relu", "[backend][gemm]") {
  std::size_t const m = 64, n = 256, k = 784;
  gemm_case const g{false, false, m, n, k, 1.0, 0.0};
  operands<float> o(g, 3);
  std::vector<float> bias(n);
  for (std::size_t j = 0; j < n; ++j) bias[j] = float(j % 7) * 0.1f - 0.3f;
  std::vector<float> fused(m * n), plain(m * n);
  gemm<float>(false, false, m, n, k, 1.f, o.a.data(), o.lda, o.b.data(), o.ldb, 0.f, fused.data(), n,
              bias_relu_epilogue{fused.data(), n, bias.data()});
  gemm<float>(false, false, m, n, k, 1.f, o.a.data(), o.lda, o.b.data(), o.ldb, 0.f, plain.data(), n);
  bias_relu_epilogue{plain.data(), n, bias.data()}(0, m, 0, n);
  CHECK(std::memcmp(fused.data(), plain.data(), m * n * sizeof(float)) == 0);
}

namespace {
/// Checks gemm with a gemm_bias_act epilogue against gemm followed by the same bias + activation
/// computed element by element in T (bitwise equal: same float operations), for both outputs.
template <class T> void check_bias_act(gemm_case const& g, lepton::detail::cpu::gemm_activation act,
                                       bool with_bias, bool separate_out) {
  using lepton::detail::cpu::gemm_activation;
  using lepton::detail::cpu::gemm_bias_act;
  INFO(describe(g) << (sizeof(T) == 4 ? " float" : " double") << " act=" << int(act) << " bias=" << with_bias
                   << " separate_out=" << separate_out);
  operands<T> o(g, 5);
  std::vector<T> bias(g.n);
  for (std::size_t j = 0; j < g.n; ++j) bias[j] = T(double(j % 11) * 0.07 - 0.35);
  // A NaN in one bias column must stay NaN through relu (NaN is not clamped to 0).
  if (with_bias && g.n > 3) bias[3] = std::numeric_limits<T>::quiet_NaN();
  // The expected values: plain gemm, then y = act(c + bias) in T.
  std::vector<T> plain = o.c;
  gemm<T>(g.ta, g.tb, g.m, g.n, g.k, T(g.alpha), o.a.data(), o.lda, o.b.data(), o.ldb, T(g.beta),
          plain.data(), o.ldc);
  std::vector<T> want_y(g.m * g.n);
  for (std::size_t i = 0; i < g.m; ++i)
    for (std::size_t j = 0; j < g.n; ++j) {
      T v = plain[i * o.ldc + j];
      if (with_bias) v = v + bias[j];
      want_y[i * g.n + j] = act == gemm_activation::relu && v < T(0) ? T(0) : v;
    }
  std::size_t const ldo = g.n + 5;
  std::vector<T> c = o.c, y(g.m * ldo, std::numeric_limits<T>::quiet_NaN());
  gemm_bias_act<T> const ep{with_bias ? bias.data() : nullptr, act, separate_out ? y.data() : nullptr,
                            separate_out ? ldo : 0};
  gemm<T>(g.ta, g.tb, g.m, g.n, g.k, T(g.alpha), o.a.data(), o.lda, o.b.data(), o.ldb, T(g.beta), c.data(),
          o.ldc, ep);
  std::size_t bad = 0, pad_written = 0;
  for (std::size_t i = 0; i < g.m; ++i) {
    for (std::size_t j = 0; j < g.n; ++j) {
      T const got_y = separate_out ? y[i * ldo + j] : c[i * o.ldc + j];
      T const want = want_y[i * g.n + j];
      bool const same = std::isnan(want) ? std::isnan(got_y) : std::memcmp(&got_y, &want, sizeof(T)) == 0;
      if (!same && bad++ < 5) UNSCOPED_INFO("y(" << i << "," << j << ") = " << got_y << ", want " << want);
      // With a separate output, C keeps the product itself (the pre-activation).
      if (separate_out && std::memcmp(&c[i * o.ldc + j], &plain[i * o.ldc + j], sizeof(T)) != 0 && bad++ < 5)
        UNSCOPED_INFO("C(" << i << "," << j << ") = " << c[i * o.ldc + j] << ", want "
                           << plain[i * o.ldc + j]);
    }
    for (std::size_t j = g.n; j < o.ldc; ++j) pad_written += !std::isnan(c[i * o.ldc + j]);
    for (std::size_t j = g.n; separate_out && j < ldo; ++j) pad_written += !std::isnan(y[i * ldo + j]);
  }
  CHECK(bad == 0);
  CHECK(pad_written == 0);
}
} // namespace

TEST_CASE("gemm with a register bias + activation epilogue equals gemm then bias + activation",
          "[backend][gemm]") {
  using lepton::detail::cpu::gemm_activation;
  std::size_t const threads_before = lepton::num_threads();
  struct shape {
    bool ta, tb;
    std::size_t m, n, k;
    double beta;
  };
  // Edge tiles in both directions, several k blocks (the epilogue must wait for the last one), the
  // in-place transposed-A path (n <= 2 nr), k == 0, and sizes that split across threads.
  for (std::size_t threads : {std::size_t{1}, std::size_t{2}}) {
    lepton::set_num_threads(threads);
    for (shape s : {shape{false, false, 1, 1, 1, 0.0}, shape{false, false, 15, 33, 7, 0.0},
                    shape{false, false, 64, 256, 784, 0.0}, shape{true, false, 45, 20, 300, 0.5},
                    shape{false, true, 100, 129, 600, 0.25}, shape{true, true, 257, 300, 100, 0.0},
                    shape{false, false, 9, 17, 0, 0.5}, shape{false, false, 300, 1100, 64, 0.0}}) {
      gemm_case const g{s.ta, s.tb, s.m, s.n, s.k, 1.0, s.beta, 1, 2, 3};
      for (gemm_activation act : {gemm_activation::identity, gemm_activation::relu})
        for (bool with_bias : {false, true})
          for (bool separate_out : {false, true}) check_bias_act<float>(g, act, with_bias, separate_out);
      check_bias_act<double>(g, gemm_activation::relu, true, true);
    }
  }
  lepton::set_num_threads(threads_before);
}

namespace {
/// An in-place result (C of g.m x g.n, contiguous) must equal the packed one bit for bit and the
/// float64 reference of `o` within the bound.
template <class T> void check_same_and_close(gemm_case const& g, operands<T> const& o,
                                             std::vector<T> const& in_place, std::vector<T> const& packed) {
  CHECK(std::memcmp(in_place.data(), packed.data(), g.m * g.n * sizeof(T)) == 0);
  std::vector<double> want, tol;
  reference(g, o, want, tol);
  std::size_t bad = 0;
  for (std::size_t i = 0; i < g.m * g.n; ++i) bad += !(std::abs(double(in_place[i]) - want[i]) <= tol[i]);
  CHECK(bad == 0);
}
} // namespace

namespace {
/// B of exactly nr columns, 64-byte aligned with ldb == nr, is read in place (no packing). Checks
/// that case bitwise against the same product with B copied to ldb = nr + 1 (packed as usual).
template <class T> void check_direct_b(std::size_t m, std::size_t k) {
  std::size_t const nr = lepton::detail::cpu::gemm_nr<T>();
  INFO("m=" << m << " k=" << k << " nr=" << nr << (sizeof(T) == 4 ? " float" : " double"));
  gemm_case const g{false, false, m, nr, k, 1.0, 0.0};
  operands<T> o(g, 13);
  std::vector<T, xsimd::aligned_allocator<T, 64>> b_direct(k * nr);
  std::vector<T> b_padded(k * (nr + 1), std::numeric_limits<T>::quiet_NaN());
  for (std::size_t p = 0; p < k; ++p)
    for (std::size_t j = 0; j < nr; ++j)
      b_direct[p * nr + j] = b_padded[p * (nr + 1) + j] = o.b[p * o.ldb + j];
  std::vector<T> c_direct(m * nr), c_packed(m * nr);
  gemm<T>(false, false, m, nr, k, T(1), o.a.data(), o.lda, b_direct.data(), nr, T(0), c_direct.data(), nr);
  gemm<T>(false, false, m, nr, k, T(1), o.a.data(), o.lda, b_padded.data(), nr + 1, T(0), c_packed.data(),
          nr);
  check_same_and_close(g, o, c_direct, c_packed);
}
} // namespace

namespace {
/// A whose row stride is whole cache lines but not a multiple of 4 lines is read in place (when C is
/// one B block wide); a stride of 4k lines is packed. Both must give the same bits, equal to the
/// float64 reference within the bound.
template <class T> void check_direct_a(bool ta, std::size_t m, std::size_t n, std::size_t k) {
  constexpr std::size_t line = 64 / sizeof(T);
  std::size_t const stored = ta ? m : k; // the stored row length of A
  std::size_t const odd =
      (stored + line - 1) / line * line + ((stored + line - 1) / line % 4 == 0 ? line : 0);
  std::size_t const four = (stored + 4 * line - 1) / (4 * line) * (4 * line);
  INFO("ta=" << ta << " m=" << m << " n=" << n << " k=" << k << " lda " << odd << " (in place) vs " << four
             << (sizeof(T) == 4 ? " float" : " double"));
  REQUIRE(odd / line % 4 != 0);
  REQUIRE(four / line % 4 == 0);
  gemm_case const g{ta, false, m, n, k, 1.0, 0.0, odd - stored, 0, 0};
  operands<T> o(g, 17);
  std::size_t const rows = ta ? k : m;
  std::vector<T> a4(rows * four, std::numeric_limits<T>::quiet_NaN());
  for (std::size_t i = 0; i < rows; ++i)
    for (std::size_t j = 0; j < stored; ++j) a4[i * four + j] = o.a[i * odd + j];
  std::vector<T> c_place(m * n), c_packed(m * n);
  gemm<T>(ta, false, m, n, k, T(1), o.a.data(), odd, o.b.data(), o.ldb, T(0), c_place.data(), n);
  gemm<T>(ta, false, m, n, k, T(1), a4.data(), four, o.b.data(), o.ldb, T(0), c_packed.data(), n);
  check_same_and_close(g, o, c_place, c_packed);
}
} // namespace

TEST_CASE("gemm reads an A with a non-aliasing row stride in place, with the packed result",
          "[backend][gemm]") {
  for (bool ta : {false, true}) {
    check_direct_a<float>(ta, 45, 100, 300);
    check_direct_a<float>(ta, 64, 256, 784);
    check_direct_a<double>(ta, 31, 70, 129);
  }
}

TEST_CASE("gemm reads a B of exactly nr aligned columns in place", "[backend][gemm]") {
  for (std::size_t m : {1, 14, 32, 45})
    for (std::size_t k : {1, 33, 784}) {
      check_direct_b<float>(m, k);
      check_direct_b<double>(m, k);
    }
}

TEST_CASE("gemm results are bitwise identical for 1, 2 and 3 threads", "[backend][gemm]") {
  std::size_t const threads_before = lepton::num_threads();
  struct shape {
    bool ta, tb;
    std::size_t m, n, k;
  };
  // Large enough to be split across threads (the small-problem threshold is ~2M multiply-adds),
  // with edges on every side and k spanning several k blocks.
  for (shape s : {shape{false, false, 257, 300, 600}, shape{true, false, 300, 257, 129},
                  shape{false, true, 129, 1100, 300}, shape{true, true, 1000, 70, 257}}) {
    INFO("ta=" << s.ta << " tb=" << s.tb << " m=" << s.m << " n=" << s.n << " k=" << s.k);
    gemm_case const g{s.ta, s.tb, s.m, s.n, s.k, 0.5, 0.25};
    operands<float> of(g, 11);
    operands<double> od(g, 11);
    std::vector<float> cf[3];
    std::vector<double> cd[3];
    for (std::size_t t = 1; t <= 3; ++t) {
      lepton::set_num_threads(t, lepton::oversubscribe::yes);
      cf[t - 1] = of.c;
      cd[t - 1] = od.c;
      gemm<float>(s.ta, s.tb, s.m, s.n, s.k, 0.5f, of.a.data(), of.lda, of.b.data(), of.ldb, 0.25f,
                  cf[t - 1].data(), of.ldc);
      gemm<double>(s.ta, s.tb, s.m, s.n, s.k, 0.5, od.a.data(), od.lda, od.b.data(), od.ldb, 0.25,
                   cd[t - 1].data(), od.ldc);
    }
    for (std::size_t t = 1; t < 3; ++t) {
      CHECK(std::memcmp(cf[0].data(), cf[t].data(), cf[0].size() * sizeof(float)) == 0);
      CHECK(std::memcmp(cd[0].data(), cd[t].data(), cd[0].size() * sizeof(double)) == 0);
    }
  }
  lepton::set_num_threads(threads_before);
}

TEST_CASE("gemm does not allocate after warm-up", "[backend][gemm]") {
  std::size_t const threads_before = lepton::num_threads();
  lepton::set_num_threads(1);
  gemm_case const g{false, true, 200, 300, 400, 1.0, 0.0};
  operands<float> o(g, 5);
  std::vector<float> bias(g.n, 0.5f);
  auto run = [&] {
    gemm<float>(false, true, g.m, g.n, g.k, 1.f, o.a.data(), o.lda, o.b.data(), o.ldb, 0.f, o.c.data(), o.ldc,
                bias_relu_epilogue{o.c.data(), o.ldc, bias.data()});
  };
  run(); // warm-up: the packing buffers grow here
  std::size_t const before = allocation_count.load();
  run();
  run();
  // Smaller problems reuse the same buffers.
  gemm<float>(true, false, 17, 33, 100, 1.f, o.a.data(), 17, o.b.data(), 33, 0.f, o.c.data(), 33);
  CHECK(allocation_count.load() == before);
  lepton::set_num_threads(threads_before);
}

// Counting replacements of the global allocation functions (array and nothrow forms forward here).
// GCC sees malloc/free through the inlined replacements and warns about a new/free mismatch.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif
void* operator new(std::size_t bytes) {
  allocation_count.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(bytes == 0 ? 1 : bytes)) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t bytes, std::align_val_t align) {
  allocation_count.fetch_add(1, std::memory_order_relaxed);
  std::size_t const a = static_cast<std::size_t>(align);
  if (void* p = std::aligned_alloc(a, (bytes + a - 1) / a * a + (bytes == 0 ? a : 0))) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
