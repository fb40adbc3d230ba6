#pragma once
/// @file dist.hpp
/// @brief lepton::dist: data-parallel training over MPI (link lepton::mpi; not part of
///        lepton.hpp because it needs <mpi.h>). See docs/distributed.md.
///
/// - environment.hpp: MPI start-up, the communicator, abort-on-failure (`run_or_abort`)
/// - collectives.hpp: parameter/optimizer broadcasts, deterministic metric sums, `on_root`
/// - sampler.hpp:     `shard_loader`, each rank's share of every global batch
/// - reducer.hpp:     `grad_reducer`, the fused gradient all-reduce
/// - fit.hpp:         `dist::fit`, `dist::evaluate`
/// - logging.hpp:     rank-0 output; checkpoint.hpp: rank-0 checkpoints, load-and-broadcast
/// - random.hpp:      per-rank dropout streams (`decorrelate_dropout`)

#include "lepton.hpp"

#include "dist/checkpoint.hpp"
#include "dist/collectives.hpp"
#include "dist/environment.hpp"
#include "dist/fit.hpp"
#include "dist/logging.hpp"
#include "dist/random.hpp"
#include "dist/reducer.hpp"
#include "dist/sampler.hpp"
