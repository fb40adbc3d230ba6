// Runtime ISA dispatch (core/isa.hpp, backend/cpu/isa_kernels.hpp): CPU detection checked against
// the compiler's own (libgcc's __builtin_cpu_supports), LEPTON_ISA / set_active_isa errors, and the
// GEMM and direct convolution kernels of every level this build compiled and this CPU runs, each
// against a float64 reference and against the portable level.

#include <lepton/backend/cpu/conv_kernels.hpp>
#include <lepton/backend/cpu/gemm.hpp>
#include <lepton/core/isa.hpp>

#include <catch2/catch.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

namespace isa_test {

using lepton::isa;

std::vector<isa> runnable_levels() {
  std::vector<isa> out;
  for (isa l : {isa::portable, isa::avx2, isa::avx512})
    if (lepton::isa_compiled(l) && static_cast<int>(l) <= static_cast<int>(lepton::cpu_isa()))
      out.push_back(l);
  return out;
}

/// Restores the default level when a test case ends.
struct level_guard {
  isa saved = lepton::active_isa();
  ~level_guard() { lepton::set_active_isa(saved); }
};

std::vector<double> random_values(std::size_t n, std::uint32_t seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> d(-1.0, 1.0);
  std::vector<double> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

} // namespace isa_test

TEST_CASE("isa: the detected level matches the compiler's CPU feature tests", "[isa]") {
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  bool const v4 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                  __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
  bool const v3 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  lepton::isa const want = v4 ? lepton::isa::avx512 : v3 ? lepton::isa::avx2 : lepton::isa::portable;
  CHECK(lepton::cpu_isa() == want);
#else
  CHECK(lepton::cpu_isa() == lepton::isa::portable);
#endif
  CHECK(std::string(lepton::to_string(lepton::isa::avx2)) == "avx2");
  CHECK(std::string(lepton::to_string(lepton::isa::avx512)) == "avx512");
  CHECK(lepton::isa_compiled(lepton::lowest_compiled_isa()));
}

TEST_CASE("isa: LEPTON_ISA from the environment picks the level", "[isa]") {
  // ctest runs this case once without LEPTON_ISA and once per level (tests/backend/CMakeLists.txt).
  char const* env = std::getenv("LEPTON_ISA");
  std::string const v = env ? env : "";
  INFO("LEPTON_ISA=" << v);
  if (v.empty() || v == "auto") {
    lepton::isa const a = lepton::active_isa();
    CHECK(lepton::isa_compiled(a));
    CHECK(static_cast<int>(a) <=
          std::max(static_cast<int>(lepton::cpu_isa()), static_cast<int>(lepton::lowest_compiled_isa())));
    // The default is the best runnable level.
    CHECK(a == isa_test::runnable_levels().back());
  } else {
    lepton::isa want{};
    try {
      want = lepton::detail::parse_isa(v, lepton::isa::portable);
    } catch (lepton::value_error const&) {
      CHECK_THROWS_WITH(lepton::active_isa(), Catch::Contains("is not an ISA level"));
      return;
    }
    bool const usable =
        lepton::isa_compiled(want) && static_cast<int>(want) <= static_cast<int>(lepton::cpu_isa());
    if (usable)
      CHECK(lepton::active_isa() == want);
    else
      CHECK_THROWS_AS(lepton::active_isa(), lepton::value_error);
  }
}

TEST_CASE("isa: unknown or unusable levels are value_errors that say why", "[isa]") {
  CHECK_THROWS_WITH(lepton::detail::parse_isa("avx9000", lepton::isa::portable),
                    Catch::Contains("LEPTON_ISA='avx9000'") && Catch::Contains("avx512"));
  CHECK(lepton::detail::parse_isa("auto", lepton::isa::avx2) == lepton::isa::avx2);
  CHECK(lepton::detail::parse_isa("sse2", lepton::isa::avx2) == lepton::isa::portable);
  isa_test::level_guard guard;
  for (lepton::isa l : {lepton::isa::portable, lepton::isa::avx2, lepton::isa::avx512}) {
    bool const usable = lepton::isa_compiled(l) && static_cast<int>(l) <= static_cast<int>(lepton::cpu_isa());
    if (usable) {
      lepton::set_active_isa(l);
      CHECK(lepton::active_isa() == l);
    } else {
      CHECK_THROWS_AS(lepton::set_active_isa(l), lepton::value_error);
    }
  }
}

namespace isa_test {

struct gemm_shape {
  bool ta, tb;
  std::size_t m, n, k;
  double alpha, beta;
  int epi; // 0 none, 1 bias + identity into out, 2 bias + relu in place
};

/// C (m x n) from one level's gemm on float operands built from the seed.
std::vector<float> run_gemm(gemm_shape const& s, std::vector<double>& want, std::vector<double>& tol) {
  std::size_t const lda = (s.ta ? s.m : s.k) + 3, ldb = (s.tb ? s.k : s.n) + 1, ldc = s.n + 2;
  std::size_t const arows = s.ta ? s.k : s.m, brows = s.tb ? s.n : s.k;
  auto ad = random_values(arows * lda, 1), bd = random_values(brows * ldb, 2),
       cd = random_values(s.m * ldc, 3);
  auto biasd = random_values(s.n, 4);
  std::vector<float> a(ad.begin(), ad.end()), b(bd.begin(), bd.end()), c(cd.begin(), cd.end());
  std::vector<float> bias(biasd.begin(), biasd.end()), out(s.m * s.n, std::nanf(""));
  // The float64 reference of the same float inputs.
  want.assign(s.m * s.n, 0.0);
  tol.assign(s.m * s.n, 0.0);
  for (std::size_t i = 0; i < s.m; ++i)
    for (std::size_t j = 0; j < s.n; ++j) {
      double acc = 0, mag = 0;
      for (std::size_t p = 0; p < s.k; ++p) {
        double const x = a[s.ta ? p * lda + i : i * lda + p], y = b[s.tb ? j * ldb + p : p * ldb + j];
        acc += x * y;
        mag += std::abs(x * y);
      }
      double r = s.alpha * acc + (s.beta != 0 ? s.beta * double(c[i * ldc + j]) : 0.0);
      if (s.epi) r += bias[j];
      if (s.epi == 2 && r < 0) r = 0;
      want[i * s.n + j] = r;
      tol[i * s.n + j] = 4e-7 * (double(s.k) + 4) * (std::abs(s.alpha) * mag + std::abs(s.beta) + 1);
    }
  lepton::detail::cpu::gemm_bias_act<float> ep{bias.data(),
                                               s.epi == 2 ? lepton::detail::cpu::gemm_activation::relu
                                                          : lepton::detail::cpu::gemm_activation::identity,
                                               s.epi == 1 ? out.data() : nullptr, s.n};
  if (s.epi)
    lepton::detail::cpu::gemm<float>(s.ta, s.tb, s.m, s.n, s.k, float(s.alpha), a.data(), lda, b.data(), ldb,
                                     float(s.beta), c.data(), ldc, ep);
  else
    lepton::detail::cpu::gemm<float>(s.ta, s.tb, s.m, s.n, s.k, float(s.alpha), a.data(), lda, b.data(), ldb,
                                     float(s.beta), c.data(), ldc);
  std::vector<float> res(s.m * s.n);
  for (std::size_t i = 0; i < s.m; ++i)
    for (std::size_t j = 0; j < s.n; ++j) res[i * s.n + j] = s.epi == 1 ? out[i * s.n + j] : c[i * ldc + j];
  return res;
}

} // namespace isa_test

TEST_CASE("isa: the GEMM of every runnable level matches float64 and the other levels", "[isa][gemm]") {
  isa_test::level_guard guard;
  std::vector<isa_test::gemm_shape> shapes;
  for (std::size_t m : {1, 7, 8, 13, 14, 15, 64})
    for (std::size_t n : {1, 9, 16, 33, 70})
      for (std::size_t k : {1, 37, 300})
        shapes.push_back({(m + n) % 2 == 1, (n + k) % 3 == 0, m, n, k, 1.0, 0.0, 0});
  shapes.push_back({false, false, 64, 256, 784, 1.0, 0.0, 2});
  shapes.push_back({false, false, 29, 45, 1100, 0.5, 1.0, 1}); // several k blocks, beta
  shapes.push_back({true, true, 40, 40, 40, -1.0, 0.25, 2});
  shapes.push_back({true, false, 256, 96, 64, 1.0, 0.0, 0});
  shapes.push_back({false, true, 100, 64, 200, 1.0, 0.0, 1});
  for (auto const& s : shapes) {
    INFO("ta=" << s.ta << " tb=" << s.tb << " m=" << s.m << " n=" << s.n << " k=" << s.k << " epi=" << s.epi);
    std::vector<std::vector<float>> results;
    std::vector<lepton::isa> levels = isa_test::runnable_levels();
    for (lepton::isa l : levels) {
      INFO("level " << lepton::to_string(l));
      lepton::set_active_isa(l);
      std::vector<double> want, tol;
      results.push_back(isa_test::run_gemm(s, want, tol));
      std::size_t bad = 0;
      for (std::size_t i = 0; i < want.size(); ++i)
        bad += !(std::abs(double(results.back()[i]) - want[i]) <= tol[i]);
      CHECK(bad == 0);
    }
    // AVX2 and AVX-512 compute the same FMA chains: bitwise equal.
    for (std::size_t x = 0; x < levels.size(); ++x)
      for (std::size_t y = x + 1; y < levels.size(); ++y)
        if (levels[x] != lepton::isa::portable) { // the portable level has no FMA
          INFO(lepton::to_string(levels[x]) << " vs " << lepton::to_string(levels[y]));
          CHECK(std::memcmp(results[x].data(), results[y].data(), results[x].size() * sizeof(float)) == 0);
        }
  }
}

namespace isa_test {

/// One level's direct forward convolution of `ci` padded planes (hp x wp) with a kh x kw kernel at
/// dilation d into co channels of oh x ow, checked against float64. Returns the output.
std::vector<float> direct_forward(lepton::isa l, std::size_t ci, std::size_t co, std::size_t hp,
                                  std::size_t wp, std::size_t kh, std::size_t kw, std::size_t d,
                                  double& max_err) {
  namespace dd = lepton::detail::direct;
  std::size_t const oh = hp - (kh - 1) * d, ow = wp - (kw - 1) * d;
  auto xd = random_values(ci * hp * wp, 11), wd = random_values(ci * kh * kw * co, 12),
       bd = random_values(co, 13);
  std::vector<float> x(xd.begin(), xd.end()), bias(bd.begin(), bd.end());
  std::size_t const ob = dd::fwd_channels<float>(l, ow), co_pad = (co + ob - 1) / ob * ob;
  std::vector<float> wr(ci * kh * kw * co_pad, 0.f);
  bias.resize(co_pad, 0.f); // the kernels read the bias of whole tiles, as the weights
  for (std::size_t q = 0; q < ci * kh * kw; ++q)
    for (std::size_t o = 0; o < co; ++o) wr[q * co_pad + o] = float(wd[q * co + o]);
  std::vector<float> out(co * oh * ow, std::nanf("")), spare(ob * oh * ow);
  dd::fwd_image_any<float>(l, dd::planes<float>{x.data(), ci, hp * wp, wp}, kh, kw, d, wr.data(), co, co_pad,
                           bias.data(), out.data(), oh, ow, spare.data());
  max_err = 0;
  for (std::size_t o = 0; o < co; ++o)
    for (std::size_t y = 0; y < oh; ++y)
      for (std::size_t z = 0; z < ow; ++z) {
        double s = bias[o];
        for (std::size_t c = 0; c < ci; ++c)
          for (std::size_t u = 0; u < kh; ++u)
            for (std::size_t v = 0; v < kw; ++v)
              s +=
                  double(wr[((c * kh + u) * kw + v) * co_pad + o]) * x[(c * hp + y + u * d) * wp + z + v * d];
        max_err = std::max(max_err, std::abs(s - double(out[(o * oh + y) * ow + z])));
      }
  return out;
}

/// One level's direct weight gradient over `count` images, checked against float64.
std::vector<float> direct_dw(lepton::isa l, std::size_t count, std::size_t ci, std::size_t co, std::size_t hp,
                             std::size_t wp, std::size_t kh, std::size_t kw, std::size_t d, double& max_err) {
  namespace dd = lepton::detail::direct;
  std::size_t const oh = hp - (kh - 1) * d, ow = wp - (kw - 1) * d, in_stride = ci * hp * wp;
  auto xd = random_values(count * in_stride, 21), gd = random_values(count * co * oh * ow, 22);
  std::vector<float> x(xd.begin(), xd.end()), dy(gd.begin(), gd.end()), zeros(oh * ow, 0.f);
  std::vector<float> dw(co * ci * kh * kw, 0.f);
  dd::dw_images_any<float>(l, dy.data(), co, dd::planes<float>{x.data(), ci, hp * wp, wp}, in_stride, count,
                           kh, kw, d, oh, ow, zeros.data(), dw.data());
  max_err = 0;
  for (std::size_t o = 0; o < co; ++o)
    for (std::size_t c = 0; c < ci; ++c)
      for (std::size_t u = 0; u < kh; ++u)
        for (std::size_t v = 0; v < kw; ++v) {
          double s = 0;
          for (std::size_t i = 0; i < count; ++i)
            for (std::size_t y = 0; y < oh; ++y)
              for (std::size_t z = 0; z < ow; ++z)
                s += double(dy[((i * co + o) * oh + y) * ow + z]) *
                     x[i * in_stride + (c * hp + y + u * d) * wp + z + v * d];
          max_err = std::max(max_err, std::abs(s - double(dw[((o * ci + c) * kh + u) * kw + v])));
        }
  return dw;
}

} // namespace isa_test

TEST_CASE("isa: the direct convolution kernels of every runnable level match float64", "[isa][conv]") {
  struct shape {
    std::size_t ci, co, hp, wp, kh, kw, d;
  };
  // LeNet-like (28 + 2 pad), CIFAR-like, odd widths (edge lanes), dilation, the fashion_mnist_cnn
  // example's second conv (14-wide rows: full-width loads except in the last rows of the last
  // plane, where they would read past the input; the ASan run catches a wrong bound).
  for (shape s :
       {shape{1, 6, 32, 32, 5, 5, 1}, shape{3, 32, 34, 34, 3, 3, 1}, shape{5, 7, 13, 21, 3, 3, 1},
        shape{4, 9, 19, 11, 3, 5, 2}, shape{2, 3, 9, 40, 5, 3, 1}, shape{32, 64, 16, 16, 3, 3, 1}}) {
    INFO("ci=" << s.ci << " co=" << s.co << " in=" << s.hp << "x" << s.wp << " k=" << s.kh << "x" << s.kw
               << " d=" << s.d);
    std::vector<std::vector<float>> fwd, dw;
    auto const levels = isa_test::runnable_levels();
    for (lepton::isa l : levels) {
      INFO("level " << lepton::to_string(l));
      double e1 = 0, e2 = 0;
      fwd.push_back(isa_test::direct_forward(l, s.ci, s.co, s.hp, s.wp, s.kh, s.kw, s.d, e1));
      CHECK(e1 <= 2e-5 * double(s.ci * s.kh * s.kw));
      dw.push_back(isa_test::direct_dw(l, 3, s.ci, s.co, s.hp, s.wp, s.kh, s.kw, s.d, e2));
      CHECK(e2 <= 2e-6 * double(3 * s.hp * s.wp));
    }
    // The forward kernel is one FMA chain per output in (c, u, v) order at the FMA levels: bitwise
    // equal between AVX2 and AVX-512.
    for (std::size_t x = 0; x < levels.size(); ++x)
      for (std::size_t y = x + 1; y < levels.size(); ++y)
        if (levels[x] != lepton::isa::portable)
          CHECK(std::memcmp(fwd[x].data(), fwd[y].data(), fwd[x].size() * sizeof(float)) == 0);
  }
}
