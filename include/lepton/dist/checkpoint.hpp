#pragma once
/// @file checkpoint.hpp
/// @brief Checkpoints in data-parallel training: rank 0 writes (every rank learns whether it
///        worked), rank 0 reads and broadcasts (no shared file system needed).
///
/// The ranks hold identical parameters and optimizer state (they take the same steps from the same
/// broadcast start), so one copy is saved. Resuming: build model and optimizer on every rank, call
/// `dist::load_checkpoint`, then `dist::fit` with `start_epoch = state.epoch`.

#include <cstdint>
#include <filesystem>
#include <type_traits>

#include "../train/checkpoint.hpp"
#include "collectives.hpp"
#include "environment.hpp"

namespace lepton::dist {

/// @brief Copies a learning-rate scheduler's state (lr0, epoch, ...) from `root` to every rank.
template <optim::stateful_scheduler Sched>
void broadcast_scheduler_state(communicator const& c, Sched& s, int root = 0) {
  if (!c.distributed()) return;
  s.for_each_state([&](std::string_view, auto& v) {
    using V = std::remove_cvref_t<decltype(v)>;
    if constexpr (std::is_floating_point_v<V>)
      v = static_cast<V>(broadcast_value<double>(c, double(v), root));
    else
      v = static_cast<V>(broadcast_value<std::uint64_t>(c, static_cast<std::uint64_t>(v), root));
  });
}

namespace detail {
template <class Model> void broadcast_rng_layers(communicator const& c, Model& model, int root) {
  nn::model_view const view(model);
  for (auto const& r : view.rng_layers()) {
    *r.seed = broadcast_value(c, *r.seed, root);
    *r.calls = broadcast_value(c, *r.calls, root);
  }
}
inline void broadcast_train_state(communicator const& c, io::train_state& st, int root) {
  std::uint64_t v[3] = {st.epoch, st.step, st.seed};
  broadcast(c, std::span<std::uint64_t>(v), root);
  st.epoch = v[0];
  st.step = v[1];
  st.seed = v[2];
}
} // namespace detail

/// @brief Rank 0 saves a checkpoint (lepton::io::save_checkpoint); every rank returns when it is
///        written, or throws if rank 0 failed (rank 0 its own exception, the others dist_error).
template <class Model, optim::stateful_optimizer Opt>
void save_checkpoint(communicator const& c, std::filesystem::path const& path, Model const& model, Opt& opt,
                     io::train_state const& state) {
  on_root(
      c, [&] { io::save_checkpoint(path, model, opt, state); }, 0, "saving a checkpoint");
}
/// @brief save_checkpoint with a scheduler.
template <class Model, optim::stateful_optimizer Opt, optim::stateful_scheduler Sched>
void save_checkpoint(communicator const& c, std::filesystem::path const& path, Model const& model, Opt& opt,
                     io::train_state const& state, Sched& sched) {
  on_root(
      c, [&] { io::save_checkpoint(path, model, opt, state, sched); }, 0, "saving a checkpoint");
}

/// @brief Rank 0 reads a checkpoint (lepton::io::load_checkpoint, strong guarantee) and sends the
///        parameters, optimizer state, dropout RNG state and `state` (epoch, step, seed; not the free
///        metadata) to every rank. Only rank 0 needs the file. If rank 0 fails every rank throws
///        and nothing changed anywhere.
template <class Model, optim::stateful_optimizer Opt>
void load_checkpoint(communicator const& c, std::filesystem::path const& path, Model& model, Opt& opt,
                     io::train_state& state) {
  on_root(
      c, [&] { io::load_checkpoint(path, model, opt, state); }, 0, "loading a checkpoint");
  broadcast_parameters(c, model);
  broadcast_optimizer_state(c, opt);
  detail::broadcast_rng_layers(c, model, 0);
  detail::broadcast_train_state(c, state, 0);
}
/// @brief load_checkpoint with a scheduler.
template <class Model, optim::stateful_optimizer Opt, optim::stateful_scheduler Sched>
void load_checkpoint(communicator const& c, std::filesystem::path const& path, Model& model, Opt& opt,
                     io::train_state& state, Sched& sched) {
  on_root(
      c, [&] { io::load_checkpoint(path, model, opt, state, sched); }, 0, "loading a checkpoint");
  broadcast_parameters(c, model);
  broadcast_optimizer_state(c, opt);
  broadcast_scheduler_state(c, sched);
  detail::broadcast_rng_layers(c, model, 0);
  detail::broadcast_train_state(c, state, 0);
}

} // namespace lepton::dist
