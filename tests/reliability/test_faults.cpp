// Resource faults and numerical anomalies: an impossible allocation throws std::bad_alloc or a
// lepton::error and the process carries on; fit refuses to continue on a non-finite loss with a
// lepton::numeric_error naming the epoch and the batch. See docs/reliability.md.
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <new>
#include <sstream>
#include <string>

#include <lepton/io.hpp>

#include "reliability_util.hpp"

namespace lp = lepton;
namespace rel = lepton_reliability;

// Under ASan/TSan a failed malloc aborts the process by default; the promise under test is that the
// library turns it into std::bad_alloc, so let malloc return null as it does without sanitizers.
// (A failed `operator new` still aborts under ASan whatever the option: tests that reach it run only
// in builds without a sanitizer, see LEPTON_REL_SANITIZED.)
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define LEPTON_REL_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define LEPTON_REL_SANITIZED 1
#endif
#endif
#ifndef LEPTON_REL_SANITIZED
#define LEPTON_REL_SANITIZED 0
#endif
#if LEPTON_REL_SANITIZED
extern "C" char const* __asan_default_options() { return "allocator_may_return_null=1"; }
extern "C" char const* __tsan_default_options() { return "allocator_may_return_null=1"; }
#endif

namespace {

/// Runs f; true if it threw std::bad_alloc or a lepton::error (what an impossible request may do).
template <class F> bool refused(F&& f, std::string& what) {
  try {
    f();
  } catch (std::bad_alloc const& e) {
    what = std::string("std::bad_alloc: ") + e.what();
    return true;
  } catch (lp::error const& e) {
    what = e.what();
    return true;
  }
  return false;
}

/// The process carries on: a normal allocation and an inference work after the failure.
void carries_on() {
  lp::tensor<float, lp::dyn, 32> x(64);
  lepton_test::fill_uniform(x, -1, 1, 5);
  rel::mlp m;
  lp::nn::init(m, lp::init::kaiming_uniform{}, 1);
  lp::tensor<float, lp::dyn, 10> y = m(x);
  REQUIRE(y.shape()[0] == 64);
  for (float v : y.flat()) REQUIRE(std::isfinite(v));
}

} // namespace

TEST_CASE("an allocation beyond the address space throws std::bad_alloc and the process carries on",
          "[reliability][faults]") {
  std::string what;
  // 2^46 floats = 256 TiB: more than x86-64's 128 TiB of user address space, so it fails even with
  // memory overcommit enabled.
  REQUIRE(refused([] { lp::tensor<float, lp::dyn> t(std::size_t{1} << 46); }, what));
  INFO(what);
  carries_on();
  lp::tensor<float, lp::dyn, 4> r(8);
  REQUIRE(refused([&] { r.resize({std::size_t{1} << 46, 4}); }, what));
  carries_on();
  // The io module's tensors check their byte size before allocating.
  auto huge_dyn = [] { lp::io::dyn_tensor d(lp::io::dtype::f32, {1ull << 40, 1ull << 40}); };
  REQUIRE(refused(huge_dyn, what));
  REQUIRE(what.find("lepton: ") == 0);
  carries_on();
}

// The element count or the byte size of these shapes overflows std::size_t (or exceeds
// PTRDIFF_MAX bytes): core/tensor.hpp refuses them with a value_error before allocating (unchecked,
// the product would wrap modulo 2^64 and a tiny buffer would claim a huge shape).
TEST_CASE("a tensor whose element count or byte size overflows is refused", "[reliability][faults]") {
  using big2 = lp::tensor<float, lp::dyn, lp::dyn>;
  using big3 = lp::tensor<float, lp::dyn, lp::dyn, lp::dyn>;
  auto count_overflow = [] { big2 t({1ull << 40, 1ull << 40}); };                   // 2^80 elements
  auto bytes_overflow = [] { lp::tensor<float, lp::dyn> t(std::size_t{1} << 62); }; // 2^64 bytes
  auto bytes_overflow2 = [] { lp::tensor<double, lp::dyn, 8> t(std::size_t{1} << 61); };
  auto rank3_overflow = [] { big3 t({1ull << 22, 1ull << 21, 1ull << 21}); };
  std::string what;
  CHECK(refused(count_overflow, what));
  CHECK(refused(bytes_overflow, what));
  CHECK(refused(bytes_overflow2, what));
  CHECK(refused(rank3_overflow, what));
  carries_on();
}

// A failed resize leaves the tensor as it was (strong guarantee): tensor::resize allocates the new
// storage before it replaces the old one (xtensor's own resize sets the new shape first).
TEST_CASE("a failed resize leaves the tensor unchanged", "[reliability][faults]") {
  lp::tensor<float, lp::dyn, 4> r(8);
  r.fill(1.5f);
  std::string what;
  for (std::size_t rows : {std::size_t{1} << 46, std::size_t{1} << 62}) { // bad_alloc, then value_error
    REQUIRE(refused([&] { r.resize({rows, 4}); }, what));
    INFO(what);
    CHECK(r.shape()[0] == 8);
    CHECK(r.size() == 32);
    CHECK(r.xt().size() == 32);
    for (float v : r.flat()) CHECK(v == 1.5f);
  }
  r.resize({16, 4}); // and it still resizes
  CHECK(r.size() == 64);
}

