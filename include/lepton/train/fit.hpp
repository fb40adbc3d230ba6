#pragma once
/// @file fit.hpp
/// @brief `lepton::train::fit` and `evaluate`: the training loop with metrics, validation, a
///        progress display, per-epoch CSV/JSONL logs and callbacks (early stopping, epoch hook).
///
/// Determinism: with the same model initialisation, seed and thread count, fit produces
/// bit-identical parameters (the loader order comes from the seed; GEMMs and reductions do not
/// depend on the thread count).
///
/// The loop is written once, as detail::fit_loop and detail::evaluate_loop over a step policy
/// (detail::fit_policy) that supplies what differs between one process and several: train::fit uses
/// detail::local_policy, lepton::dist::fit its data-parallel policy.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <concepts>
#include <cstdio>
#include <fstream>
#include <functional>
#include <iomanip>
#include <iostream>
#include <limits>
#include <optional>
#include <span>
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

/// What evaluate_loop asks of its policy: who is evaluating and over how many processes, the
/// loader of this process's batches, and how the sums are combined. Checked with
/// `evaluate_policy<P, X, Y>`; local_policy is the one-process case, dist::fit's policy the
/// data-parallel one.
///
/// - `P::eval_name`: the function named in error messages ("evaluate").
/// - `p.ranks()`: the number of processes sharing every batch (1 for local_policy).
/// - `p.loader(data, options)`: an object with `epoch(e)` (a range of batches `b` with `b.x`,
///   `b.y` and `b.size()`, this process's samples, possibly 0) and `batches_per_epoch()`;
///   `options.batch` counts the samples of all processes together.
/// - `p.sum_over_ranks(sums)`: replaces each of the three sums by its total over the processes,
///   identically on all of them (a no-op for one process).
template <class P, class X, class Y>
concept evaluate_policy =
    requires(P& p, data::dataset<X, Y> const& d, data::loader_options const& lo, std::span<double, 3> sums) {
      { P::eval_name } -> std::convertible_to<char const*>;
      { p.ranks() } -> std::convertible_to<std::size_t>;
      p.loader(d, lo).epoch(std::size_t{0});
      { p.loader(d, lo).batches_per_epoch() } -> std::convertible_to<std::size_t>;
      p.sum_over_ranks(sums);
    };

/// What fit_loop asks of its step policy beyond evaluate_policy: the points where one process
/// (train::fit) and several ranks training one model (dist::fit) differ. Every hook is an inline
/// member function of a concrete type, so the local policy costs nothing per batch. In the order
/// fit_loop calls them:
///
/// - `P::fit_name`: the function named in error messages ("fit").
/// - `p.check_training_set(train)`: after the argument checks; throws if the processes disagree.
/// - `p.on_output_rank(f)`: runs `f` (opening the logs) on the process that writes output; a
///   failure there is raised on every process. `p.writes_output()`: whether this process writes
///   output; `p.display(requested, out)`: the progress mode it uses (`automatic` resolved);
///   `p.output(out)`: the stream it prints to.
/// - `p.begin(model)`: after `nn::set_training(model, true)`, before the loader is made.
/// - Per batch, after `lepton::backward` on this process's batch (skipped for 0 samples, loss 0):
///   `p.reduce_gradients(loss, batch)` turns the gradients into those of the whole batch and
///   returns the whole batch's mean loss, which the non-finite check, the divergence watch and
///   (through `p.running_loss(sum of loss x samples, samples, sum of whole-batch losses, batches)`)
///   the progress bar use. `p.nonfinite_note(loss)` is added to the non-finite-loss error.
/// - Per epoch: `p.reduce_epoch(sums, seconds)` sums {loss x samples, samples, correct} over the
///   processes and returns the epoch's seconds; `p.annotate_line(out)` and `p.annotate_json(os)`
///   end the epoch line and the JSONL record; `p.all_ranks(go_on)` is true when `go_on` is true
///   everywhere; `p.checkpoint(f)` runs on_checkpoint; `p.end_epoch(model)` comes last.
template <class P, class X, class Y>
concept fit_policy = evaluate_policy<P, X, Y> &&
                     requires(P& p, P const& cp, data::dataset<X, Y> const& d, std::ostream& os,
                              std::ostream* osp, progress mode, double v, std::span<double, 3> sums) {
                       { P::fit_name } -> std::convertible_to<char const*>;
                       p.check_training_set(d);
                       { cp.writes_output() } -> std::convertible_to<bool>;
                       { cp.display(mode, osp) } -> std::convertible_to<progress>;
                       { cp.output(osp) } -> std::convertible_to<std::ostream&>;
                       { cp.nonfinite_note(v) } -> std::convertible_to<std::string>;
                       {
                         cp.running_loss(v, std::size_t{1}, v, std::size_t{1})
                       } -> std::convertible_to<double>;
                       { p.reduce_epoch(sums, v) } -> std::convertible_to<double>;
                       cp.annotate_line(os);
                       cp.annotate_json(os);
                       { p.all_ranks(true) } -> std::convertible_to<bool>;
                       p.checkpoint([] {});
                       p.on_output_rank([] {});
                     };

