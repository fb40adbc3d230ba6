#pragma once
/// @file collectives.hpp
/// @brief The small collectives of distributed training: broadcasts of parameters and optimizer
///        state, deterministic sums of metrics, agreement checks, and running an action on one rank
///        with its outcome shared by all.
///
/// Every call here is collective (all ranks of the communicator call it, in the same order) and
/// bounded by the communicator's timeout.

#include <bit>
#include <cstdint>
#include <cstring>
#include <exception>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "../nn/model_view.hpp"
#include "../optim/optimizer.hpp"
#include "environment.hpp"

namespace lepton::dist {

/// @brief Sends `data` from `root` to every rank (same size everywhere).
template <class T> void broadcast(communicator const& c, std::span<T> data, int root = 0) {
  if (!c.distributed() || data.empty()) return;
  MPI_Request req = MPI_REQUEST_NULL;
  detail::check(MPI_Ibcast(data.data(), detail::mpi_count(data.size(), "broadcast"),
                           detail::mpi_type<std::remove_cv_t<T>>(), root, c.get(), &req),
                "MPI_Ibcast");
  detail::wait_one(c, req, "broadcast");
}

/// @brief `value` of `root`, on every rank.
template <class T> T broadcast_value(communicator const& c, T value, int root = 0) {
  broadcast(c, std::span<T>(&value, 1), root);
  return value;
}

/// @brief Waits until every rank arrives (bounded by the timeout).
inline void barrier(communicator const& c, char const* what = "barrier") {
  if (!c.distributed()) return;
  MPI_Request req = MPI_REQUEST_NULL;
  detail::check(MPI_Ibarrier(c.get(), &req), "MPI_Ibarrier");
  detail::wait_one(c, req, what);
}

/// @brief Every rank's `values` gathered as `out[r * k + i]` = rank r's `values[i]` (k = values.size(),
///        the same on every rank).
template <class T> std::vector<T> all_gather(communicator const& c, std::span<T const> values) {
  std::vector<T> out(values.size() * std::size_t(c.size()));
  if (!c.distributed()) {
    std::copy(values.begin(), values.end(), out.begin());
    return out;
  }
  int const k = detail::mpi_count(values.size(), "all_gather");
  MPI_Request req = MPI_REQUEST_NULL;
  detail::check(MPI_Iallgather(values.data(), k, detail::mpi_type<T>(), out.data(), k, detail::mpi_type<T>(),
                               c.get(), &req),
                "MPI_Iallgather");
  detail::wait_one(c, req, "all-gather");
  return out;
}

/// @brief Replaces `values` by their sum over the ranks, added in rank order
///        (`v_0 + v_1 + ... + v_{N-1}`, left to right) on every rank: the result is the same on
///        every rank and in every run, whatever algorithm MPI picks. For metrics (small arrays).
/// **Example**: `double s[2] = {loss_sum, double(seen)}; lepton::dist::ordered_sum(comm, std::span<double>(s));`
template <class T> void ordered_sum(communicator const& c, std::span<T> values) {
  if (!c.distributed()) return;
  auto all = all_gather(c, std::span<T const>(values));
  std::size_t const k = values.size();
  for (std::size_t i = 0; i < k; ++i) {
    T s = all[i];
    for (std::size_t r = 1; r < std::size_t(c.size()); ++r) s += all[r * k + i];
    values[i] = s;
  }
}

/// @brief The largest `v` over the ranks.
template <class T> T max_over_ranks(communicator const& c, T v) {
  if (!c.distributed()) return v;
  T out{};
  MPI_Request req = MPI_REQUEST_NULL;
  detail::check(MPI_Iallreduce(&v, &out, 1, detail::mpi_type<T>(), MPI_MAX, c.get(), &req),
                "MPI_Iallreduce(max)");
  detail::wait_one(c, req, "all-reduce (max)");
  return out;
}

/// @brief True on every rank when `v` is true on every rank.
inline bool all_ranks(communicator const& c, bool v) {
  if (!c.distributed()) return v;
  int in = v ? 1 : 0, out = 0;
  MPI_Request req = MPI_REQUEST_NULL;
  detail::check(MPI_Iallreduce(&in, &out, 1, MPI_INT, MPI_MIN, c.get(), &req), "MPI_Iallreduce(min)");
  detail::wait_one(c, req, "all-reduce (and)");
  return out != 0;
}

/// @brief Copies every parameter's value from `root` to the other ranks (one non-blocking
///        broadcast per parameter tensor, all in flight at once, straight into the parameters).
///        Call it after initialising the model, so that every rank starts from the same weights.
/// **Example**: `lepton::nn::init(model, lepton::init::kaiming_uniform{}, seed); lepton::dist::broadcast_parameters(comm, model);`
template <class Model> void broadcast_parameters(communicator const& c, Model& model, int root = 0) {
  if (!c.distributed()) return;
  nn::model_view const view(model);
  std::vector<MPI_Request> reqs;
  reqs.reserve(view.parameters().size());
  for (auto const& p : view.parameters()) {
    MPI_Datatype const type = p.type == dtype::f64 ? detail::mpi_type<double>() : detail::mpi_type<float>();
    if (p.type != dtype::f32 && p.type != dtype::f64)
      throw value_error("dist::broadcast_parameters: parameter '" + p.name + "' is " +
                        std::string(to_string(p.type)) + "; only F32 and F64 parameters are broadcast");
    reqs.push_back(MPI_REQUEST_NULL);
    detail::check(MPI_Ibcast(p.value, detail::mpi_count(p.size, "broadcast_parameters"), type, root, c.get(),
                             &reqs.back()),
                  "MPI_Ibcast(parameters)");
  }
  detail::wait_all(c, reqs, "broadcast of the parameters");
}

/// @brief Copies an optimizer's whole state (step count, learning rate and every state buffer:
///        moments, velocity, ...) from `root` to the other ranks, e.g. after rank 0 loaded a checkpoint.
template <optim::stateful_optimizer Opt>
void broadcast_optimizer_state(communicator const& c, Opt& opt, int root = 0) {
  if (!c.distributed()) return;
  using T = typename Opt::value_type;
  std::uint64_t steps = broadcast_value<std::uint64_t>(c, opt.steps(), root);
  double lr = broadcast_value<double>(c, opt.lr(), root);
  opt.set_steps(steps);
  opt.set_lr(lr);
  std::vector<MPI_Request> reqs;
  opt.for_each_state([&](std::string_view, std::string_view, T* data, std::size_t size) {
    reqs.push_back(MPI_REQUEST_NULL);
    detail::check(MPI_Ibcast(data, detail::mpi_count(size, "broadcast_optimizer_state"),
                             detail::mpi_type<T>(), root, c.get(), &reqs.back()),
                  "MPI_Ibcast(optimizer state)");
  });
  detail::wait_all(c, reqs, "broadcast of the optimizer state");
}

/// @brief A 64-bit FNV-1a hash of the bytes of every parameter value, in reflection order: equal
///        on two ranks exactly when (barring collisions) their parameters are bit-identical.
template <class Model> std::uint64_t parameters_fingerprint(Model& model) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  nn::model_view const view(model);
  for (auto const& p : view.parameters()) {
    auto const* bytes = static_cast<unsigned char const*>(p.value);
    std::size_t const n = p.size * itemsize(p.type);
    for (std::size_t i = 0; i < n; ++i) h = (h ^ bytes[i]) * 0x100000001b3ull;
  }
  return h;
}