#if !LEPTON_REL_SANITIZED
TEST_CASE("an evaluation whose workspace cannot be allocated throws and the thread's arena still works",
          "[reliability][faults]") {
  // (2^23, 1) x (1, 2^23): a 2^46-element (256 TiB) product, materialised in the thread's arena.
  lp::tensor<float, lp::dyn, 1> a(std::size_t{1} << 23);
  lp::tensor<float, 1, lp::dyn> b(std::size_t{1} << 23);
  std::string what;
  REQUIRE(refused([&] { (void)lp::value(lp::sum(lp::matmul(a, b))); }, what));
  INFO(what);
  carries_on();
  lp::tensor<float, lp::dyn, 1> small_a(4);
  lp::tensor<float, 1, lp::dyn> small_b(3);
  small_a.fill(2.0f);
  small_b.fill(0.5f);
  REQUIRE(lp::value(lp::sum(lp::matmul(small_a, small_b))) == 12.0f);
}
#endif

namespace {
/// tanh propagates NaN and infinity (unlike relu today, see below).
struct tanh_mlp {
  lp::nn::linear<16, 32> fc1;
  lp::nn::linear<32, 4> fc2;
  auto operator()(auto const& x) const { return fc2(lp::tanh(fc1(x))); }
};

} // namespace

TEST_CASE("fit stops on a non-finite loss with a numeric_error naming the epoch and the batch",
          "[reliability][nonfinite]") {
  rel::thread_count_guard guard;
  lp::set_num_threads(1);
  auto data = rel::blobs<16>(160, 4, 5);
  tanh_mlp m;
  lp::nn::init(m, lp::init::kaiming_uniform{}, 8);
  lp::optim::sgd opt{m, {.lr = 0.01}};
  lp::train::fit_options o{.epochs = 3, .batch = 16, .shuffle = false, .display = lp::train::progress::none};

  SECTION("a NaN in the data, first seen in epoch 2, batch 4") {
    // Injected after epoch 1: sample 50 lies in batch 4 (samples 48..63) of an unshuffled epoch.
    o.on_epoch = [&](lp::train::epoch_stats const& s) {
      if (s.epoch == 1) data.features()(50, 3) = std::numeric_limits<float>::quiet_NaN();
      return true;
    };
    std::string msg;
    try {
      lp::train::fit(m, opt, lp::loss::cross_entropy, data, o);
    } catch (lp::numeric_error const& e) {
      msg = e.what();
    }
    INFO(msg);
    REQUIRE(msg.find("non-finite loss") != std::string::npos);
    REQUIRE(msg.find("epoch 2, batch 4") != std::string::npos);
  }

  SECTION("the update of the offending batch is not applied") {
    data.features()(0, 0) = std::numeric_limits<float>::quiet_NaN(); // batch 1 of epoch 1
    std::uint64_t const before = rel::parameter_hash(m);
    REQUIRE_THROWS_AS(lp::train::fit(m, opt, lp::loss::cross_entropy, data, o), lp::numeric_error);
    REQUIRE(rel::parameter_hash(m) == before);
    REQUIRE(rel::all_finite(m));
  }

  SECTION("a diverging learning rate is caught, not run to the end with NaN parameters") {
    lp::optim::sgd wild{m, {.lr = 3e38}}; // the first update overflows the weights to +-inf
    REQUIRE_THROWS_AS(lp::train::fit(m, wild, lp::loss::cross_entropy, data, o), lp::numeric_error);
  }

  SECTION("stop_on_nonfinite = false keeps going and reports a NaN loss") {
    data.features()(5, 1) = std::numeric_limits<float>::quiet_NaN();
    o.stop_on_nonfinite = false;
    o.epochs = 1;
    auto r = lp::train::fit(m, opt, lp::loss::cross_entropy, data, o);
    REQUIRE(r.history.size() == 1);
    REQUIRE(std::isnan(r.history[0].train_loss));
  }
}

// relu keeps NaN (like PyTorch's): a NaN in the data of a ReLU network reaches the loss and fit stops
// with numeric_error before the update. (With max(x, 0), the NaN vanished from the forward pass
// while NaN * 0 still reached the first layer's weight gradient: a finite loss over corrupted
// weights.)
TEST_CASE("a NaN in the data of a ReLU network is not silently trained into the weights",
          "[reliability][nonfinite]") {
  rel::thread_count_guard guard;
  lp::set_num_threads(1);
  auto data = rel::blobs<16>(64, 4, 5);
  data.features()(5, 3) = std::numeric_limits<float>::quiet_NaN();
  rel::wide_mlp m;
  lp::nn::init(m, lp::init::kaiming_uniform{}, 8);
  lp::optim::sgd opt{m, {.lr = 0.01}};
  bool stopped = false;
  try {
    lp::train::fit(m, opt, lp::loss::cross_entropy, data,
                   {.epochs = 1, .batch = 16, .shuffle = false, .display = lp::train::progress::none});
  } catch (lp::numeric_error const&) {
    stopped = true;
  }
  CHECK((stopped || rel::all_finite(m)));
  CHECK(stopped);
}
