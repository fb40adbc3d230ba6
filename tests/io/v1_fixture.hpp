#pragma once
// The model and the closed-form values of tests/io/data/*_v1.safetensors: files written by lepton
// 0ffc3ad (before P12 moved checkpoints to train/ and the model walk to nn::model_view), kept so
// that a later change of the walk or the layout cannot silently stop old files from loading.
// tests/io/make_v1_fixture.cpp wrote them (see its comment); test_checkpoint_compat.cpp reads them.

#include <array>
#include <cstddef>
#include <cstdint>

#include <lepton/lepton.hpp>

namespace v1_fixture {

namespace lp = lepton;

/// Parameters of two layers and a sequential, batch_norm buffers, a dropout (RNG state).
struct net {
  lp::nn::linear<3, 4> fc;
  lp::nn::batch_norm<4> bn;
  lp::nn::dropout drop{.p = 0.5, .seed = 11};
  lp::nn::sequential<lp::nn::linear<4, 2>> head;
  static constexpr std::array<char const*, 4> lepton_names{"fc", "bn", "drop", "head"};
};

/// Element i of the k-th tensor (parameters then buffers, in file order): exact in binary float.
inline float value(std::size_t k, std::size_t i) { return float(k + 1) * 0.25f + float(i) / 64.0f; }
/// Element i of the k-th parameter's Adam moment m (state 0) or v (state 1).
inline float moment(std::size_t state, std::size_t k, std::size_t i) {
  return (state == 0 ? -0.5f : 2.0f) + float(k) / 8.0f + float(i) / 256.0f;
}
inline constexpr std::uint64_t steps = 7, epoch = 2, step = 7, data_seed = 9, rng_seed = 11, rng_calls = 5;
inline constexpr double lr = 0.003;

} // namespace v1_fixture
