// Layers, parameter reflection and naming, compile-time parameter count, seeded init, dropout.
#include <catch2/catch.hpp>
#include <lepton/lepton.hpp>
#include <support/util.hpp>

namespace lp = lepton;

namespace {
struct block {
  lp::nn::linear<4, 3, double> a;
  lp::nn::linear<3, 4, double> b;
  auto operator()(auto const& x) const { return b(lp::tanh(a(x))); }
};
struct model {
  lp::nn::linear<5, 4, double> in;
  std::array<block, 2> blocks;
  lp::nn::sequential<lp::nn::linear<4, 3, double>, lp::nn::relu, lp::nn::linear<3, 2, double>> head;
  static constexpr std::array<char const*, 3> lepton_names{"in", "blocks", "head"};
  auto operator()(auto const& x) const { return head(blocks[1](blocks[0](in(x)))); }
};
struct unnamed {
  lp::nn::linear<2, 2> first;
  int not_a_layer = 7;
  lp::nn::linear<2, 1> second;
};
} // namespace

TEST_CASE("parameter reflection: names, order and compile-time count", "[nn]") {
  static_assert(lp::nn::parameter_count<model> ==
                (5 * 4 + 4) + 2 * ((4 * 3 + 3) + (3 * 4 + 4)) + (4 * 3 + 3) + (3 * 2 + 2));
  static_assert(lp::nn::parameter_count<unnamed> == 6 + 3);
  model m;
  auto names = lp::nn::parameter_names(m);
  std::vector<std::string> expected = {
      "in.weight",       "in.bias",           "blocks.0.0.weight", "blocks.0.0.bias",   "blocks.0.1.weight",
      "blocks.0.1.bias", "blocks.1.0.weight", "blocks.1.0.bias",   "blocks.1.1.weight", "blocks.1.1.bias",
      "head.0.weight",   "head.0.bias",       "head.2.weight",     "head.2.bias"};
  REQUIRE(names == expected);
  unnamed u;
  REQUIRE(lp::nn::parameter_names(u) == std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias"});
}

TEST_CASE("seeded init is deterministic and follows the scheme's bounds", "[nn]") {
  model a, b, c;
  lp::nn::init(a, lp::init::kaiming_uniform{}, 7);
  lp::nn::init(b, lp::init::kaiming_uniform{}, 7);
  lp::nn::init(c, lp::init::kaiming_uniform{}, 8);
  REQUIRE(a.in.weight.value(0, 0) == b.in.weight.value(0, 0));
  REQUIRE(a.in.weight.value(0, 0) != c.in.weight.value(0, 0));
  double bound = std::sqrt(2.0) * std::sqrt(3.0 / 5.0);
  for (double v : a.in.weight.value.flat()) REQUIRE(std::abs(v) <= bound);
  for (double v : a.in.bias.value.flat()) REQUIRE(v == 0.0);
  // statistics over a large layer: uniform variance b^2 / 3 = 2 / fan_in
  lp::nn::linear<400, 300, double> big;
  lp::nn::init(big, lp::init::kaiming_normal{}, 3);
  double s = 0, s2 = 0;
  for (double v : big.weight.value.flat()) {
    s += v;
    s2 += v * v;
  }
  double n = double(big.weight.value.size());
  REQUIRE(std::abs(s / n) < 0.002);
  REQUIRE(s2 / n == Approx(2.0 / 400).epsilon(0.02));
  lp::nn::init(big, lp::init::xavier_uniform{}, 3);
  for (double v : big.weight.value.flat()) REQUIRE(std::abs(v) <= std::sqrt(6.0 / 700));
}

namespace {
// A rank-2 parameter that is not an (in, out) matrix: an embedding-like table of 1000 rows of 4,
// whose layer declares its fans (fan-in 1: each output reads one row). Guessed from its rank, the
// table would get fan-in 1000 and a kaiming bound 30x smaller.
struct table {
  lp::param<double, 1000, 4> weight;
  template <class F> void lepton_fans(F&& declare) { declare(weight, 1.0, 4.0); }
};
struct with_table {
  table emb;
  lp::nn::linear<4, 2, double> out;
  lp::param<double, 6, 3> raw; // no layer declares it: the (in, out) convention applies
};
} // namespace

TEST_CASE("init takes fan-in and fan-out from the layer, not from the parameter's rank", "[nn]") {
  with_table m;
  lp::nn::init(m, lp::init::kaiming_uniform{}, 9);
  auto max_abs = [](auto const& t) {
    double r = 0;
    for (double v : t.flat()) r = std::max(r, std::abs(v));
    return r;
  };
  double const table_bound = std::sqrt(2.0) * std::sqrt(3.0 / 1.0);
  REQUIRE(max_abs(m.emb.weight.value) <= table_bound);
  REQUIRE(max_abs(m.emb.weight.value) > 0.9 * table_bound); // 4000 uniform draws reach the bound
  REQUIRE(max_abs(m.out.weight.value) <= std::sqrt(2.0) * std::sqrt(3.0 / 4.0));
  REQUIRE(max_abs(m.raw.value) <= std::sqrt(2.0) * std::sqrt(3.0 / 6.0));
  REQUIRE(max_abs(m.raw.value) > 0);
  // conv2d declares InC*KH*KW and OutC*KH*KW: xavier bound sqrt(6 / (fan_in + fan_out))
  lp::nn::conv2d<3, 8, 5, 5, 1, 0, 1, true, double> conv;
  lp::nn::init(conv, lp::init::xavier_uniform{}, 4);
  double const conv_bound = std::sqrt(6.0 / (3 * 25 + 8 * 25));
  REQUIRE(max_abs(conv.weight.value) <= conv_bound);
  REQUIRE(max_abs(conv.weight.value) > 0.9 * conv_bound);
}

TEST_CASE("a model of layers computes what its formula says and passes gradcheck", "[nn]") {
  model m;
  lp::nn::init(m, lp::init::xavier_normal{}, 11);
  lp::tensor<double, lp::dyn, 5> x(3);
  lepton_test::fill_uniform(x, -1, 1, 2);
  lp::tensor<double, lp::dyn, 2> y = m(x);
  // the same through explicit expressions
  auto blk = [](block const& b, auto const& h) {
    return lp::matmul(lp::tanh(lp::matmul(h, b.a.weight) + b.a.bias), b.b.weight) + b.b.bias;
  };
  lp::tensor<double, lp::dyn, 4> h0 = lp::matmul(x, m.in.weight) + m.in.bias;
  lp::tensor<double, lp::dyn, 4> h1 = blk(m.blocks[0], h0);
  lp::tensor<double, lp::dyn, 4> h2 = blk(m.blocks[1], h1);
  lp::tensor<double, lp::dyn, 2> ref =
      lp::matmul(lp::relu(lp::matmul(h2, m.head.get<0>().weight) + m.head.get<0>().bias),
                 m.head.get<2>().weight) +
      m.head.get<2>().bias;
  for (std::size_t i = 0; i < y.size(); ++i) REQUIRE(y.data()[i] == Approx(ref.data()[i]).epsilon(1e-12));
  auto r = lp::gradcheck([&] { return lp::sum(lp::square(m(x))); }, m.in.weight, m.blocks[1].a.bias,
                         m.head.get<0>().weight);
  INFO(r.message);
  REQUIRE(r.ok);
}

TEST_CASE("dropout: training drops with probability p and rescales, evaluation is the identity", "[nn]") {
  lp::nn::dropout drop{.p = 0.3, .seed = 5};
  lp::tensor<float, lp::dyn, 1000> x(20);
  for (std::size_t i = 0; i < x.size(); ++i) x.data()[i] = 1.0f;
  lp::tensor<float, lp::dyn, 1000> y = drop(x);
  std::size_t zeros = 0;
  for (float v : y.flat()) {
    REQUIRE((v == 0.0f || v == Approx(1 / 0.7f)));
    zeros += v == 0.0f;
  }
  REQUIRE(double(zeros) / double(y.size()) == Approx(0.3).margin(0.02));
  lp::tensor<float, lp::dyn, 1000> y2 = drop(x); // a fresh mask per call
  REQUIRE(std::memcmp(y.data(), y2.data(), y.size() * sizeof(float)) != 0);
  struct net {
    lp::nn::dropout d{.p = 0.5};
  } n;
  lp::nn::set_training(n, false);
  REQUIRE(n.d.training == false);
  lp::tensor<float, lp::dyn, 1000> y3 = n.d(x);
  for (float v : y3.flat()) REQUIRE(v == 1.0f);
  // gradient: the same mask scales the upstream gradient (checked with a fixed seed)
  lp::tensor<double, lp::dyn, 7> xd(3);
  lepton_test::fill_uniform(xd, -1, 1, 9);
  auto r = lp::gradcheck([&] { return lp::sum(lp::square(lp::dropout(lp::tanh(xd), 0.4, 123))); }, xd);
  INFO(r.message);
  REQUIRE(r.ok);
}

TEST_CASE("reshape and flatten keep the data and route gradients", "[nn]") {
  lp::tensor<double, lp::dyn, 2, 3, 4> x(2);
  lepton_test::fill_uniform(x, -1, 1, 1);
  lp::tensor<double, lp::dyn, 24> f = lp::flatten(x);
  for (std::size_t i = 0; i < x.size(); ++i) REQUIRE(f.data()[i] == x.data()[i]);
  lp::tensor<double, lp::dyn, 6, 4> r = lp::reshape<lp::dyn, 6, 4>(x * 2.0);
  REQUIRE(r.shape() == lp::shape_t<3>{2, 6, 4});
  lp::tensor<double, 24, 3> w;
  lepton_test::fill_uniform(w, -1, 1, 2);
  auto g = lp::gradcheck([&] { return lp::sum(lp::tanh(lp::matmul(lp::flatten(lp::square(x)), w))); }, x, w);
  INFO(g.message);
  REQUIRE(g.ok);
}
