#pragma once
/// @file random.hpp
/// @brief Per-rank random streams for layers that draw random numbers (`nn::dropout`).
///
/// Every rank builds the same model, so every rank's dropout layers start with the same seed and
/// would draw the same masks for their (different) samples: position i of rank 0's shard and
/// position i of rank 1's shard would always be dropped together. `decorrelate_dropout` gives each
/// rank r > 0 its own seed; rank 0 keeps its seed, so a 1-rank run is unchanged and a checkpoint
/// (which stores rank 0's seed and call counter) resumes exactly: call it again after
/// `dist::load_checkpoint`.

#include <concepts>
#include <cstdint>

#include "../data/shuffle.hpp"
#include "../nn/model_view.hpp"
#include "environment.hpp"

namespace lepton::dist {

/// @brief On rank r > 0, replaces the seed s of every dropout (seed + call counter) layer by
///        `splitmix64(s ^ splitmix64(r))`; rank 0 keeps its seeds. Call it once, after building
///        the model (and again after dist::load_checkpoint), on every rank.
/// **Example**: `lepton::dist::decorrelate_dropout(comm, model);`
template <class Model> void decorrelate_dropout(communicator const& c, Model& model) {
  if (c.rank() == 0) return;
  nn::model_view const view(model);
  for (auto const& r : view.rng_layers())
    *r.seed = data::splitmix64(*r.seed ^ data::splitmix64(std::uint64_t(c.rank())));
}

} // namespace lepton::dist