/// The step policy of train::fit and train::evaluate: one process, nothing to reduce.
struct local_policy {
  static constexpr char const* fit_name = "fit";
  static constexpr char const* eval_name = "evaluate";
  static constexpr std::size_t ranks() noexcept { return 1; }
  template <class X, class Y>
  static data::loader<X, Y> loader(data::dataset<X, Y> const& d, data::loader_options const& o) {
    return data::loader<X, Y>(d, o);
  }
  static constexpr void sum_over_ranks(std::span<double, 3>) noexcept {}

  template <class X, class Y> static constexpr void check_training_set(data::dataset<X, Y> const&) noexcept {}
  static constexpr bool writes_output() noexcept { return true; }
  static progress display(progress requested, std::ostream* out) {
    if (requested == progress::automatic) return is_tty(out) ? progress::bar : progress::lines;
    return requested;
  }
  static std::ostream& output(std::ostream* out) noexcept { return *out; }
  template <class Model> static constexpr void begin(Model&) noexcept {}
  template <class Batch> static constexpr double reduce_gradients(double loss, Batch const&) noexcept {
    return loss;
  }
  static std::string nonfinite_note(double) { return {}; }
  /// The running mean over the samples seen so far.
  static constexpr double running_loss(double total, std::size_t seen, double, std::size_t) noexcept {
    return total / double(seen);
  }
  static constexpr double reduce_epoch(std::span<double, 3>, double seconds) noexcept { return seconds; }
  static constexpr void annotate_line(std::ostream&) noexcept {}
  static constexpr void annotate_json(std::ostream&) noexcept {}
  static constexpr bool all_ranks(bool v) noexcept { return v; }
  template <class F> static void checkpoint(F&& f) { f(); }
  template <class F> static void on_output_rank(F&& f) { f(); }
  template <class Model> static constexpr void end_epoch(Model&) noexcept {}
};

/// evaluate's loop, shared with dist::evaluate: `batch` samples per process at a time.
template <class Policy, class Model, class Loss, class X, class Y>
  requires evaluate_policy<Policy, X, Y>
