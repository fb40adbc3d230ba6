// After warm-up, a CNN training step (conv, batch norm, pooling, linear, cross-entropy, backward and
// the Adam update) performs zero heap allocations: every allocation function is counted.
#include <catch2/catch.hpp>
#include <cstdlib>
#include <lepton/lepton.hpp>
#include <lepton/nn/layers/batch_norm.hpp>
#include <lepton/nn/layers/conv2d.hpp>
#include <lepton/nn/layers/pooling.hpp>
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

namespace {
struct cnn {
  lp::nn::conv2d<1, 8, 3, 3, 1, 1> conv1;
  lp::nn::batch_norm<8> bn1;
  lp::nn::max_pool2d<2> pool1;
  lp::nn::conv2d<8, 16, 3, 3, 1, 1, 1, false> conv2;
  lp::nn::avg_pool2d<2> pool2;
  lp::nn::linear<16 * 7 * 7, 10> fc;
  auto operator()(auto const& x) const {
    auto h = pool1(lp::relu(bn1(conv1(x))));
    return fc(lp::flatten(pool2(lp::relu(conv2(h)))));
  }
};
} // namespace

TEST_CASE("a CNN training step allocates nothing after warm-up", "[cnn][alloc]") {
  cnn model;
  lp::nn::init(model, lp::init::kaiming_uniform{}, 1);
  lp::nn::reset_batch_norm(model);
  lp::optim::adam opt{model, {.lr = 1e-3}};
  for (std::size_t batch : {1u, 32u}) {
    lp::tensor<float, lp::dyn, 1, 28, 28> x(batch);
    lp::tensor<int, lp::dyn> y(batch);
    lepton_test::fill_uniform(x, 0, 1, 4);
    for (std::size_t i = 0; i < batch; ++i) y(i) = int(i % 10);
    auto step = [&] {
      float l = lp::backward(lp::loss::cross_entropy(model(x), y));
      opt.step();
      return l;
    };
    if (batch == 1) lp::nn::set_training(model, false); // batch norm needs > 1 value per channel to train
    step();
    step();
    g_allocs = 0;
    g_counting = true;
    float l = 0;
    for (int i = 0; i < 5; ++i) l = step();
    g_counting = false;
    lp::nn::set_training(model, true);
    INFO("batch " << batch);
    REQUIRE(g_allocs.load() == 0);
    REQUIRE(std::isfinite(l));
  }
}
