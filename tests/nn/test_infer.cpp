// Compile-time size inference (nn::input, linear<Out>, conv2d<OutC, K>, batch_norm<>) and
// lepton::summary (issue P12).
#include <catch2/catch.hpp>
#include <lepton/lepton.hpp>
#include <support/util.hpp>

#include <string>
#include <type_traits>
#include <vector>

namespace lp = lepton;
namespace nn = lp::nn;

namespace {
// The acceptance network: no size written by hand.
using inferred =
    nn::sequential<nn::input<1, 28, 28>, nn::conv2d<32, 3>, nn::relu, nn::max_pool2d<2>, nn::conv2d<64, 3>,
                   nn::relu, nn::max_pool2d<2>, nn::flatten, nn::linear<64>, nn::relu, nn::linear<10>>;
// The same network as it is written today. Shapes by hand: 3x3 valid convs and 2x2 pools on
// 28x28: 28 - 2 = 26 -> 13 -> 11 -> 5, so the flatten gives 64 * 5 * 5 = 1600 features.
using explicit_net =
    nn::sequential<nn::conv2d<1, 32, 3, 3>, nn::relu, nn::max_pool2d<2>, nn::conv2d<32, 64, 3, 3>, nn::relu,
                   nn::max_pool2d<2>, nn::flatten, nn::linear<64 * 5 * 5, 64>, nn::relu, nn::linear<64, 10>>;

// The resolved layers are the explicit ones.
static_assert(std::is_same_v<inferred::layer_type<0>, nn::conv2d<1, 32, 3, 3>>);
static_assert(std::is_same_v<inferred::layer_type<3>, nn::conv2d<32, 64, 3, 3>>);
static_assert(std::is_same_v<inferred::layer_type<7>, nn::linear<1600, 64>>);
static_assert(std::is_same_v<inferred::layer_type<9>, nn::linear<64, 10>>);
static_assert(std::is_same_v<decltype(inferred::layers), decltype(explicit_net::layers)>);
static_assert(inferred::size == 10); // the input is not a layer
// conv 1*32*9 + 32, conv 32*64*9 + 64, linear 1600*64 + 64, linear 64*10 + 10
static_assert(nn::parameter_count<inferred> == 320 + 18496 + 102464 + 650);
static_assert(nn::parameter_count<inferred> == nn::parameter_count<explicit_net>);
// A spec holds nothing; explicit forms keep their meaning.
static_assert(nn::unresolved_layer<nn::linear<64>> && nn::unresolved_layer<nn::conv2d<32, 3>>);
static_assert(nn::unresolved_layer<nn::batch_norm<>> && nn::unresolved_layer<nn::linear<nn::infer, 64>>);
static_assert(!nn::unresolved_layer<nn::linear<3, 4>> && !nn::unresolved_layer<nn::conv2d<1, 32, 3, 3>>);
static_assert(!nn::unresolved_layer<explicit_net> && !nn::unresolved_layer<inferred>);
static_assert(nn::parameter_count<nn::linear<64>> == 0 && nn::parameter_count<nn::conv2d<32, 3>> == 0);
static_assert(
    std::is_same_v<nn::resolve_t<nn::linear<10>, lp::tensor<float, lp::dyn, 64>>, nn::linear<64, 10>>);
static_assert(
    std::is_same_v<nn::resolve_t<nn::linear<3, 4>, lp::tensor<float, lp::dyn, 64>>, nn::linear<3, 4>>);

// The other spellings: infer in place of In / InC with stride and padding, batch_norm<>, double,
// a spec sequential nested in a sequential with an input.
using other =
    nn::sequential<nn::input_of<double, 3, 8, 8>, nn::conv2d<nn::infer, 4, 3, 3, 2, 1, 1, false, double>,
                   nn::batch_norm<nn::infer, double>,
                   nn::sequential<nn::relu, nn::flatten, nn::linear<nn::infer, 5, double>>>;
// (8 + 2 - 3) / 2 + 1 = 4: (b, 4, 4, 4) -> flatten 64
static_assert(std::is_same_v<other::layer_type<0>, nn::conv2d<3, 4, 3, 3, 2, 1, 1, false, double>>);
static_assert(std::is_same_v<other::layer_type<1>, nn::batch_norm<4, double>>);
static_assert(
    std::is_same_v<other::layer_type<2>, nn::sequential<nn::relu, nn::flatten, nn::linear<64, 5, double>>>);

/// Elements that differ (exactly), or the size when the shapes differ.
// docs/cnn.md's padded variant: 28 -> 28 -> 14 -> 14 -> 7, flatten 64 * 7 * 7 = 3136.
using cnn2 = nn::sequential<nn::input<1, 28, 28>, nn::conv2d<nn::infer, 32, 3, 3, 1, 1>, nn::relu,
                            nn::max_pool2d<2>, nn::conv2d<nn::infer, 64, 3, 3, 1, 1>, nn::relu,
                            nn::max_pool2d<2>, nn::flatten, nn::linear<128>, nn::relu, nn::linear<10>>;
static_assert(std::is_same_v<cnn2::layer_type<7>, nn::linear<3136, 128>>);
static_assert(nn::model_summary<cnn2>::layers[6].shape[1] == 3136);

/// Elements that differ (exactly), or the size when the shapes differ.
template <class A, class B> std::size_t mismatches(A const& a, B const& b) {
  if (a.shape() != b.shape()) return a.size() + 1;
  std::size_t n = 0;
  for (std::size_t i = 0; i < a.size(); ++i) n += a.data()[i] != b.data()[i];
  return n;
}
template <class A> double abs_sum(A const& a) {
  double s = 0;
  for (std::size_t i = 0; i < a.size(); ++i) s += std::abs(double(a.data()[i]));
  return s;
}

template <class A, class B> void copy_parameters(A& from, B& to) {
  std::vector<std::vector<double>> values;
  nn::for_each_parameter(from, [&](std::string_view, auto& p) {
    values.emplace_back(p.value.data(), p.value.data() + p.value.size());
  });
  std::size_t i = 0;
  nn::for_each_parameter(to, [&](std::string_view, auto& p) {
    REQUIRE(values[i].size() == p.value.size());
    for (std::size_t k = 0; k < p.value.size(); ++k) p.value.data()[k] = static_cast<float>(values[i][k]);
    ++i;
  });
  REQUIRE(i == values.size());
}
} // namespace