eval_result evaluate_loop(Policy& p, Model& model, Loss const& loss, data::dataset<X, Y> const& data,
                          std::size_t batch) {
  if (batch == 0) throw value_error(std::string(Policy::eval_name) + ": batch must be > 0");
  nn::set_training(model, false);
  struct restore {
    Model& m;
    ~restore() { nn::set_training(m, true); }
  } guard{model};
  constexpr bool acc = std::is_integral_v<typename Y::value_type>;
  auto ld = p.loader(data, {.batch = batch * p.ranks(), .shuffle = false, .seed = 0, .drop_last = false});
  double sums[3] = {0, 0, 0}; // loss * samples, samples, correct
  std::size_t correct = 0;
  for (auto b : ld.epoch(0)) {
    std::size_t const n = b.size();
    if (n == 0) continue;
    sums[0] +=
        static_cast<double>(lepton::value(loss(model(b.x), b.y), acc ? &correct : nullptr)) * double(n);
    sums[1] += double(n);
  }
  sums[2] = double(correct);
  p.sum_over_ranks(std::span<double, 3>(sums));
  eval_result r;
  r.samples = std::size_t(sums[1]);
  r.loss = r.samples ? sums[0] / sums[1] : std::numeric_limits<double>::quiet_NaN();
  if (acc && r.samples) r.accuracy = sums[2] / sums[1];
  return r;
}

/// fit's loop, shared with dist::fit: what differs between them is the policy's (fit_policy).
template <class Policy, class Model, optim::optimizer Opt, class Loss, class X, class Y>
  requires fit_policy<Policy, X, Y>
