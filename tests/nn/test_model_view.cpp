// nn::model_view: the one flat listing of a model (parameters, buffers, RNG states, declared fans)
// that optimizers, checkpoints, distributed training and init read. Expected names, sizes and
// offsets are written out by hand from the model's declaration below.
#include <catch2/catch.hpp>

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include <lepton/lepton.hpp>

namespace model_view_test {
namespace lp = lepton;

struct block {
  lp::nn::linear<4, 4> fc;
  lp::nn::dropout drop{.p = 0.1, .seed = 21};
};

struct model {
  lp::nn::linear<3, 4> fc;
  lp::nn::batch_norm<4> bn;
  std::array<block, 2> blocks;
  lp::nn::sequential<lp::nn::linear<4, 2>, lp::nn::relu> head;
  lp::param<float, 5> raw;
  lp::tensor<std::int32_t, 3> counts{};
  lp::tensor<float, lp::dyn> scratch{}; // dyn: not a buffer
  static constexpr std::array<char const*, 7> lepton_names{"fc",  "bn",     "blocks", "head",
                                                           "raw", "counts", "scratch"};
};
} // namespace model_view_test
namespace lp = lepton;

TEST_CASE("model_view lists parameters, buffers and RNG layers in declaration order", "[nn][model_view]") {
  model_view_test::model m;
  lp::nn::model_view const v(m);
  struct want {
    char const* name;
    std::size_t size;
    std::vector<std::size_t> shape;
  };
  std::vector<want> const params = {{"fc.weight", 12, {3, 4}},
                                    {"fc.bias", 4, {4}},
                                    {"bn.weight", 4, {4}},
                                    {"bn.bias", 4, {4}},
                                    {"blocks.0.0.weight", 16, {4, 4}},
                                    {"blocks.0.0.bias", 4, {4}},
                                    {"blocks.1.0.weight", 16, {4, 4}},
                                    {"blocks.1.0.bias", 4, {4}},
                                    {"head.0.weight", 8, {4, 2}},
                                    {"head.0.bias", 2, {2}},
                                    {"raw", 5, {5}}};
  REQUIRE(v.parameters().size() == params.size());
  std::size_t offset = 0;
  for (std::size_t i = 0; i < params.size(); ++i) {
    auto const& p = v.parameters()[i];
    INFO(p.name);
    CHECK(p.name == params[i].name);
    CHECK(p.size == params[i].size);
    CHECK(p.shape == params[i].shape);
    CHECK(p.type == lp::dtype::f32);
    CHECK(p.offset == offset);
    offset += params[i].size;
  }
  CHECK(v.parameter_scalars() == 79);
  CHECK(v.parameter_scalars() == lp::nn::parameter_count<model_view_test::model>);
  // addresses point into the model
  CHECK(v.parameters()[0].value == static_cast<void*>(m.fc.weight.value.data()));
  CHECK(v.parameters()[10].frozen == &m.raw.frozen);
  CHECK(v.parameters()[10].grad == static_cast<void*>(m.raw.grad.data()));

  REQUIRE(v.buffers().size() == 3);
  CHECK(v.buffers()[0].name == "bn.running_mean");
  CHECK(v.buffers()[1].name == "bn.running_var");
  CHECK(v.buffers()[2].name == "counts");
  CHECK(v.buffers()[2].type == lp::dtype::i32);
  CHECK(v.buffers()[2].value == static_cast<void*>(m.counts.data()));

  REQUIRE(v.rng_layers().size() == 2);
  CHECK(v.rng_layers()[0].seed == &m.blocks[0].drop.seed);
  CHECK(v.rng_layers()[1].calls == &m.blocks[1].drop.calls);
}

TEST_CASE("model_view attaches the fans layers declare and allocates gradients on request",
          "[nn][model_view]") {
  model_view_test::model m;
  float* const grad_before = m.fc.weight.grad.data(); // params own gradients of their shape
  lp::nn::model_view const v(m, lp::nn::gradients::allocate, lp::nn::element<float>);
  auto const& fc = v.parameters()[0];
  CHECK(fc.has_fans);
  CHECK(fc.fan_in == 3.0);
  CHECK(fc.fan_out == 4.0);
  CHECK_FALSE(v.parameters()[1].has_fans);  // bias: no declaration
  CHECK_FALSE(v.parameters()[10].has_fans); // raw param: nobody declares it
  for (auto const& p : v.parameters()) {
    INFO(p.name);
    REQUIRE(p.grad != nullptr);
  }
  CHECK(v.parameters()[0].grad == static_cast<void*>(m.fc.weight.grad.data()));
  CHECK(m.fc.weight.grad.data() == grad_before); // an existing gradient is kept, not reallocated
  CHECK(m.fc.weight.grad.size() == 12);
  CHECK(v.parameters()[0].grads<float>() == m.fc.weight.grad.data());
  CHECK_THROWS_AS(v.parameters()[0].values<double>(), lp::value_error);
  CHECK_THROWS_WITH(v.parameters()[0].values<double>(),
                    Catch::Contains("fc.weight") && Catch::Contains("F32"));
}

TEST_CASE("optimizer, init and checkpoint agree with the view's order", "[nn][model_view]") {
  model_view_test::model m;
  lp::nn::init(m, lp::init::constant{.value = 0.5}, 1);
  lp::optim::sgd opt{m, {.lr = 0.1}};
  CHECK(opt.parameter_tensors() == 11);
  CHECK(opt.parameter_scalars() == 79);
  std::vector<std::string> names;
  lp::nn::for_each_parameter(m, [&](std::string_view n, auto&) { names.emplace_back(n); });
  lp::nn::model_view const v(m);
  REQUIRE(names.size() == v.parameters().size());
  for (std::size_t i = 0; i < names.size(); ++i) CHECK(names[i] == v.parameters()[i].name);
  std::vector<std::string> buffers;
  lp::nn::for_each_buffer(m, [&](std::string_view n, auto&) { buffers.emplace_back(n); });
  CHECK(buffers == std::vector<std::string>{"bn.running_mean", "bn.running_var", "counts"});
}
