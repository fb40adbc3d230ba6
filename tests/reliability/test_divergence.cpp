// Divergence: an optimizer step refuses non-finite gradients before it writes anything (so no NaN or
// infinity reaches a parameter through a gradient), fit names the epoch and batch, and fit warns once
// when the loss grows by more than fit_options::divergence_factor over its first value. See
// docs/reliability.md, "Numerical anomalies".
#include <catch2/catch.hpp>
#include <cmath>
#include <limits>
#include <sstream>
#include <string>

#include "reliability_util.hpp"

namespace lp = lepton;
namespace rel = lepton_reliability;

namespace {

struct line {
  lp::nn::linear<1, 1> fc;
  auto operator()(auto const& x) const { return fc(x); }
};

using reg_data = lp::data::dataset<lp::tensor<float, lp::dyn, 1>, lp::tensor<float, lp::dyn, 1>>;

/// `n` samples of (x, 0): y = 0.5 x has the loss 0.25 x^2 under MSE.
reg_data constant_samples(std::size_t n, float x) {
  lp::tensor<float, lp::dyn, 1> xs(n), ys(n);
  for (std::size_t i = 0; i < n; ++i) {
    xs(i, 0) = x;
    ys(i, 0) = 0.0f;
  }
  return {std::move(xs), std::move(ys)};
}

void set_line(line& m, float w, float b) {
  m.fc.weight.value(0, 0) = w;
  m.fc.bias.value(0) = b;
}

/// Runs one step of `opt` on gradients with one non-finite element; checks the refusal.
template <class Opt> void refuses_non_finite(Opt& opt, rel::mlp& m, float bad) {
  std::uint64_t const before = rel::parameter_hash(m);
  std::uint64_t const steps = opt.steps();
  lp::nn::for_each_parameter(m, [&](std::string_view name, auto& p) {
    p.grad.fill(0.25f);
    if (name == "1.weight") p.grad.flat()[77] = bad;
  });
  std::string msg;
  try {
    opt.step();
  } catch (lp::numeric_error const& e) {
    msg = e.what();
  }
  INFO(msg);
  REQUIRE(msg.find("1.weight") != std::string::npos);
  REQUIRE(msg.find("element 77") != std::string::npos);
  REQUIRE(msg.find("no parameter was updated") != std::string::npos);
  CHECK(rel::parameter_hash(m) == before);
  CHECK(opt.steps() == steps);
}

} // namespace

TEST_CASE("every optimizer refuses a non-finite gradient before it writes anything",
          "[reliability][nonfinite]") {
  rel::mlp m;
  lp::nn::init(m, lp::init::kaiming_uniform{}, 3);
  float const bads[] = {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::infinity(),
                        -std::numeric_limits<float>::infinity()};
  for (float bad : bads) {
    for (double clip : {0.0, 1.0}) { // the check alone, and fused with the clipping norm
      INFO("bad = " << bad << ", clip = " << clip);
      lp::optim::sgd sgd{m, {.lr = 0.1, .momentum = 0.9, .clip_grad_norm = clip}};
      refuses_non_finite(sgd, m, bad);
      lp::optim::adam adam{m, {.lr = 1e-3, .clip_grad_norm = clip}};
      refuses_non_finite(adam, m, bad);
      lp::optim::adamw adamw{m, {.lr = 1e-3, .clip_grad_norm = clip}};
      refuses_non_finite(adamw, m, bad);
      lp::optim::rmsprop rms{m, {.lr = 1e-3, .clip_grad_norm = clip}};
      refuses_non_finite(rms, m, bad);
    }
  }
  SECTION("finite gradients whose squares overflow float are not refused") {
    lp::optim::sgd sgd{m, {.lr = 1e-30, .clip_grad_norm = 1.0}};
    lp::nn::for_each_parameter(m, [&](std::string_view, auto& p) { p.grad.fill(1e30f); });
    REQUIRE_NOTHROW(sgd.step());
    CHECK(rel::all_finite(m));
  }
  SECTION("check_finite = false skips the check") {
    lp::optim::sgd sgd{m, {.lr = 0.1, .check_finite = false}};
    CHECK_FALSE(sgd.checks_finite());
    lp::nn::for_each_parameter(m, [&](std::string_view, auto& p) { p.grad.fill(bads[0]); });
    REQUIRE_NOTHROW(sgd.step());
    CHECK_FALSE(rel::all_finite(m));
  }
}

