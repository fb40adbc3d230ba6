#pragma once
/// @file fit.hpp
/// @brief `lepton::train::fit` and `evaluate`: the training loop with metrics, validation, a
///        progress display, per-epoch CSV/JSONL logs and callbacks (early stopping, epoch hook).
///
/// Determinism: with the same model initialisation, seed and thread count, fit produces
/// bit-identical parameters (the loader order comes from the seed; GEMMs and reductions do not
/// depend on the thread count).

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iomanip>
#include <iostream>
#include <limits>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <unistd.h>

#include "../autodiff/grad.hpp"
#include "../backend/cpu/run.hpp"
#include "../data/dataset.hpp"
#include "../data/loader.hpp"
#include "../nn/layer.hpp"
#include "../optim/optimizer.hpp"

namespace lepton::train {

/// @brief Metrics of one epoch. Accuracy is NaN when the loss has no integer labels; validation
///        fields are NaN without validation data.
struct epoch_stats {
  std::size_t epoch = 0; ///< 1-based
  double train_loss = 0;
  double train_accuracy = std::numeric_limits<double>::quiet_NaN();
  double val_loss = std::numeric_limits<double>::quiet_NaN();
  double val_accuracy = std::numeric_limits<double>::quiet_NaN();
  double seconds = 0;       ///< wall time of the training part of the epoch
  double samples_per_s = 0; ///< training throughput
  double lr = 0;            ///< learning rate used in this epoch
};

/// @brief Stops training when the monitored loss (validation loss if there is validation data,
///        else training loss) has not improved by more than `min_delta` for `patience` epochs.
struct early_stopping {
  std::size_t patience = 5;
  double min_delta = 0.0;
};

/// @brief How fit reports progress: a live bar on a terminal, one line per epoch otherwise.
enum class progress { automatic, bar, lines, none };

/// @brief Options of fit.
struct fit_options {
  std::size_t epochs = 1; ///< total number of epochs: fit runs epochs start_epoch .. epochs - 1
  /// First epoch to run (0-based), to resume: after restoring a checkpoint written after k epochs
  /// (lepton::io::train_state::epoch == k) pass `start_epoch = k` and the same `epochs`, `seed` and
  /// `batch`. The data order of epoch e depends only on (seed, e), so the run continues exactly.
  /// Early-stopping counters start afresh.
  std::size_t start_epoch = 0;
  std::size_t batch = 32;
  bool shuffle = true;
  std::uint64_t seed = 0; ///< shuffling seed
  bool drop_last = false;
  progress display = progress::automatic;
  std::ostream* out = &std::cout; ///< where progress lines go
  std::string log_csv{};          ///< per-epoch CSV log file ("" = none); rewritten at the start
  std::string log_jsonl{};        ///< per-epoch JSON-lines log file ("" = none)
  std::optional<early_stopping> early_stop{};
  /// Called after each epoch; return false to stop training.
  std::function<bool(epoch_stats const&)> on_epoch{};
  /// Called after each epoch, after on_epoch (so a scheduler stepped there is saved in its new
  /// state) and before fit stops for on_epoch or early stopping: e.g. a lepton::io::checkpointer.
  std::function<void(epoch_stats const&)> on_checkpoint{};
  /// Throw lepton::numeric_error when a batch loss is NaN or infinite (else keep going). A
  /// non-finite gradient is refused by lepton's optimizers themselves (their `check_finite`
  /// option), before any update: fit rethrows that numeric_error with the epoch and batch, or, with
  /// `stop_on_nonfinite = false`, skips that update and says so in fit_result::warnings.
  bool stop_on_nonfinite = true;
  /// Warn once (in fit_result::warnings, and on `out` unless `display` is none) when a batch loss
  /// exceeds this multiple of the run's first batch loss: training is probably diverging. 0 = off.
  double divergence_factor = 1e3;
};

/// @brief The outcome of fit: one entry per epoch run, and why it stopped.
struct fit_result {
  std::vector<epoch_stats> history;
  bool stopped_early = false;
  std::vector<std::string> warnings; ///< e.g. the divergence warning (fit_options::divergence_factor)
};

/// @brief Loss and accuracy of a model over a data set (no gradient; evaluation mode).
struct eval_result {
  double loss = 0;
  double accuracy = std::numeric_limits<double>::quiet_NaN();
  std::size_t samples = 0;
};

namespace detail {
inline bool is_tty(std::ostream* os) {
  return (os == &std::cout && ::isatty(1)) || (os == &std::cerr && ::isatty(2));
}
inline std::string fmt(double v, int prec = 4) {
  if (std::isnan(v)) return "nan";
  std::ostringstream s;
  s << std::fixed << std::setprecision(prec) << v;
  return s.str();
}
inline std::string json_num(double v) {
  if (!std::isfinite(v)) return "null";
  std::ostringstream s;
  s << std::setprecision(10) << v;
  return s.str();
}
/// Watches batch losses for divergence (fit_options::divergence_factor): returns the warning text
/// the first time a loss exceeds factor x the first loss, "" otherwise.
class divergence_watch {
public:
  explicit divergence_watch(double factor) noexcept : m_factor(factor) {}
  std::string observe(double loss, std::size_t epoch, std::size_t batch) {
    if (m_warned || !(m_factor > 0) || !std::isfinite(loss)) return {};
    if (!m_have_first) {
      m_first = loss;
      m_have_first = true;
      return {};
    }
    if (!(m_first > 0) || !(loss > m_factor * m_first)) return {};
    m_warned = true;
    std::ostringstream s;
    s << "warning: the loss grew from " << m_first << " (first batch) to " << loss << " at epoch " << epoch
      << ", batch " << batch << " (more than " << m_factor
      << "x): training is probably diverging; lower the learning rate or clip gradients";
    return s.str();
  }

private:
  double m_factor;
  double m_first = 0;
  bool m_have_first = false;
  bool m_warned = false;
};

/// Runs `opt.step()`. A numeric_error from it (lepton's optimizers refuse non-finite gradients
/// before writing anything) is rethrown with the epoch and batch; with `keep_going`
/// (fit_options::stop_on_nonfinite = false) the update is skipped instead and false returned.
template <class Opt>
bool checked_step(Opt& opt, char const* who, std::size_t epoch, std::size_t batch, bool keep_going) {
  try {
    opt.step();
    return true;
  } catch (numeric_error const& e) {
    if (keep_going) return false;
    std::string_view what = e.what();
    if (what.starts_with("lepton: ")) what.remove_prefix(8);
    throw numeric_error(std::string(who) + ": epoch " + std::to_string(epoch) + ", batch " +
                        std::to_string(batch) + ": " + std::string(what));
  }
}

/// The warning fit leaves when it skipped updates (stop_on_nonfinite = false).
inline std::string skipped_warning(std::size_t skipped) {
  return "warning: " + std::to_string(skipped) +
         " update(s) skipped: their gradients held NaN or infinite values (stop_on_nonfinite = false)";
}

template <class Loss, class Out, class Y> constexpr bool counts_accuracy() {
  return std::is_integral_v<typename std::remove_cvref_t<Y>::value_type>;
}
} // namespace detail

/// @brief Average loss and accuracy (for integer labels) of `model` on `data`, in batches of `batch`.
/// Switches the model to evaluation mode for the duration (dropout off) and restores training mode.
template <class Model, class Loss, class X, class Y> eval_result
evaluate(Model& model, Loss const& loss, data::dataset<X, Y> const& data, std::size_t batch = 256) {
  if (batch == 0) throw value_error("evaluate: batch must be > 0");
  nn::set_training(model, false);
  struct restore {
    Model& m;
    ~restore() { nn::set_training(m, true); }
  } guard{model};
  data::loader<X, Y> ld(data, {.batch = batch, .shuffle = false, .seed = 0, .drop_last = false});
  eval_result r;
  double total = 0;
  std::size_t correct = 0;
  constexpr bool acc = std::is_integral_v<typename Y::value_type>;
  for (auto [x, y] : ld.epoch(0)) {
    std::size_t const b = x.shape()[0];
    double l = static_cast<double>(lepton::value(loss(model(x), y), acc ? &correct : nullptr));
    total += l * double(b);
    r.samples += b;
  }
  r.loss = r.samples ? total / double(r.samples) : std::numeric_limits<double>::quiet_NaN();
  if (acc && r.samples) r.accuracy = double(correct) / double(r.samples);
  return r;
}

/// @brief Trains `model` with `opt` on `train` for `o.epochs` epochs, validating on `val` if given.
///
/// Each batch runs `lepton::backward(loss(model(x), y))` then `opt.step()`: forward, loss,
/// backward and update with no heap allocation after the first batch. `loss` is a loss function
/// object such as `lepton::loss::cross_entropy` (mean over the batch).
/// **Example**:
/// ```
/// auto hist = lepton::train::fit(model, opt, lepton::loss::cross_entropy, train, test,
///                                {.epochs = 5, .batch = 64, .seed = 1});
/// ```
template <class Model, optim::optimizer Opt, class Loss, class X, class Y>
fit_result fit(Model& model, Opt& opt, Loss const& loss, data::dataset<X, Y> const& train,
               data::dataset<X, Y> const* val, fit_options const& o) {
  if (o.batch == 0) throw value_error("fit: batch must be > 0");
  if (train.size() == 0) throw value_error("fit: the training set is empty");
  constexpr bool acc = std::is_integral_v<typename Y::value_type>;
  std::ofstream csv, jsonl;
  if (!o.log_csv.empty()) {
    csv.open(o.log_csv, std::ios::trunc);
    if (!csv) throw io_error(o.log_csv + ": cannot open the CSV log for writing");
    csv << "epoch,train_loss,train_accuracy,val_loss,val_accuracy,seconds,samples_per_s,lr\n";
  }
  if (!o.log_jsonl.empty()) {
    jsonl.open(o.log_jsonl, std::ios::trunc);
    if (!jsonl) throw io_error(o.log_jsonl + ": cannot open the JSONL log for writing");
  }
  progress mode = o.display;
  if (mode == progress::automatic) mode = detail::is_tty(o.out) ? progress::bar : progress::lines;
  std::ostream& out = *o.out;

  nn::set_training(model, true);
  data::loader<X, Y> ld(train,
                        {.batch = o.batch, .shuffle = o.shuffle, .seed = o.seed, .drop_last = o.drop_last});
  fit_result result;
  detail::divergence_watch watch(o.divergence_factor);
  std::size_t skipped = 0; // updates refused for non-finite gradients, with stop_on_nonfinite = false
  double best = std::numeric_limits<double>::infinity();
  std::size_t bad_epochs = 0;
  for (std::size_t e = o.start_epoch; e < o.epochs; ++e) {
    epoch_stats st;
    st.epoch = e + 1;
    st.lr = opt.lr();
    auto t0 = std::chrono::steady_clock::now();
    auto last_draw = t0;
    double total = 0;
    std::size_t seen = 0, correct = 0, batch_index = 0;
    std::size_t const nb = ld.batches_per_epoch();
    for (auto [x, y] : ld.epoch(e)) {
      std::size_t const b = x.shape()[0];
      double l =
          static_cast<double>(lepton::backward(loss(model(x), y), {.correct = acc ? &correct : nullptr}));
      if (!std::isfinite(l) && o.stop_on_nonfinite)
        throw numeric_error("fit: non-finite loss (" + detail::fmt(l) + ") at epoch " +
                            std::to_string(e + 1) + ", batch " + std::to_string(batch_index + 1) +
                            "; lower the learning rate or check the data");
      if (!detail::checked_step(opt, "fit", e + 1, batch_index + 1, !o.stop_on_nonfinite)) ++skipped;
      if (auto w = watch.observe(l, e + 1, batch_index + 1); !w.empty()) {
        if (mode != progress::none) out << (mode == progress::bar ? "\r\x1b[K" : "") << w << std::endl;
        result.warnings.push_back(std::move(w));
      }
      total += l * double(b);
      seen += b;
      ++batch_index;
      if (mode == progress::bar) {
        auto now = std::chrono::steady_clock::now();
        if (now - last_draw > std::chrono::milliseconds(100) || batch_index == nb) {
          last_draw = now;
          int const width = 30;
          int const done = int(double(batch_index) / double(nb) * width);
          out << "\repoch " << (e + 1) << "/" << o.epochs << " [" << std::string(std::size_t(done), '=')
              << std::string(std::size_t(width - done), ' ') << "] " << batch_index << "/" << nb << " loss "
              << detail::fmt(total / double(seen)) << std::flush;
        }
      }
    }
    st.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    st.train_loss = seen ? total / double(seen) : std::numeric_limits<double>::quiet_NaN();
    if (acc && seen) st.train_accuracy = double(correct) / double(seen);
    st.samples_per_s = st.seconds > 0 ? double(seen) / st.seconds : 0;
    if (val) {
      auto vr = evaluate(model, loss, *val, std::max<std::size_t>(o.batch, 256));
      st.val_loss = vr.loss;
      st.val_accuracy = vr.accuracy;
    }
    result.history.push_back(st);
    if (mode == progress::bar) out << "\r\x1b[K";
    if (mode != progress::none) {
      out << "epoch " << st.epoch << "/" << o.epochs << "  loss " << detail::fmt(st.train_loss);
      if (acc) out << "  acc " << detail::fmt(st.train_accuracy);
      if (val)
        out << "  val_loss " << detail::fmt(st.val_loss)
            << (acc ? "  val_acc " + detail::fmt(st.val_accuracy) : "");
      out << "  " << detail::fmt(st.seconds, 2) << " s  " << std::size_t(st.samples_per_s) << " samples/s"
          << std::endl;
    }
    if (csv) {
      csv << st.epoch << ',' << detail::json_num(st.train_loss) << ',' << detail::json_num(st.train_accuracy)
          << ',' << detail::json_num(st.val_loss) << ',' << detail::json_num(st.val_accuracy) << ','
          << st.seconds << ',' << st.samples_per_s << ',' << st.lr << '\n'
          << std::flush;
    }
    if (jsonl) {
      jsonl << "{\"epoch\":" << st.epoch << ",\"train_loss\":" << detail::json_num(st.train_loss)
            << ",\"train_accuracy\":" << detail::json_num(st.train_accuracy)
            << ",\"val_loss\":" << detail::json_num(st.val_loss)
            << ",\"val_accuracy\":" << detail::json_num(st.val_accuracy)
            << ",\"seconds\":" << detail::json_num(st.seconds)
            << ",\"samples_per_s\":" << detail::json_num(st.samples_per_s)
            << ",\"lr\":" << detail::json_num(st.lr) << "}\n"
            << std::flush;
    }
    bool const go_on = !o.on_epoch || o.on_epoch(st);
    if (o.on_checkpoint) o.on_checkpoint(st);
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
  if (skipped) result.warnings.push_back(detail::skipped_warning(skipped));
  return result;
}

/// @brief fit without validation data.
template <class Model, optim::optimizer Opt, class Loss, class X, class Y> fit_result
fit(Model& model, Opt& opt, Loss const& loss, data::dataset<X, Y> const& train, fit_options const& o) {
  return fit(model, opt, loss, train, static_cast<data::dataset<X, Y> const*>(nullptr), o);
}
/// @brief fit with validation data.
template <class Model, optim::optimizer Opt, class Loss, class X, class Y>
fit_result fit(Model& model, Opt& opt, Loss const& loss, data::dataset<X, Y> const& train,
               data::dataset<X, Y> const& val, fit_options const& o) {
  return fit(model, opt, loss, train, &val, o);
}

} // namespace lepton::train
