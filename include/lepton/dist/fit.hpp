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

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "../autodiff/grad.hpp"
#include "../backend/cpu/run.hpp"
#include "../data/dataset.hpp"
#include "../nn/layer.hpp"
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

/// @brief Loss and accuracy of `model` on `data`, each rank evaluating its share (`batch` samples
///        per rank at a time) and the sums reduced: the same result on every rank.
template <class Model, class Loss, class X, class Y>
train::eval_result evaluate(communicator const& c, Model& model, Loss const& loss,
                            data::dataset<X, Y> const& data, std::size_t batch = 256) {
  if (batch == 0) throw value_error("dist::evaluate: batch must be > 0");
  nn::set_training(model, false);
  struct restore {
    Model& m;
    ~restore() { nn::set_training(m, true); }
  } guard{model};
  constexpr bool acc = std::is_integral_v<typename Y::value_type>;
  shard_loader<X, Y> ld(
      data, {.batch = batch * std::size_t(c.size()), .shuffle = false, .seed = 0, .drop_last = false}, c);
  double sums[3] = {0, 0, 0}; // loss * samples, samples, correct
  std::size_t correct = 0;
  for (auto sh : ld.epoch(0)) {
    std::size_t const b = sh.size();
    if (b == 0) continue;
    sums[0] +=
        static_cast<double>(lepton::value(loss(model(sh.x), sh.y), acc ? &correct : nullptr)) * double(b);
    sums[1] += double(b);
  }
  sums[2] = double(correct);
  ordered_sum(c, std::span<double>(sums));
  train::eval_result r;
  r.samples = std::size_t(sums[1]);
  r.loss = r.samples ? sums[0] / sums[1] : std::numeric_limits<double>::quiet_NaN();
  if (acc && r.samples) r.accuracy = sums[2] / sums[1];
  return r;
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
  using T = typename Opt::value_type;
  if (o.batch == 0) throw value_error("dist::fit: batch must be > 0");
  if (train.size() == 0) throw value_error("dist::fit: the training set is empty");
  {
    std::uint64_t const mine = train.size(), root = broadcast_value<std::uint64_t>(c, mine);
    if (!all_ranks(c, mine == root))
      throw dist_error("dist::fit: the ranks hold training sets of different sizes (rank " +
                       std::to_string(c.rank()) + ": " + std::to_string(mine) +
                       ", rank 0: " + std::to_string(root) + ")");
  }
  constexpr bool acc = std::is_integral_v<typename Y::value_type>;
  bool const root = c.is_root();
  std::ofstream csv, jsonl;
  if (root && !o.log_csv.empty()) {
    csv.open(o.log_csv, std::ios::trunc);
    if (!csv) throw io_error(o.log_csv + ": cannot open the CSV log for writing");
    csv << "epoch,train_loss,train_accuracy,val_loss,val_accuracy,seconds,samples_per_s,lr\n";
  }
  if (root && !o.log_jsonl.empty()) {
    jsonl.open(o.log_jsonl, std::ios::trunc);
    if (!jsonl) throw io_error(o.log_jsonl + ": cannot open the JSONL log for writing");
  }
  // Under mpirun the ranks' output goes through the launcher (often a pseudo-terminal even when
  // mpirun's own output is a file), so `automatic` means one line per epoch here.
  train::progress mode = root ? o.display : train::progress::none;
  if (mode == train::progress::automatic) mode = train::progress::lines;
  std::ostream& out = root ? *o.out : null_stream();

  nn::set_training(model, true);
  if (cfg.broadcast_initial) broadcast_parameters(c, model);
  reducer_options ro = cfg.reduce;
  ro.extra = std::max<std::size_t>(ro.extra, 1);
  grad_reducer<T> red(c, model, ro);
  shard_loader<X, Y> ld(
      train, {.batch = o.batch, .shuffle = o.shuffle, .seed = o.seed, .drop_last = o.drop_last}, c);
  train::fit_result result;
  train::detail::divergence_watch watch(o.divergence_factor);
  std::size_t skipped = 0;
  double best = std::numeric_limits<double>::infinity();
  std::size_t bad_epochs = 0;
  for (std::size_t e = o.start_epoch; e < o.epochs; ++e) {
    train::epoch_stats st;
    st.epoch = e + 1;
    st.lr = opt.lr();
    auto t0 = std::chrono::steady_clock::now();
    auto last_draw = t0;
    double total = 0, global_loss_sum = 0;
    std::size_t seen = 0, correct = 0, batch_index = 0;
    std::size_t const nb = ld.batches_per_epoch();
    for (auto sh : ld.epoch(e)) {
      std::size_t const b = sh.size();
      T l = 0;
      if (b) l = lepton::backward(loss(model(sh.x), sh.y), {.correct = acc ? &correct : nullptr});
      T extra[1] = {b ? l * static_cast<T>(sh.weight()) : T(0)};
      red.reduce(sh.weight(), std::span<T>(extra));
      double const gl = static_cast<double>(extra[0]); // the global batch's mean loss, on every rank
      if (!std::isfinite(gl) && o.stop_on_nonfinite)
        throw numeric_error("dist::fit: non-finite loss (" + train::detail::fmt(gl) + ") at epoch " +
                            std::to_string(e + 1) + ", batch " + std::to_string(batch_index + 1) +
                            " (this rank's shard: " + (std::isfinite(double(l)) ? "finite" : "non-finite") +
                            "); lower the learning rate or check the data");
      // The reduced gradients are equal on every rank, so every rank makes the same decision here.
      if (!train::detail::checked_step(opt, "dist::fit", e + 1, batch_index + 1, !o.stop_on_nonfinite))
        ++skipped;
      if (auto w = watch.observe(gl, e + 1, batch_index + 1); !w.empty()) {
        if (mode != train::progress::none)
          out << (mode == train::progress::bar ? "\r\x1b[K" : "") << w << std::endl;
        result.warnings.push_back(std::move(w));
      }
      total += double(l) * double(b);
      global_loss_sum += gl;
      seen += b;
      ++batch_index;
      if (mode == train::progress::bar) {
        auto now = std::chrono::steady_clock::now();
        if (now - last_draw > std::chrono::milliseconds(100) || batch_index == nb) {
          last_draw = now;
          int const width = 30;
          int const done = int(double(batch_index) / double(nb) * width);
          out << "\repoch " << (e + 1) << "/" << o.epochs << " [" << std::string(std::size_t(done), '=')
              << std::string(std::size_t(width - done), ' ') << "] " << batch_index << "/" << nb << " loss "
              << train::detail::fmt(global_loss_sum / double(batch_index)) << std::flush;
        }
      }
    }
    double const local_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    double mine[4] = {total, double(seen), double(correct), local_seconds};
    auto all = all_gather(c, std::span<double const>(mine));
    double sums[3] = {0, 0, 0};
    for (int r = 0; r < c.size(); ++r) {
      for (int i = 0; i < 3; ++i) sums[i] += all[std::size_t(r) * 4 + std::size_t(i)];
      st.seconds = std::max(st.seconds, all[std::size_t(r) * 4 + 3]);
    }
    st.train_loss = sums[1] > 0 ? sums[0] / sums[1] : std::numeric_limits<double>::quiet_NaN();
    if (acc && sums[1] > 0) st.train_accuracy = sums[2] / sums[1];
    st.samples_per_s = st.seconds > 0 ? sums[1] / st.seconds : 0;
    if (val) {
      auto vr =
          evaluate(c, model, loss, *val,
                   std::max<std::size_t>((o.batch + std::size_t(c.size()) - 1) / std::size_t(c.size()), 256));
      st.val_loss = vr.loss;
      st.val_accuracy = vr.accuracy;
    }
    result.history.push_back(st);
    if (mode == train::progress::bar) out << "\r\x1b[K";
    if (mode != train::progress::none) {
      out << "epoch " << st.epoch << "/" << o.epochs << "  loss " << train::detail::fmt(st.train_loss);
      if (acc) out << "  acc " << train::detail::fmt(st.train_accuracy);
      if (val)
        out << "  val_loss " << train::detail::fmt(st.val_loss)
            << (acc ? "  val_acc " + train::detail::fmt(st.val_accuracy) : "");
      out << "  " << train::detail::fmt(st.seconds, 2) << " s  " << std::size_t(st.samples_per_s)
          << " samples/s  (" << c.size() << " ranks)" << std::endl;
    }
    if (csv) {
      csv << st.epoch << ',' << train::detail::json_num(st.train_loss) << ','
          << train::detail::json_num(st.train_accuracy) << ',' << train::detail::json_num(st.val_loss) << ','
          << train::detail::json_num(st.val_accuracy) << ',' << st.seconds << ',' << st.samples_per_s << ','
          << st.lr << '\n'
          << std::flush;
    }
    if (jsonl) {
      jsonl << "{\"epoch\":" << st.epoch << ",\"train_loss\":" << train::detail::json_num(st.train_loss)
            << ",\"train_accuracy\":" << train::detail::json_num(st.train_accuracy)
            << ",\"val_loss\":" << train::detail::json_num(st.val_loss)
            << ",\"val_accuracy\":" << train::detail::json_num(st.val_accuracy)
            << ",\"seconds\":" << train::detail::json_num(st.seconds)
            << ",\"samples_per_s\":" << train::detail::json_num(st.samples_per_s)
            << ",\"lr\":" << train::detail::json_num(st.lr) << ",\"ranks\":" << c.size() << "}\n"
            << std::flush;
    }
    bool const go_on = all_ranks(c, !o.on_epoch || o.on_epoch(st));
    if (o.on_checkpoint)
      on_root(
          c, [&] { o.on_checkpoint(st); }, 0, "on_checkpoint");
    if (cfg.check_synchronised) check_parameters_synchronised(c, model);
    if (!go_on) break;
    if (o.early_stop) {
      double monitored = val ? st.val_loss : st.train_loss;
      if (monitored < best - o.early_stop->min_delta) {
        best = monitored;
        bad_epochs = 0;
      } else if (++bad_epochs >= o.early_stop->patience) {
        result.stopped_early = true;
        break;
      }
    }
  }
  if (skipped) result.warnings.push_back(train::detail::skipped_warning(skipped));
  return result;
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
