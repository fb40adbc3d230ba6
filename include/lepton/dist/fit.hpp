#pragma once
/// @file fit.hpp
/// @brief `lepton::dist::fit` and `evaluate`: train::fit's loop, data-parallel over the ranks of a
///        communicator.
///
/// Every rank runs the same program on its shard of each global batch (shard_loader), computes its
/// gradient with `lepton::backward`, and the ranks sum their weighted gradients (grad_reducer) so
/// that every rank applies the same `opt.step()` with the gradient of the whole global batch: the
/// parameters stay identical on all ranks and follow the single-process run with the same global
/// batch (see docs/distributed.md for how exactly).
///
/// Differences from train::fit, option by option: `batch` is the global batch (all ranks
/// together); progress, `log_csv` and `log_jsonl` are written by rank 0 only (`progress::automatic`
/// means one line per epoch); the statistics are
/// reduced over the ranks before anyone sees them, so `on_epoch`, early stopping and the result
/// are the same on every rank; training stops when `on_epoch` returns false on any rank;
/// `on_checkpoint` runs on rank 0 only and a failure there is raised on every rank.
///
/// The loop itself is train::fit's (train::detail::fit_loop); this file holds only the policy that
/// makes those differences (detail::data_parallel_policy) and the fit/evaluate entry points.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <iostream>
#include <optional>
#include <span>
#include <string>
#include <utility>

#include "../data/dataset.hpp"
#include "../data/loader.hpp"
#include "../optim/optimizer.hpp"
#include "../train/fit.hpp"
#include "collectives.hpp"
#include "environment.hpp"
#include "logging.hpp"
#include "reducer.hpp"
#include "sampler.hpp"