fit_result fit_loop(Policy& p, Model& model, Opt& opt, Loss const& loss, data::dataset<X, Y> const& train,
                    data::dataset<X, Y> const* val, fit_options const& o) {
  std::string const who = Policy::fit_name;
  if (o.batch == 0) throw value_error(who + ": batch must be > 0");
  if (train.size() == 0) throw value_error(who + ": the training set is empty");
  p.check_training_set(train);
  constexpr bool acc = std::is_integral_v<typename Y::value_type>;
  std::ofstream csv, jsonl;
  // On the rank that writes output; a failure there is raised on every rank (not a hang).
  p.on_output_rank([&] {
    if (!o.log_csv.empty()) {
      csv.open(o.log_csv, std::ios::trunc);
      if (!csv) throw io_error(o.log_csv + ": cannot open the CSV log for writing");
      csv << "epoch,train_loss,train_accuracy,val_loss,val_accuracy,seconds,samples_per_s,lr\n";
    }
    if (!o.log_jsonl.empty()) {
      jsonl.open(o.log_jsonl, std::ios::trunc);
      if (!jsonl) throw io_error(o.log_jsonl + ": cannot open the JSONL log for writing");
    }
  });
  progress const mode = p.display(o.display, o.out);
  std::ostream& out = p.output(o.out);

  nn::set_training(model, true);
  p.begin(model);
  auto ld =
      p.loader(train, {.batch = o.batch, .shuffle = o.shuffle, .seed = o.seed, .drop_last = o.drop_last});
  std::size_t const val_batch = std::max<std::size_t>((o.batch + p.ranks() - 1) / p.ranks(), 256);
  fit_result result;
  divergence_watch watch(o.divergence_factor);
  std::size_t skipped = 0; // updates refused for non-finite gradients, with stop_on_nonfinite = false
  double best = std::numeric_limits<double>::infinity();
  std::size_t bad_epochs = 0;
  for (std::size_t e = o.start_epoch; e < o.epochs; ++e) {
    epoch_stats st;
    st.epoch = e + 1;
    st.lr = opt.lr();
    auto t0 = std::chrono::steady_clock::now();
    auto last_draw = t0;
    double total = 0, batch_loss_sum = 0; // sum of loss x samples here; sum of whole-batch losses
    std::size_t seen = 0, correct = 0, batch_index = 0;
    std::size_t const nb = ld.batches_per_epoch();
    for (auto batch : ld.epoch(e)) {
      std::size_t const b = batch.size();
      double l = 0; // this process's mean loss
      if (b)
        l = static_cast<double>(
            lepton::backward(loss(model(batch.x), batch.y), {.correct = acc ? &correct : nullptr}));
      double const bl = p.reduce_gradients(l, batch); // the whole batch's mean loss
      if (!std::isfinite(bl) && o.stop_on_nonfinite)
        throw numeric_error(who + ": non-finite loss (" + fmt(bl) + ") at epoch " + std::to_string(e + 1) +
                            ", batch " + std::to_string(batch_index + 1) + p.nonfinite_note(l) +
                            "; lower the learning rate or check the data");
      // The reduced gradients are equal in every process, so all make the same decision here.
      if (!checked_step(opt, Policy::fit_name, e + 1, batch_index + 1, !o.stop_on_nonfinite)) ++skipped;
      if (auto w = watch.observe(bl, e + 1, batch_index + 1); !w.empty()) {
        if (mode != progress::none) out << (mode == progress::bar ? "\r\x1b[K" : "") << w << std::endl;
        result.warnings.push_back(std::move(w));
      }
      total += l * double(b);
      batch_loss_sum += bl;
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
              << fmt(p.running_loss(total, seen, batch_loss_sum, batch_index)) << std::flush;
        }
      }
    }
    double sums[3] = {total, double(seen), double(correct)};
    st.seconds = p.reduce_epoch(std::span<double, 3>(sums),
                                std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    st.train_loss = sums[1] > 0 ? sums[0] / sums[1] : std::numeric_limits<double>::quiet_NaN();
    if (acc && sums[1] > 0) st.train_accuracy = sums[2] / sums[1];
    st.samples_per_s = st.seconds > 0 ? sums[1] / st.seconds : 0;
    if (val) {
      auto vr = evaluate_loop(p, model, loss, *val, val_batch);
      st.val_loss = vr.loss;
      st.val_accuracy = vr.accuracy;
    }
    result.history.push_back(st);
    if (mode == progress::bar) out << "\r\x1b[K";
    if (mode != progress::none) {
      out << "epoch " << st.epoch << "/" << o.epochs << "  loss " << fmt(st.train_loss);
      if (acc) out << "  acc " << fmt(st.train_accuracy);
      if (val) out << "  val_loss " << fmt(st.val_loss) << (acc ? "  val_acc " + fmt(st.val_accuracy) : "");
      out << "  " << fmt(st.seconds, 2) << " s  " << std::size_t(st.samples_per_s) << " samples/s";
      p.annotate_line(out);
      out << std::endl;
    }
    if (csv) {
      csv << st.epoch << ',' << json_num(st.train_loss) << ',' << json_num(st.train_accuracy) << ','
          << json_num(st.val_loss) << ',' << json_num(st.val_accuracy) << ',' << st.seconds << ','
          << st.samples_per_s << ',' << st.lr << '\n'
          << std::flush;
    }
    if (jsonl) {
      jsonl << "{\"epoch\":" << st.epoch << ",\"train_loss\":" << json_num(st.train_loss)
            << ",\"train_accuracy\":" << json_num(st.train_accuracy)
            << ",\"val_loss\":" << json_num(st.val_loss) << ",\"val_accuracy\":" << json_num(st.val_accuracy)
            << ",\"seconds\":" << json_num(st.seconds) << ",\"samples_per_s\":" << json_num(st.samples_per_s)
            << ",\"lr\":" << json_num(st.lr);
      p.annotate_json(jsonl);
      jsonl << "}\n" << std::flush;
    }
    bool const go_on = p.all_ranks(!o.on_epoch || o.on_epoch(st));
    if (o.on_checkpoint) p.checkpoint([&] { o.on_checkpoint(st); });
    p.end_epoch(model);
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
  if (skipped) result.warnings.push_back(skipped_warning(skipped));
  return result;
}
} // namespace detail

/// @brief Average loss and accuracy (for integer labels) of `model` on `data`, in batches of `batch`.
/// Switches the model to evaluation mode for the duration (dropout off) and restores training mode.
template <class Model, class Loss, class X, class Y> eval_result
evaluate(Model& model, Loss const& loss, data::dataset<X, Y> const& data, std::size_t batch = 256) {
  detail::local_policy p;
  return detail::evaluate_loop(p, model, loss, data, batch);
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
  detail::local_policy p;
  return detail::fit_loop(p, model, opt, loss, train, val, o);
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