TEST_CASE("sequential<input<...>, ...> infers every size and is the explicit network", "[nn][infer]") {
  inferred a;
  explicit_net b;
  // Parameter names start at the first real layer: checkpoints of the explicit form still load.
  REQUIRE(nn::parameter_names(a) == nn::parameter_names(b));
  REQUIRE(nn::parameter_names(a) == std::vector<std::string>{"0.weight", "0.bias", "3.weight", "3.bias",
                                                             "7.weight", "7.bias", "9.weight", "9.bias"});
  nn::init(b, lp::init::kaiming_uniform{}, 5);
  copy_parameters(b, a);
  REQUIRE(a.get<7>().weight.value.shape() == lp::shape_t<2>{1600, 64});

  lp::tensor<float, lp::dyn, 1, 28, 28> x(3);
  lepton_test::fill_uniform(x, 0, 1, 9);
  static_assert(std::is_same_v<decltype(a(x))::static_dims, lp::dims<lp::dyn, 10>>);
  lp::tensor<float, lp::dyn, 10> ya = a(x), yb = b(x);
  REQUIRE(ya.shape() == lp::shape_t<2>{3, 10});
  REQUIRE(mismatches(ya, yb) == 0);
  REQUIRE(abs_sum(ya) > 0); // not a trivially zero output

  // One backward through both: the same gradients.
  lp::tensor<int, lp::dyn> y(3);
  for (std::size_t i = 0; i < 3; ++i) y(i) = int(i * 3);
  float la = lp::backward(lp::loss::cross_entropy(a(x), y));
  float lb = lp::backward(lp::loss::cross_entropy(b(x), y));
  REQUIRE(la == lb);
  REQUIRE(std::isfinite(la));
  REQUIRE(mismatches(a.get<0>().weight.grad, b.get<0>().weight.grad) == 0);
  REQUIRE(mismatches(a.get<3>().bias.grad, b.get<3>().bias.grad) == 0);
  REQUIRE(mismatches(a.get<7>().weight.grad, b.get<7>().weight.grad) == 0);
  REQUIRE(abs_sum(a.get<0>().weight.grad) > 0);
}

TEST_CASE("other inferred forms: infer in place of In/InC, batch_norm<>, double, nested", "[nn][infer]") {
  other m;
  nn::init(m, lp::init::kaiming_uniform{}, 3);
  REQUIRE(nn::parameter_names(m) ==
          std::vector<std::string>{"0.weight", "1.weight", "1.bias", "2.2.weight", "2.2.bias"});
  lp::tensor<double, lp::dyn, 3, 8, 8> x(2);
  lepton_test::fill_uniform(x, -1, 1, 4);
  lp::tensor<double, lp::dyn, 5> y = m(x);
  // the same by hand from the resolved layers' parameters
  auto const& conv = m.get<0>();
  auto const& fc = m.get<2>().get<2>();
  nn::batch_norm<4, double> bn_ref; // fresh running statistics, like bn's before the call
  lp::tensor<double, lp::dyn, 4, 4, 4> h = lp::relu(bn_ref(lp::conv2d<2, 1>(x, conv.weight)));
  lp::tensor<double, lp::dyn, 5> ref = lp::matmul(lp::flatten(h), fc.weight) + fc.bias;
  REQUIRE(y.shape() == ref.shape());
  std::size_t off = 0;
  for (std::size_t i = 0; i < y.size(); ++i)
    off += !lepton_test::close(y.data()[i], ref.data()[i], 1e-12, 1e-12);
  REQUIRE(off == 0);
  REQUIRE(abs_sum(y) > 0);
}