/// @brief Throws dist_error on every rank unless every rank's parameters are bit-identical to
///        `root`'s (compares fingerprints: one small broadcast and one all-reduce).
template <class Model> void check_parameters_synchronised(communicator const& c, Model& model, int root = 0) {
  if (!c.distributed()) return;
  std::uint64_t const mine = parameters_fingerprint(model);
  std::uint64_t const theirs = broadcast_value(c, mine, root);
  if (!all_ranks(c, mine == theirs))
    throw dist_error("dist: the parameters differ between ranks (rank " + std::to_string(c.rank()) +
                     (mine == theirs ? " agrees" : " differs") + " with rank " + std::to_string(root) +
                     "); were they broadcast after initialisation, and do all ranks take the same steps?");
}

/// @brief Runs `f()` on `root` only; every rank then learns whether it succeeded. On failure root
///        rethrows its exception and every other rank throws dist_error with root's message, so
///        that all ranks fail together and consistently. Use it for rank-0 checkpoints and files.
/// **Example**: `lepton::dist::on_root(comm, [&] { lepton::io::save_model("model.safetensors", model); });`
template <class F>
void on_root(communicator const& c, F&& f, int root = 0, char const* what = "an action on the root rank") {
  std::exception_ptr failure;
  std::string msg;
  if (c.rank() == root) {
    try {
      f();
    } catch (std::exception const& e) {
      failure = std::current_exception();
      msg = e.what();
    } catch (...) {
      failure = std::current_exception();
      msg = "an exception of unknown type";
    }
  }
  if (c.distributed()) {
    std::uint64_t len = broadcast_value<std::uint64_t>(c, msg.size() + (failure ? 1 : 0), root);
    if (len) {
      msg.resize(len);
      broadcast(c, std::span<char>(msg.data(), msg.size()), root);
      msg.pop_back();
      if (c.rank() != root)
        throw dist_error("dist: " + std::string(what) + " failed on rank " + std::to_string(root) + ": " +
                         msg);
    }
  }
  if (failure) std::rethrow_exception(failure);
}

} // namespace lepton::dist
