// After warm-up, forward + backward of a 3-layer MLP performs zero heap allocations: every
// allocation function (malloc family and operator new) is counted.
#include <catch2/catch.hpp>
#include <cstdlib>
#include <lepton/lepton.hpp>
#include <new>
#include <support/util.hpp>

extern "C" {
void* __libc_malloc(std::size_t);
void* __libc_calloc(std::size_t, std::size_t);
void* __libc_realloc(void*, std::size_t);
void* __libc_memalign(std::size_t, std::size_t);
void __libc_free(void*);
}

namespace {
std::atomic<long> g_allocs{0};
std::atomic<bool> g_counting{false};
inline void note() {
  if (g_counting.load(std::memory_order_relaxed)) g_allocs.fetch_add(1, std::memory_order_relaxed);
}
} // namespace

extern "C" {
void* malloc(std::size_t n) {
  note();
  return __libc_malloc(n);
}
void* calloc(std::size_t a, std::size_t b) {
  note();
  return __libc_calloc(a, b);
}
void* realloc(void* p, std::size_t n) {
  note();
  return __libc_realloc(p, n);
}
void free(void* p) { __libc_free(p); }
int posix_memalign(void** out, std::size_t al, std::size_t n) {
  note();
  void* p = __libc_memalign(al, n);
  if (!p) return ENOMEM;
  *out = p;
  return 0;
}
void* aligned_alloc(std::size_t al, std::size_t n) {
  note();
  return __libc_memalign(al, n);
}
void* memalign(std::size_t al, std::size_t n) {
  note();
  return __libc_memalign(al, n);
}
}

namespace lp = lepton;

TEST_CASE("forward + backward of a 3-layer MLP allocates nothing after warm-up", "[autodiff][alloc]") {
  lp::param<float, 784, 256> w1;
  lp::param<float, 256> b1;
  lp::param<float, 256, 128> w2;
  lp::param<float, 128> b2;
  lp::param<float, 128, 10> w3;
  lp::param<float, 10> b3;
  lepton_test::fill_uniform(w1.value, -0.05, 0.05, 1);
  lepton_test::fill_uniform(w2.value, -0.1, 0.1, 2);
  lepton_test::fill_uniform(w3.value, -0.1, 0.1, 3);
  for (std::size_t batch : {64u, 256u}) {
    lp::tensor<float, lp::dyn, 784> x(batch);
    lp::tensor<int, lp::dyn> y(batch);
    lepton_test::fill_uniform(x, 0, 1, 4);
    for (std::size_t i = 0; i < batch; ++i) y(i) = int(i % 10);
    auto step = [&] {
      auto logits = lp::matmul(lp::relu(lp::matmul(lp::relu(lp::matmul(x, w1) + b1), w2) + b2), w3) + b3;
      return lp::backward(lp::loss::cross_entropy(logits, y));
    };
    float first = step();
    step();
    g_allocs = 0;
    g_counting = true;
    float l = 0;
    for (int i = 0; i < 5; ++i) l = step();
    g_counting = false;
    INFO("batch " << batch);
    REQUIRE(g_allocs.load() == 0);
    REQUIRE(l == first); // same data and parameters: same loss
    REQUIRE(std::isfinite(l));
  }
}

namespace {
struct mlp {
  lp::nn::linear<784, 256> fc1;
  lp::nn::linear<256, 128> fc2;
  lp::nn::linear<128, 10> fc3;
  auto operator()(auto const& x) const { return fc3(lp::relu(fc2(lp::relu(fc1(x))))); }
};
} // namespace

TEST_CASE("a whole training step (forward, loss, backward, Adam update) allocates nothing after warm-up",
          "[autodiff][alloc]") {
  mlp model;
  lp::nn::init(model, lp::init::kaiming_uniform{}, 1);
  lp::optim::adam opt{model, {.lr = 1e-3, .clip_grad_norm = 5.0}};
  lp::tensor<float, lp::dyn, 784> x(64);
  lp::tensor<int, lp::dyn> y(64);
  lepton_test::fill_uniform(x, 0, 1, 4);
  for (std::size_t i = 0; i < 64; ++i) y(i) = int(i % 10);
  std::size_t correct = 0;
  auto step = [&] {
    float l = lp::backward(lp::loss::cross_entropy(model(x), y), {.correct = &correct});
    opt.step();
    return l;
  };
  float first = step();
  step();
  g_allocs = 0;
  g_counting = true;
  float l = 0;
  for (int i = 0; i < 20; ++i) l = step();
  g_counting = false;
  REQUIRE(g_allocs.load() == 0);
  REQUIRE(l < first); // it learns the batch
}