TEST_CASE("lepton::summary: one row per layer, shapes and parameter counts at compile time",
          "[nn][infer][summary]") {
  using S = nn::model_summary<inferred>;
  // By hand: conv2d 1*32*3*3 + 32 = 320; (28 - 3 + 1) = 26; pool 13; conv2d 32*64*3*3 + 64 = 18496;
  // 13 - 2 = 11; pool 5 (floor); flatten 64*5*5 = 1600; linear 1600*64 + 64 = 102464; linear
  // 64*10 + 10 = 650; total 320 + 18496 + 102464 + 650 = 121930.
  static_assert(S::layers.size() == 10);
  static_assert(S::input.rank == 4 && S::input.shape[0] == lp::dyn && S::input.shape[2] == 28);
  static_assert(S::layers[0].kind == "conv2d" && S::layers[0].parameters == 320);
  static_assert(S::layers[0].rank == 4 && S::layers[0].shape[1] == 32 && S::layers[0].shape[2] == 26);
  static_assert(S::layers[2].kind == "max_pool2d" && S::layers[2].shape[3] == 13);
  static_assert(S::layers[3].parameters == 18496 && S::layers[4].shape[2] == 11);
  static_assert(S::layers[6].kind == "flatten" && S::layers[6].rank == 2 && S::layers[6].shape[1] == 1600);
  static_assert(S::layers[7].kind == "linear" && S::layers[7].parameters == 102464);
  static_assert(S::layers[9].shape[1] == 10 && S::layers[9].parameters == 650);
  static_assert(S::total_parameters == 121930);
  std::string const expected = "#  layer       output shape     params\n"
                               "   input       (N, 1, 28, 28)\n"
                               "0  conv2d      (N, 32, 26, 26)     320\n"
                               "1  relu        (N, 32, 26, 26)       0\n"
                               "2  max_pool2d  (N, 32, 13, 13)       0\n"
                               "3  conv2d      (N, 64, 11, 11)   18496\n"
                               "4  relu        (N, 64, 11, 11)       0\n"
                               "5  max_pool2d  (N, 64, 5, 5)         0\n"
                               "6  flatten     (N, 1600)             0\n"
                               "7  linear      (N, 64)          102464\n"
                               "8  relu        (N, 64)               0\n"
                               "9  linear      (N, 10)             650\n"
                               "   total                        121930\n";
  REQUIRE(lp::summary<inferred>() == expected);
  // The explicit network on the same input: the same table.
  REQUIRE(lp::summary<explicit_net, nn::input<1, 28, 28>>() == expected);
  REQUIRE(lp::summary<inferred, nn::input<1, 28, 28>>() == expected);
}

namespace {
struct custom_block {
  nn::linear<6, 2> fc;
  auto operator()(auto const& x) const { return lp::tanh(fc(x)); }
};
} // namespace

TEST_CASE("summary of specs without an input, other models, and dynamic dimensions", "[nn][infer][summary]") {
  // A spec sequential (no input of its own), summarised on an input: its resolution.
  using mlp = nn::sequential<nn::linear<8>, nn::dropout, nn::linear<3>>;
  REQUIRE(lp::summary<mlp, nn::input<6>>() == "#  layer    output shape  params\n"
                                              "   input    (N, 6)\n"
                                              "0  linear   (N, 8)            56\n" // 6*8 + 8
                                              "1  dropout  (N, 8)             0\n"
                                              "2  linear   (N, 3)            27\n" // 8*3 + 3
                                              "   total                      83\n");
  // A model struct is one row; a dynamic dimension other than the batch prints as dyn.
  static_assert(nn::model_summary<custom_block, nn::input<6>>::layers[0].kind == "custom");
  REQUIRE(lp::summary<custom_block, nn::input<6>>() == "#  layer   output shape  params\n"
                                                       "   input   (N, 6)\n"
                                                       "0  custom  (N, 2)            14\n"
                                                       "   total                     14\n");
  using convs = nn::sequential<nn::conv2d<3, 8, 3, 3>, nn::global_avg_pool2d>;
  // conv2d 3*8*3*3 + 8 = 224
  REQUIRE(lp::summary<convs, nn::input<3, lp::dyn, lp::dyn>>() ==
          "#  layer              output shape      params\n"
          "   input              (N, 3, dyn, dyn)\n"
          "0  conv2d             (N, 8, dyn, dyn)     224\n"
          "1  global_avg_pool2d  (N, 8)                 0\n"
          "   total                                   224\n");
}
