// Files written by an older lepton still load: tests/io/data/{model,checkpoint}_v1.safetensors were
// written by lepton 0ffc3ad (tests/io/make_v1_fixture.cpp) from the closed-form values of
// v1_fixture.hpp; every tensor, optimizer buffer, scalar and RNG state read back must equal them.
#include <catch2/catch.hpp>

#include <string>

#include <lepton/io.hpp>

#include "v1_fixture.hpp"

namespace {
namespace lp = lepton;
using namespace v1_fixture;

std::string fixture(char const* name) { return std::string(LEPTON_SOURCE_DIR) + "/tests/io/data/" + name; }

/// Every parameter, then the batch_norm buffers, equals value(k, i); returns the number checked.
std::size_t check_model_values(net& m) {
  std::size_t k = 0, checked = 0;
  lp::nn::for_each_parameter(m, [&](std::string_view name, auto& p) {
    for (std::size_t i = 0; i < p.value.size(); ++i) {
      INFO(std::string(name) << "[" << i << "]");
      REQUIRE(p.value.data()[i] == value(k, i));
      ++checked;
    }
    ++k;
  });
  for (auto* b : {&m.bn.running_mean, &m.bn.running_var}) {
    for (std::size_t i = 0; i < b->size(); ++i) REQUIRE(b->data()[i] == value(k, i));
    checked += b->size();
    ++k;
  }
  return checked;
}
} // namespace

TEST_CASE("a model file written by lepton 0ffc3ad loads with every value", "[io][checkpoint][compat]") {
  net m;
  lp::nn::init(m, lp::init::constant{.value = 42.0}, 1);
  lp::io::load_model(fixture("model_v1.safetensors"), m);
  // fc 3*4 + 4, bn 4 + 4, head 4*2 + 2, buffers 4 + 4
  CHECK(check_model_values(m) == 16 + 8 + 10 + 8);
  // a checkpoint is a model file too
  net m2;
  lp::io::load_model(fixture("checkpoint_v1.safetensors"), m2);
  check_model_values(m2);
}

TEST_CASE("a training checkpoint written by lepton 0ffc3ad restores model, optimizer and position",
          "[io][checkpoint][compat]") {
  net m;
  lp::nn::init(m, lp::init::constant{.value = -3.0}, 1);
  m.drop.seed = 1;
  m.drop.calls = 0;
  lp::optim::adam opt{m, {.lr = 0.5}};
  lp::io::train_state st;
  lp::io::load_checkpoint(fixture("checkpoint_v1.safetensors"), m, opt, st);
  check_model_values(m);
  std::size_t state = 0, pk = 0, checked = 0;
  std::string last;
  opt.for_each_state([&](std::string_view s, std::string_view pname, float* d, std::size_t n) {
    if (!last.empty() && last != s) {
      ++state;
      pk = 0;
    }
    last = std::string(s);
    for (std::size_t i = 0; i < n; ++i) {
      INFO(std::string(s) << "." << std::string(pname) << "[" << i << "]");
      REQUIRE(d[i] == moment(state, pk, i));
      ++checked;
    }
    ++pk;
  });
  CHECK(state == 1);                   // m and v
  CHECK(checked == 2 * (16 + 8 + 10)); // both moments of every parameter
  CHECK(opt.steps() == steps);
  CHECK(opt.lr() == lr);
  CHECK(st.epoch == epoch);
  CHECK(st.step == step);
  CHECK(st.seed == data_seed);
  CHECK(st.metadata.at("origin") == "lepton 0ffc3ad");
  CHECK(m.drop.seed == rng_seed);
  CHECK(m.drop.calls == rng_calls);
}