// y = 0.5 x with x = 3e19 and target 0, one sample per batch: the MSE loss 0.25 x^2 = 2.25e38 is
// finite, its gradient 2 * 0.5 x * x = 9e38 overflows float. Before the check, fit applied the update (writing inf/NaN
// into the weight) and stopped only at the next batch's non-finite loss.
TEST_CASE("fit stops at a non-finite gradient under a finite loss, before the update",
          "[reliability][nonfinite]") {
  rel::thread_count_guard guard;
  lp::set_num_threads(1);
  auto data = constant_samples(8, 3e19f);
  line m;
  set_line(m, 0.5f, 0.0f);
  lp::optim::sgd opt{m, {.lr = 1e-3}};
  std::uint64_t const before = rel::parameter_hash(m);
  std::string msg;
  try {
    lp::train::fit(m, opt, lp::loss::mse, data,
                   {.epochs = 2, .batch = 1, .shuffle = false, .display = lp::train::progress::none});
  } catch (lp::numeric_error const& e) {
    msg = e.what();
  }
  INFO(msg);
  REQUIRE(msg.find("fit: epoch 1, batch 1") != std::string::npos);
  REQUIRE(msg.find("0.weight") != std::string::npos);
  CHECK(rel::parameter_hash(m) == before);
  CHECK(rel::all_finite(m));
  CHECK(opt.steps() == 0);
}

// SGD at lr 10 on y = w x + b with x = 1: each step multiplies the error w + b by 1 - 4 lr = -39, the
// loss by 1521, so the loss passes 1000x its first value at the second batch and overflows float near
// the 13th. fit warns once, on `out` and in the result, long before the non-finite stop.
TEST_CASE("fit warns once when the loss grows by more than divergence_factor", "[reliability][nonfinite]") {
  rel::thread_count_guard guard;
  lp::set_num_threads(1);
  auto data = constant_samples(4, 1.0f);
  std::ostringstream out;
  lp::train::fit_options o{
      .epochs = 4, .batch = 1, .shuffle = false, .display = lp::train::progress::lines, .out = &out};

  SECTION("a diverging run warns once, then stops at the non-finite loss") {
    line m;
    set_line(m, 0.5f, 0.0f);
    lp::optim::sgd opt{m, {.lr = 10.0}};
    o.epochs = 20;
    REQUIRE_THROWS_AS(lp::train::fit(m, opt, lp::loss::mse, data, o), lp::numeric_error);
    std::string const text = out.str();
    INFO(text);
    auto const first = text.find("training is probably diverging");
    REQUIRE(first != std::string::npos);
    CHECK(text.find("training is probably diverging", first + 1) == std::string::npos);
    CHECK(text.find("at epoch 1, batch 2") != std::string::npos);
    CHECK(rel::all_finite(m));
  }

  SECTION("the warning lands in fit_result::warnings; a converging run has none") {
    line m;
    set_line(m, 0.5f, 0.0f);
    lp::optim::sgd opt{m, {.lr = 10.0}};
    o.epochs = 1; // 4 steps: loss x 1521 per step, still finite
    o.display = lp::train::progress::none;
    auto r = lp::train::fit(m, opt, lp::loss::mse, data, o);
    REQUIRE(r.warnings.size() == 1);
    CHECK(r.warnings[0].find("diverging") != std::string::npos);
    CHECK(out.str().empty());

    line calm;
    set_line(calm, 0.5f, 0.0f);
    lp::optim::sgd slow{calm, {.lr = 0.1}};
    auto r2 = lp::train::fit(calm, slow, lp::loss::mse, data, o);
    CHECK(r2.warnings.empty());

    line off;
    set_line(off, 0.5f, 0.0f);
    lp::optim::sgd wild{off, {.lr = 10.0}};
    o.divergence_factor = 0;
    auto r3 = lp::train::fit(off, wild, lp::loss::mse, data, o);
    CHECK(r3.warnings.empty());
  }
}

// The probe's case: Adam at lr 1e6 trained 5 epochs to a loss of 1e13 without a word.
TEST_CASE("Adam at lr 1e6 does not train silently to a huge loss", "[reliability][nonfinite]") {
  rel::thread_count_guard guard;
  lp::set_num_threads(1);
  auto data = rel::blobs<32>(256, 10, 7);
  rel::mlp m;
  lp::nn::init(m, lp::init::kaiming_uniform{}, 42);
  lp::optim::adam opt{m, {.lr = 1e6}};
  bool threw = false;
  lp::train::fit_result r;
  try {
    r = lp::train::fit(m, opt, lp::loss::cross_entropy, data,
                       {.epochs = 5, .batch = 32, .seed = 1, .display = lp::train::progress::none});
  } catch (lp::numeric_error const&) {
    threw = true;
  }
  CHECK((threw || r.warnings.size() == 1));
  CHECK(rel::all_finite(m));
}