namespace lepton::dist {

/// @brief Distributed settings of dist::fit (the training settings are train::fit_options).
struct fit_config {
  reducer_options reduce{}; ///< how gradients are summed (mode, buckets)
  /// Send rank 0's parameters to every rank before training (off only when they are known equal).
  bool broadcast_initial = true;
  /// After every epoch compare a hash of the parameters across ranks and throw dist_error on
  /// every rank if they differ (a safety net; costs one pass over the parameters).
  bool check_synchronised = false;
};

namespace detail {
/// dist::evaluate's policy (train::detail::evaluate_policy): this rank's shard of every batch,
/// the sums reduced in rank order.
class data_parallel_evaluation {
public:
  static constexpr char const* eval_name = "dist::evaluate";
  explicit data_parallel_evaluation(communicator const& c) noexcept : m_comm(&c) {}
  std::size_t ranks() const noexcept { return std::size_t(m_comm->size()); }
  /// `o.batch` is the global batch.
  template <class X, class Y>
  shard_loader<X, Y> loader(data::dataset<X, Y> const& d, data::loader_options const& o) const {
    return shard_loader<X, Y>(
        d, {.batch = o.batch, .shuffle = o.shuffle, .seed = o.seed, .drop_last = o.drop_last}, *m_comm);
  }
  void sum_over_ranks(std::span<double, 3> sums) const { ordered_sum(*m_comm, std::span<double>(sums)); }

protected:
  communicator const* m_comm;
};

/// dist::fit's step policy (train::detail::fit_policy): what the file comment lists as the
/// differences from train::fit. `T` is the optimizer's element type (that of the gradients).
template <class T> class data_parallel_policy : public data_parallel_evaluation {
public:
  static constexpr char const* fit_name = "dist::fit";
  data_parallel_policy(communicator const& c, fit_config const& cfg) noexcept
      : data_parallel_evaluation(c), m_cfg(&cfg) {}

  /// Every rank must hold a training set of the same size (collective).
  template <class X, class Y> void check_training_set(data::dataset<X, Y> const& train) const {
    std::uint64_t const mine = train.size(), root = broadcast_value<std::uint64_t>(*m_comm, mine);
    if (!dist::all_ranks(*m_comm, mine == root))
      throw dist_error("dist::fit: the ranks hold training sets of different sizes (rank " +
                       std::to_string(m_comm->rank()) + ": " + std::to_string(mine) +
                       ", rank 0: " + std::to_string(root) + ")");
  }
  /// Progress and logs: rank 0 only.
  bool writes_output() const noexcept { return m_comm->is_root(); }
  /// Under mpirun the ranks' output goes through the launcher (often a pseudo-terminal even when
  /// mpirun's own output is a file), so `automatic` means one line per epoch here.
  train::progress display(train::progress requested, std::ostream*) const noexcept {
    train::progress const mode = m_comm->is_root() ? requested : train::progress::none;
    return mode == train::progress::automatic ? train::progress::lines : mode;
  }
  std::ostream& output(std::ostream* out) const { return m_comm->is_root() ? *out : null_stream(); }
  /// Rank 0's parameters everywhere (fit_config::broadcast_initial), then the gradient reducer,
  /// which also carries the batch loss.
  template <class Model> void begin(Model& model) {
    if (m_cfg->broadcast_initial) broadcast_parameters(*m_comm, model);
    reducer_options ro = m_cfg->reduce;
    ro.extra = std::max<std::size_t>(ro.extra, 1);
    m_reducer.emplace(*m_comm, model, ro);
  }
  /// One fused all-reduce of the weighted gradients and of the loss: returns the global batch's
  /// mean loss, the same on every rank.
  template <class Batch> double reduce_gradients(double loss, Batch const& shard) {
    T extra[1] = {shard.size() ? static_cast<T>(loss) * static_cast<T>(shard.weight()) : T(0)};
    m_reducer->reduce(shard.weight(), std::span<T>(extra));
    return static_cast<double>(extra[0]);
  }
  static std::string nonfinite_note(double loss) {
    return std::string(" (this rank's shard: ") + (std::isfinite(loss) ? "finite" : "non-finite") + ")";
  }
  /// The mean of the global batches' losses so far (the same on every rank).
  static double running_loss(double, std::size_t, double batch_loss_sum, std::size_t batches) noexcept {
    return batch_loss_sum / double(batches);
  }
  /// Sums over the ranks in rank order; the epoch took as long as its slowest rank.
  double reduce_epoch(std::span<double, 3> sums, double local_seconds) const {
    double mine[4] = {sums[0], sums[1], sums[2], local_seconds};
    auto all = all_gather(*m_comm, std::span<double const>(mine));
    double total[3] = {0, 0, 0}, seconds = 0;
    for (int r = 0; r < m_comm->size(); ++r) {
      for (int i = 0; i < 3; ++i) total[i] += all[std::size_t(r) * 4 + std::size_t(i)];
      seconds = std::max(seconds, all[std::size_t(r) * 4 + 3]);
    }
    std::copy(total, total + 3, sums.begin());
    return seconds;
  }
  void annotate_line(std::ostream& out) const { out << "  (" << m_comm->size() << " ranks)"; }
  void annotate_json(std::ostream& out) const { out << ",\"ranks\":" << m_comm->size(); }
  /// Training stops when on_epoch returned false on any rank.
  bool all_ranks(bool go_on) const { return dist::all_ranks(*m_comm, go_on); }
  /// Opening the logs: on rank 0, and a failure there is raised on every rank (the others would
  /// otherwise wait in the next collective until the communicator's timeout).
  template <class F> void on_output_rank(F&& f) const {
    on_root(*m_comm, std::forward<F>(f), 0, "opening the training logs");
  }
  /// on_checkpoint on rank 0; its failure is raised on every rank.
  template <class F> void checkpoint(F&& f) const {
    on_root(*m_comm, std::forward<F>(f), 0, "on_checkpoint");
  }
  template <class Model> void end_epoch(Model& model) const {
    if (m_cfg->check_synchronised) check_parameters_synchronised(*m_comm, model);
  }

private:
  fit_config const* m_cfg;
  std::optional<grad_reducer<T>> m_reducer;
};
} // namespace detail

/// @brief Loss and accuracy of `model` on `data`, each rank evaluating its share (`batch` samples
///        per rank at a time) and the sums reduced: the same result on every rank.
template <class Model, class Loss, class X, class Y>
train::eval_result evaluate(communicator const& c, Model& model, Loss const& loss,
                            data::dataset<X, Y> const& data, std::size_t batch = 256) {
  detail::data_parallel_evaluation p(c);
  return train::detail::evaluate_loop(p, model, loss, data, batch);
}

/// @brief Trains `model` with `opt` on `train` data-parallel over the ranks of `c`, validating on
///        `val` if given. Collective: every rank calls it with the same arguments (the same data
///        set, options and model type; the initial parameters come from rank 0).
///
/// Each step: forward and backward on this rank's shard, one fused gradient all-reduce (which also
/// carries the loss), `opt.step()`. No heap allocation per step after the first.
/// **Example**:
/// ```
/// lepton::dist::environment env(argc, argv);
/// auto& comm = env.world();
/// auto hist = lepton::dist::fit(comm, model, opt, lepton::loss::cross_entropy, train, test,
///                               {.epochs = 5, .batch = 128, .seed = 1});
/// ```
template <class Model, optim::optimizer Opt, class Loss, class X, class Y>
train::fit_result fit(communicator const& c, Model& model, Opt& opt, Loss const& loss,
                      data::dataset<X, Y> const& train, data::dataset<X, Y> const* val,
                      train::fit_options const& o, fit_config const& cfg = {}) {
  detail::data_parallel_policy<typename Opt::value_type> p(c, cfg);
  return train::detail::fit_loop(p, model, opt, loss, train, val, o);
}

/// @brief dist::fit without validation data.
template <class Model, optim::optimizer Opt, class Loss, class X, class Y>
train::fit_result fit(communicator const& c, Model& model, Opt& opt, Loss const& loss,
                      data::dataset<X, Y> const& train, train::fit_options const& o,
                      fit_config const& cfg = {}) {
  return fit(c, model, opt, loss, train, static_cast<data::dataset<X, Y> const*>(nullptr), o, cfg);
}
/// @brief dist::fit with validation data.
template <class Model, optim::optimizer Opt, class Loss, class X, class Y>
train::fit_result fit(communicator const& c, Model& model, Opt& opt, Loss const& loss,
                      data::dataset<X, Y> const& train, data::dataset<X, Y> const& val,
                      train::fit_options const& o, fit_config const& cfg = {}) {
  return fit(c, model, opt, loss, train, &val, o, cfg);
}

} // namespace lepton::dist
