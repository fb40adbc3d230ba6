// Fusion guarantees: no temporaries for elementwise chains, no allocation after warm-up.
#include <catch2/catch.hpp>
#include <cstdlib>
#include <lepton/lepton.hpp>
#include <new>
#include <support/util.hpp>

// The replacements below pair malloc/aligned_alloc with free on purpose.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace {
std::atomic<long> g_allocs{0};
}
// Counting replacements of the global allocation functions (used by every test in this binary).
void* operator new(std::size_t n) {
  ++g_allocs;
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t n, std::align_val_t a) {
  ++g_allocs;
  std::size_t al = static_cast<std::size_t>(a);
  if (void* p = std::aligned_alloc(al, (n + al - 1) / al * al)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

namespace lp = lepton;

TEST_CASE("a fused elementwise chain allocates nothing", "[core][fusion]") {
  lp::tensor<float, lp::dyn> x(100003), y(100003), z(100003);
  lepton_test::fill_uniform(x, -1, 1, 1);
  lepton_test::fill_uniform(y, -1, 1, 2);
  float a = 0.5f, b = 1.5f;
  z = a * x + b * y * y - lp::tanh(x); // warm-up (thread pool start, arena)
  long before = g_allocs.load();
  z = a * x + b * y * y - lp::tanh(x);
  REQUIRE(g_allocs.load() == before);
  for (std::size_t i = 0; i < x.size(); i += 997)
    REQUIRE(lepton_test::close(z(i), 0.5 * x(i) + 1.5 * y(i) * y(i) - std::tanh(double(x(i))), 1e-5, 1e-6));
}

TEST_CASE("materialising expressions stop allocating after warm-up", "[core][fusion]") {
  lp::tensor<float, lp::dyn, 64> x(32);
  lp::tensor<float, 64, 48> w;
  lp::tensor<float, 48> b;
  lp::tensor<float, lp::dyn, 48> h(32);
  lepton_test::fill_uniform(x, -1, 1, 3);
  lepton_test::fill_uniform(w, -1, 1, 4);
  auto step = [&] {
    h = lp::log_softmax(lp::relu(lp::matmul(x, w) + b)) + lp::max(x, lp::axis<1>, lp::keepdims);
  };
  step();
  step();
  long before = g_allocs.load();
  step();
  REQUIRE(g_allocs.load() == before);
}

TEST_CASE("large outputs (streamed past the cache) are correct, including unaligned chunk edges",
          "[core][fusion]") {
  std::size_t const n = (std::size_t{5} << 20) + 7; // > 16 MiB of floats: the non-temporal path
  lp::tensor<float, lp::dyn> x(n), y(n), z(n);
  lepton_test::fill_uniform(x, -1, 1, 5);
  lepton_test::fill_uniform(y, -1, 1, 6);
  for (std::size_t threads : {1u, 2u}) {
    lp::set_num_threads(threads);
    z = 0.5f * x + 1.5f * y * y - lp::tanh(x);
    for (std::size_t i = 0; i < n; i += 9973)
      REQUIRE(lepton_test::close(z(i), 0.5 * x(i) + 1.5 * y(i) * y(i) - std::tanh(double(x(i))), 1e-5, 1e-6));
    REQUIRE(lepton_test::close(
        z(n - 1), 0.5 * x(n - 1) + 1.5 * y(n - 1) * y(n - 1) - std::tanh(double(x(n - 1))), 1e-5, 1e-6));
  }
  lp::set_num_threads(0);
}
