// CNN layers: conv2d / pooling / batch_norm layers, parameter reflection and init, train/eval
// switching, and a small CNN that learns a synthetic image task with fit().
#include "cnn_test_util.hpp"

#include <lepton/nn/layers/batch_norm.hpp>
#include <lepton/nn/layers/conv2d.hpp>
#include <lepton/nn/layers/pooling.hpp>

using namespace cnn_test;

namespace {
struct small_cnn {
  lp::nn::conv2d<1, 4, 3, 3, 1, 1> conv1;
  lp::nn::batch_norm<4> bn1;
  lp::nn::max_pool2d<2> pool;
  lp::nn::conv2d<4, 8, 3, 3, 1, 1, 1, false> conv2; // no bias: batch norm follows
  lp::nn::batch_norm<8> bn2;
  lp::nn::global_avg_pool2d gap;
  lp::nn::linear<8, 2> fc;
  static constexpr std::array<char const*, 7> lepton_names{"conv1", "bn1", "pool", "conv2",
                                                           "bn2",   "gap", "fc"};
  auto operator()(auto const& x) const {
    auto h = pool(lp::relu(bn1(conv1(x))));
    return fc(gap(lp::relu(bn2(conv2(h)))));
  }
};
} // namespace

TEST_CASE("CNN layers: names, parameter count, static shapes, init", "[cnn][nn]") {
  static_assert(lp::nn::parameter_count<small_cnn> ==
                (4 * 9 + 4) + 2 * 4 + (8 * 4 * 9) + 2 * 8 + (8 * 2 + 2));
  small_cnn m;
  std::vector<std::string> expected = {"conv1.weight", "conv1.bias", "bn1.weight", "bn1.bias", "conv2.weight",
                                       "bn2.weight",   "bn2.bias",   "fc.weight",  "fc.bias"};
  REQUIRE(lp::nn::parameter_names(m) == expected);
  lp::tensor<float, lp::dyn, 1, 12, 12> x(3);
  static_assert(std::is_same_v<decltype(m.conv1(x))::static_dims, lp::dims<lp::dyn, 4, 12, 12>>);
  static_assert(std::is_same_v<decltype(m(x))::static_dims, lp::dims<lp::dyn, 2>>);
  // conv weights are (out, in, kh, kw): kaiming bound sqrt(2) sqrt(3 / (in kh kw))
  lp::nn::init(m, lp::init::kaiming_uniform{}, 3);
  double const bound = std::sqrt(2.0) * std::sqrt(3.0 / (4 * 9));
  double mx = 0;
  for (float v : m.conv2.weight.value.flat()) mx = std::max(mx, double(std::abs(v)));
  REQUIRE(mx <= bound);
  REQUIRE(mx > 0.8 * bound);
  // init leaves batch_norm in its own initial state (gamma 1, beta 0); reset_batch_norm restores it
  for (float v : m.bn1.weight.value.flat()) REQUIRE(v == 1.0f);
  for (float v : m.bn1.bias.value.flat()) REQUIRE(v == 0.0f);
  m.bn1.weight.value(0) = 3;
  m.bn1.running_mean(1) = 5;
  lp::nn::reset_batch_norm(m);
  for (float v : m.bn1.weight.value.flat()) REQUIRE(v == 1.0f);
  for (float v : m.bn2.running_var.flat()) REQUIRE(v == 1.0f);
  REQUIRE(m.bn1.running_mean(1) == 0.0f);
  // a default-constructed batch_norm starts in that state too
  lp::nn::batch_norm<3> fresh;
  REQUIRE(fresh.weight.value(2) == 1.0f);
  REQUIRE(fresh.running_var(2) == 1.0f);
  REQUIRE(fresh.bias.value(2) == 0.0f);
}

TEST_CASE("CNN layers: layer output equals the op, batch_norm follows set_training", "[cnn][nn]") {
  lp::nn::conv2d<2, 3, 3, 3, 2, 1, 1, true, double> conv;
  lepton_test::fill_uniform(conv.weight.value, -1, 1, 1);
  lepton_test::fill_uniform(conv.bias.value, -1, 1, 2);
  lp::tensor<double, lp::dyn, 2, 7, 6> x(2);
  lepton_test::fill_uniform(x, -1, 1, 3);
  lp::tensor<double, lp::dyn, 3, 4, 3> y = conv(x);
  require_close(y, ref_conv(x, conv.weight.value, conv.bias.value.data(), 2, 1, 1), 1e-12, 1e-12);

  struct holder {
    lp::nn::batch_norm<3, double> bn;
  } h;
  h.bn.momentum = 0.5;
  lp::tensor<double, lp::dyn, 3, 4, 3> a = h.bn(y); // training: running stats move
  REQUIRE(h.bn.running_mean(0) != 0.0);
  auto rm = h.bn.running_mean;
  lp::nn::set_training(h, false);
  REQUIRE_FALSE(h.bn.training);
  lp::tensor<double, lp::dyn, 3, 4, 3> b = h.bn(y); // evaluation: running stats used, unchanged
  REQUIRE(h.bn.running_mean(0) == rm(0));
  for (std::size_t i = 0; i < 2; ++i)
    for (std::size_t q = 0; q < 12; ++q) {
      double xv = y.data()[i * 36 + q];
      double expect = (xv - rm(0)) / std::sqrt(h.bn.running_var(0) + 1e-5);
      REQUIRE(lepton_test::close(b.data()[i * 36 + q], expect, 1e-12, 1e-12));
    }
  (void)a;
}

TEST_CASE("a small CNN learns a synthetic image task with fit", "[cnn][nn][train]") {
  // Class 0: a vertical bar, class 1: a horizontal bar, at random positions, with noise.
  std::size_t const n = 256;
  lp::tensor<float, lp::dyn, 1, 12, 12> x(n);
  lp::tensor<std::int32_t, lp::dyn> y(n);
  std::mt19937_64 rng(11);
  for (std::size_t i = 0; i < n; ++i) {
    int const cls = int(i % 2);
    std::size_t const pos = 2 + rng() % 8;
    y(i) = cls;
    for (std::size_t r = 0; r < 12; ++r)
      for (std::size_t c = 0; c < 12; ++c) {
        float v = float(rng() % 1000) / 4000.0f;
        if ((cls == 0 && c == pos) || (cls == 1 && r == pos)) v += 1.0f;
        x(i, 0, r, c) = v;
      }
  }
  lp::data::dataset train(std::move(x), std::move(y));
  small_cnn m;
  lp::nn::init(m, lp::init::kaiming_uniform{}, 5);
  lp::nn::reset_batch_norm(m);
  lp::optim::adam opt{m, {.lr = 1e-2}};
  auto hist = lp::train::fit(m, opt, lp::loss::cross_entropy, train, train,
                             {.epochs = 6, .batch = 32, .seed = 2, .display = lp::train::progress::none});
  INFO("first loss " << hist.history.front().train_loss << ", last val acc "
                     << hist.history.back().val_accuracy);
  REQUIRE(hist.history.back().train_loss < hist.history.front().train_loss);
  REQUIRE(hist.history.back().val_accuracy >= 0.95);
}
