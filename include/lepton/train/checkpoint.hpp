#pragma once
/// @file checkpoint.hpp
/// @brief Saving and restoring models and training runs: save_model / load_model, save_checkpoint /
///        load_checkpoint and the checkpointer (names in `lepton::io`, file layout in io/model_file.hpp).
///
/// - `save_model` / `load_model`: a model's parameters under their reflected names (`fc1.weight`,
///   `0.bias`, see nn/reflect.hpp), then its buffers (`lepton::tensor` members with static dimensions,
///   such as batch_norm's `running_mean`, named the same way): a plain safetensors file that Python
///   reads with `json` + `numpy`.
/// - `save_checkpoint` / `load_checkpoint`: everything needed to resume training bit for bit, in one
///   file written atomically: the parameters, the optimizer's state (moments, velocity, ..., step
///   count, learning rate), a scheduler's state, the epoch, step and data seed, and the RNG state
///   (seed and call counter) of every layer that draws random numbers (`nn::dropout`).
/// - `checkpointer`: a callback for `train::fit` that saves `ckpt-epoch-0003.safetensors` every N
///   epochs and keeps the last K of its run; it refuses to mix runs in one directory.
///
/// Every load validates the whole file and every name, dtype, shape and value against the model and
/// optimizer before it writes anything (strong guarantee: on any exception they are unchanged).
/// See docs/io.md, section "Checkpoints", for the file layout.
///
/// **Where it lives.** The file format (io/model_file.hpp, io/safetensors.hpp) depends on core only;
/// this header lists a model's tensors with nn::model_view and an optimizer's state, so it sits above
/// nn and optim, in train/. The names stay in `lepton::io` (`lepton::io::save_checkpoint`), where
/// they have always been.

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../io/atomic_file.hpp"
#include "../io/model_file.hpp"
#include "../io/safetensors.hpp"
#include "../nn/model_view.hpp"
#include "../optim/optimizer.hpp"
#include "../optim/scheduler.hpp"

namespace lepton::io {

namespace detail {

/// Every tensor a model file holds, as model_view lists them: the parameters, then the buffers.
inline std::vector<nn::model_tensor> model_tensors(nn::model_view const& view) {
  std::vector<nn::model_tensor> out = view.parameters();
  out.insert(out.end(), view.buffers().begin(), view.buffers().end());
  return out;
}

/// One field of a scheduler's state, copied out (saving) or staged (loading).
struct sched_field {
  std::string name;
  bool is_double;
  double d = 0;
  std::int64_t i = 0;
};

template <class Sched> std::vector<sched_field> scheduler_fields(Sched& s) {
  std::vector<sched_field> out;
  s.for_each_state([&](std::string_view name, auto& v) {
    using V = std::remove_cvref_t<decltype(v)>;
    if constexpr (std::is_same_v<V, double>)
      out.push_back({"sched." + std::string(name), true, v, 0});
    else
      out.push_back({"sched." + std::string(name), false, 0, to_i64(static_cast<std::uint64_t>(v))});
  });
  return out;
}

/// An optimizer's state buffers, checked against the model: one entry per (state, parameter).
struct ckpt_state {
  std::string name; ///< optim.<state>.<parameter>
  std::size_t param;
  void* data;
};

template <class Opt> std::vector<ckpt_state>
optimizer_states(Opt& opt, std::vector<nn::model_tensor> const& params, std::string& kinds, char const* who) {
  using T = typename Opt::value_type;
  std::vector<ckpt_state> out;
  std::vector<std::string> names;
  std::size_t k = 0;
  std::string current;
  opt.for_each_state([&](std::string_view state, std::string_view pname, T* data, std::size_t size) {
    if (names.empty() || names.back() != state) {
      if (!names.empty() && k != params.size())
        throw value_error(std::string(who) + ": the optimizer's state '" + names.back() + "' covers " +
                          std::to_string(k) + " parameters, the model has " + std::to_string(params.size()) +
                          " (was the optimizer built for this model?)");
      names.emplace_back(state);
      k = 0;
    }
    if (k >= params.size() || params[k].name != pname || params[k].size != size ||
        params[k].type != dtype_of<T>)
      throw value_error(std::string(who) + ": the optimizer's parameter " + std::to_string(k) + " ('" +
                        std::string(pname) + "', " + std::to_string(size) + " elements) is not the model's" +
                        (k < params.size()
                             ? " ('" + params[k].name + "', " + std::to_string(params[k].size) + " elements)"
                             : std::string()) +
                        ": was the optimizer built for this model?");
    out.push_back({"optim." + std::string(state) + "." + std::string(pname), k, static_cast<void*>(data)});
    ++k;
  });
  if (!names.empty() && k != params.size())
    throw value_error(std::string(who) + ": the optimizer's state '" + names.back() + "' covers " +
                      std::to_string(k) + " parameters, the model has " + std::to_string(params.size()) +
                      " (was the optimizer built for this model?)");
  kinds.clear();
  for (std::size_t i = 0; i < names.size(); ++i) kinds += (i ? "," : "") + names[i];
  return out;
}

struct no_scheduler {};

template <class Model, class Opt, class Sched>
void save_checkpoint_impl(std::filesystem::path const& path, Model const& model, Opt& opt,
                          train_state const& st, Sched* sched, atomic_write_options const& w) {
  using T = typename Opt::value_type;
  char const* const who = "save_checkpoint";
  Model& m = const_cast<Model&>(model); // only read: the view is written for mutable models
  nn::model_view const view(m);
  auto const& params = view.parameters();
  std::string kinds;
  auto const states = optimizer_states(opt, params, kinds, who);

  std::map<std::string, std::string> meta;
  for (auto const& [k, v] : st.metadata) {
    if (is_reserved_metadata(k))
      throw value_error(std::string(who) + ": metadata key '" + k + "' is reserved for lepton");
    meta.emplace(k, v);
  }
  meta["format"] = std::string(checkpoint_format);
  meta["format_version"] = std::string(checkpoint_format_version);
  meta["optimizer_state"] = kinds;
  meta["epoch"] = std::to_string(st.epoch);
  meta["step"] = std::to_string(st.step);

  // Scalars live here until the save returns (the refs point at them).
  std::int64_t const steps = to_i64(opt.steps()), epoch = to_i64(st.epoch), step = to_i64(st.step),
                     seed = to_i64(st.seed);
  double const lr = opt.lr();
  std::vector<std::int64_t> rng_seed, rng_calls;
  for (auto const& r : view.rng_layers()) {
    rng_seed.push_back(to_i64(*r.seed));
    rng_calls.push_back(to_i64(*r.calls));
  }
  std::vector<sched_field> sf;
  if constexpr (!std::is_same_v<Sched, no_scheduler>) sf = scheduler_fields(*sched);

  std::vector<tensor_ref> refs;
  refs.reserve(params.size() + states.size() + 7 + sf.size());
  for (auto const& p : model_tensors(view)) refs.push_back(raw_ref(p.name, p.type, p.shape, p.value));
  for (auto const& s : states) refs.push_back(raw_ref(s.name, dtype_of<T>, params[s.param].shape, s.data));
  refs.push_back(raw_ref("optim.step", dtype::i64, {}, &steps));
  refs.push_back(raw_ref("optim.lr", dtype::f64, {}, &lr));
  refs.push_back(raw_ref("train.epoch", dtype::i64, {}, &epoch));
  refs.push_back(raw_ref("train.step", dtype::i64, {}, &step));
  refs.push_back(raw_ref("train.seed", dtype::i64, {}, &seed));
  refs.push_back(raw_ref("train.rng_seed", dtype::i64, {rng_seed.size()}, rng_seed.data()));
  refs.push_back(raw_ref("train.rng_calls", dtype::i64, {rng_calls.size()}, rng_calls.data()));
  for (auto const& f : sf)
    refs.push_back(f.is_double ? raw_ref(f.name, dtype::f64, {}, &f.d)
                               : raw_ref(f.name, dtype::i64, {}, &f.i));
  save_safetensors(path, refs, meta, w);
}

template <class Model, class Opt, class Sched>
void load_checkpoint_impl(std::filesystem::path const& path, Model& model, Opt& opt, train_state& st,
                          Sched* sched, load_options const& lo) {
  using T = typename Opt::value_type;
  nn::model_view const view(model);
  auto const& params = view.parameters();
  std::string kinds;
  auto const states = optimizer_states(opt, params, kinds, "load_checkpoint");

  file_reader f(path);
  byte_source src(f, 0, f.size(), f.name());
  st_header const h = parse_safetensors_header(src, lo);
  std::string const& file = src.name();

  auto const* format = find_metadata(h, "format");
  if (!format || *format != checkpoint_format)
    format_fail(file, "not a lepton checkpoint (its __metadata__ has no \"format\": \"" +
                          std::string(checkpoint_format) + "\"; a model file is read with load_model)");
  auto const* version = find_metadata(h, "format_version");
  if (!version || *version != checkpoint_format_version)
    format_fail(file, "unsupported checkpoint format_version '" +
                          (version ? *version : std::string("(none)")) + "' (this lepton reads version " +
                          std::string(checkpoint_format_version) + ")");
  auto const* file_kinds = find_metadata(h, "optimizer_state");
  if (!file_kinds) format_fail(file, "the checkpoint's __metadata__ has no optimizer_state");
  if (*file_kinds != kinds)
    format_fail(file, "the checkpoint holds optimizer state (" + *file_kinds + ") but this optimizer has (" +
                          kinds + "): was it saved with another optimizer or other options?");

  // Where the loaded values go: first the model and the optimizer buffers (written only once all is
  // validated), then local copies of the scalars (validated before anything is written).
  std::vector<tensor_target> targets;
  for (auto const& p : model_tensors(view)) targets.push_back(raw_target(p.name, p.type, p.shape, p.value));
  for (auto const& s : states)
    targets.push_back(raw_target(s.name, dtype_of<T>, params[s.param].shape, s.data));
  std::size_t const n_real = targets.size();

  std::int64_t steps = 0, epoch = 0, step = 0, seed = 0;
  double lr = 0;
  std::size_t const n_rng = view.rng_layers().size();
  std::vector<std::int64_t> rng_seed(n_rng), rng_calls(n_rng);
  std::vector<sched_field> sf;
  if constexpr (!std::is_same_v<Sched, no_scheduler>) sf = scheduler_fields(*sched);
  targets.push_back(raw_target("optim.step", dtype::i64, {}, &steps));
  targets.push_back(raw_target("optim.lr", dtype::f64, {}, &lr));
  targets.push_back(raw_target("train.epoch", dtype::i64, {}, &epoch));
  targets.push_back(raw_target("train.step", dtype::i64, {}, &step));
  targets.push_back(raw_target("train.seed", dtype::i64, {}, &seed));
  targets.push_back(raw_target("train.rng_seed", dtype::i64, {n_rng}, rng_seed.data()));
  targets.push_back(raw_target("train.rng_calls", dtype::i64, {n_rng}, rng_calls.data()));
  for (auto& fld : sf)
    targets.push_back(fld.is_double ? raw_target(fld.name, dtype::f64, {}, &fld.d)
                                    : raw_target(fld.name, dtype::i64, {}, &fld.i));

  auto const match = match_targets(file, entry_infos(h), targets, {});
  staged_data const staged = stage_matched(src, h, match);
  copy_staged(targets, match, h, staged, n_real, targets.size());

  if (!(lr >= 0) || !std::isfinite(lr))
    format_fail(file,
                "tensor 'optim.lr': the learning rate " + std::to_string(lr) + " is not finite and >= 0");
  for (auto const& fld : sf)
    if (fld.is_double && std::isnan(fld.d)) format_fail(file, "tensor '" + fld.name + "' is NaN");
  train_state next;
  next.epoch = to_u64(epoch);
  next.step = to_u64(step);
  next.seed = to_u64(seed);
  for (auto const& [k, v] : h.metadata)
    if (!is_reserved_metadata(k)) next.metadata.emplace(k, v);

  // Commit: nothing below throws.
  copy_staged(targets, match, h, staged, 0, n_real);
  opt.set_steps(to_u64(steps));
  opt.set_lr(lr); // validated above
  for (std::size_t r = 0; r < n_rng; ++r) {
    *view.rng_layers()[r].seed = to_u64(rng_seed[r]);
    *view.rng_layers()[r].calls = to_u64(rng_calls[r]);
  }
  if constexpr (!std::is_same_v<Sched, no_scheduler>) {
    std::size_t i = 0;
    sched->for_each_state([&](std::string_view, auto& v) {
      using V = std::remove_cvref_t<decltype(v)>;
      if constexpr (std::is_same_v<V, double>)
        v = sf[i].d;
      else
        v = static_cast<V>(to_u64(sf[i].i));
      ++i;
    });
  }
  st = std::move(next);
}

} // namespace detail

/// @brief Saves a model's parameters as safetensors under their reflected names (`fc1.weight`,
///        `0.bias`; see nn/reflect.hpp), atomically (see atomic_writer).
///
/// The file holds exactly the parameters, in reflection order, with their own dtype and shape
/// (a `linear<In, Out>` weight is (In, Out): y = x W + b), then the buffers: every `lepton::tensor`
/// member with static dimensions of the model's structs and layers (batch_norm's `running_mean`,
/// `running_var`), named like parameters (`bn1.running_mean`). Tensors with `dyn` dimensions and
/// members reached only through a custom `lepton_for_each_parameter` are not buffers.
/// `metadata` becomes `__metadata__`.
/// Throws lepton::io_error if the file cannot be written (the previous file is then intact).
///
/// **Example**:
/// ```
/// mlp model;  lepton::nn::init(model, lepton::init::kaiming_uniform{}, 42);
/// lepton::io::save_model("mlp.safetensors", model, {{"dataset", "fashion-mnist"}});
/// ```
template <class Model> void save_model(std::filesystem::path const& path, Model const& model,
                                       std::map<std::string, std::string> const& metadata = {},
                                       atomic_write_options options = {}) {
  nn::model_view const view(const_cast<Model&>(model)); // only read
  auto const tensors = detail::model_tensors(view);
  std::vector<tensor_ref> refs;
  refs.reserve(tensors.size());
  for (auto const& p : tensors) refs.push_back(detail::raw_ref(p.name, p.type, p.shape, p.value));
  save_safetensors(path, refs, metadata, options);
}

/// @brief Loads a model's parameters from a safetensors file (one written by save_model or
///        save_checkpoint, or by Python), with the strong guarantee.
///
/// Every parameter and buffer (see save_model) must be in the file with its exact dtype and shape, and
/// every tensor of the file must name one (relax with `model_load_options`); the optimizer, training and scheduler
/// entries of a lepton checkpoint are ignored. A mismatch is a lepton::format_error that names the
/// parameter and both shapes, e.g.
/// `lepton: m.safetensors: tensor 'fc1.weight': expected F32 (784, 256), file has F32 (784, 255)`.
/// The file is validated and the data read before the first parameter is written: on any exception
/// the model is unchanged. Gradients are not touched.
///
/// **Example**:
/// ```
/// mlp model;
/// lepton::io::load_model("mlp.safetensors", model);
/// ```
template <class Model>
void load_model(std::filesystem::path const& path, Model& model, model_load_options const& options = {}) {
  nn::model_view const view(model);
  auto const tensors = detail::model_tensors(view);
  std::vector<tensor_target> targets;
  targets.reserve(tensors.size());
  for (auto const& p : tensors) targets.push_back(detail::raw_target(p.name, p.type, p.shape, p.value));
  detail::read_model_tensors(path, targets, options);
}

/// @brief Saves a training checkpoint: parameters, optimizer state, training position and the RNG
///        state of every dropout layer, in one safetensors file, written atomically.
///
/// Tensors (see docs/io.md): each parameter and buffer under its name (as save_model writes them);
/// `optim.<state>.<parameter>`
/// for each optimizer buffer (`optim.m.fc1.weight`, `optim.v.fc1.weight` for Adam;
/// `optim.velocity.*` for SGD with momentum; `optim.square_avg.*`, `optim.momentum_buffer.*` for
/// RMSprop); `optim.step` (I64) and `optim.lr` (F64); `train.epoch`, `train.step`, `train.seed` (I64);
/// `train.rng_seed` and `train.rng_calls` (I64, one per dropout layer in nn::for_each_object order).
/// `__metadata__` has `format` = `lepton.checkpoint`, `format_version`, `optimizer_state` (the state
/// names, e.g. `m,v`), readable copies of `epoch` and `step`, and `state.metadata`.
/// Throws lepton::value_error if the optimizer was not built for this model or a metadata key is
/// reserved, lepton::io_error if the file cannot be written (the previous file is then intact).
///
/// **Example**:
/// ```
/// lepton::io::save_checkpoint("ckpt.safetensors", model, opt, {.epoch = 2, .step = opt.steps(), .seed = 9});
/// ```
template <class Model, optim::stateful_optimizer Opt>
void save_checkpoint(std::filesystem::path const& path, Model const& model, Opt& opt,
                     train_state const& state, atomic_write_options options = {}) {
  detail::save_checkpoint_impl(path, model, opt, state, static_cast<detail::no_scheduler*>(nullptr), options);
}

/// @brief save_checkpoint with a learning-rate scheduler, whose state is stored as `sched.<name>`
///        (`sched.lr0`, `sched.epoch`; `sched.best`, `sched.bad_epochs`).
///
/// **Example**:
/// ```
/// lepton::optim::cosine_lr sched{opt, 10};
/// lepton::io::save_checkpoint("ckpt.safetensors", model, opt, {.epoch = 2, .step = opt.steps()}, sched);
/// ```
template <class Model, optim::stateful_optimizer Opt, optim::stateful_scheduler Sched>
void save_checkpoint(std::filesystem::path const& path, Model const& model, Opt& opt,
                     train_state const& state, Sched& scheduler, atomic_write_options options = {}) {
  detail::save_checkpoint_impl(path, model, opt, state, &scheduler, options);
}

/// @brief Restores a checkpoint written by save_checkpoint into a model and optimizer of the same
///        types (e.g. built anew after a restart), with the strong guarantee.
///
/// Checks, before writing anything: the file (as load_safetensors does), `format` and
/// `format_version`, that the optimizer has the same kinds of state (`optimizer_state`), that every
/// parameter, optimizer buffer and scalar is there with the right dtype and shape (a format_error
/// names the tensor and both shapes) and that nothing else is, and that the values are valid (a
/// finite, non-negative learning rate). Then it writes the parameters, the optimizer's buffers, step
/// count and learning rate, the dropout layers' seeds and counters, and `state`. On any exception
/// (lepton::io_error, format_error, value_error) model, optimizer and `state` are unchanged.
/// Hyperparameters (betas, momentum, weight decay) are not stored: build the optimizer with the same
/// options. Peak extra memory: the size of the file.
///
/// **Example**:
/// ```
/// net model;  lepton::optim::adam opt{model, {.lr = 1e-3}};  lepton::io::train_state st;
/// lepton::io::load_checkpoint("ckpt-epoch-0002.safetensors", model, opt, st);
/// lepton::train::fit(model, opt, loss, train, {.epochs = 3, .start_epoch = st.epoch, .seed = st.seed});
/// ```
template <class Model, optim::stateful_optimizer Opt>
void load_checkpoint(std::filesystem::path const& path, Model& model, Opt& opt, train_state& state,
                     load_options const& options = {}) {
  detail::load_checkpoint_impl(path, model, opt, state, static_cast<detail::no_scheduler*>(nullptr), options);
}

/// @brief load_checkpoint with a learning-rate scheduler (the checkpoint must hold its state). Its
///        `lr0` is restored too, so build it before or after loading: either way it continues exactly.
///
/// **Example**: `lepton::io::load_checkpoint(path, model, opt, st, sched);`
template <class Model, optim::stateful_optimizer Opt, optim::stateful_scheduler Sched>
void load_checkpoint(std::filesystem::path const& path, Model& model, Opt& opt, train_state& state,
                     Sched& scheduler, load_options const& options = {}) {
  detail::load_checkpoint_impl(path, model, opt, state, &scheduler, options);
}

/// @brief Where and how often a checkpointer saves, and where the run starts.
///
/// **Example**: `lepton::io::checkpoint_options{.dir = "ckpt", .every = 2, .keep_last = 3}`
struct checkpoint_options {
  std::filesystem::path dir = "."; ///< created if needed
  std::size_t every = 1;           ///< save after epochs every, 2 * every, ... (> 0)
  std::size_t keep_last = 3;       ///< keep the newest this many files of this run (0: keep all)
  /// The epoch this run continues from: 0 for a new run, else the `train_state::epoch` of the
  /// checkpoint it loaded (the same as `fit_options::start_epoch`). `dir` may then hold this run's
  /// earlier files (epochs <= start_epoch), which keep_last prunes; any other file of `prefix` is
  /// another run's, and the checkpointer refuses to mix with it (see checkpointer).
  std::uint64_t start_epoch = 0;
  std::string prefix = "ckpt-epoch-"; ///< file names: prefix + 4-digit epoch + ".safetensors"
  atomic_write_options write{};       ///< passed to the atomic writer
};

/// @brief The file a checkpointer writes for an epoch: `dir/ckpt-epoch-0003.safetensors` (at least
///        4 digits).
///
/// **Example**: `lepton::io::checkpoint_path("ckpt", 3) == "ckpt/ckpt-epoch-0003.safetensors"`
inline std::filesystem::path checkpoint_path(std::filesystem::path const& dir, std::uint64_t epoch,
                                             std::string const& prefix = "ckpt-epoch-") {
  char digits[32];
  std::snprintf(digits, sizeof digits, "%04llu", static_cast<unsigned long long>(epoch));
  return dir / (prefix + digits + ".safetensors");
}

/// @brief The checkpoints of `dir` named `prefix<digits>.safetensors`, sorted by epoch (oldest first).
/// A missing directory has none.
///
/// **Example**: `for (auto const& [epoch, path] : lepton::io::list_checkpoints("ckpt")) ...`
inline std::vector<std::pair<std::uint64_t, std::filesystem::path>>
list_checkpoints(std::filesystem::path const& dir, std::string const& prefix = "ckpt-epoch-") {
  std::vector<std::pair<std::uint64_t, std::filesystem::path>> out;
  std::error_code ec;
  std::filesystem::directory_iterator it(dir, ec), end;
  if (ec) return out;
  constexpr std::string_view ext = ".safetensors";
  for (; it != end; it.increment(ec)) {
    if (ec) break;
    std::string const name = it->path().filename().string();
    if (!name.starts_with(prefix) || !name.ends_with(ext) || name.size() <= prefix.size() + ext.size())
      continue;
    std::string_view digits(name.data() + prefix.size(), name.size() - prefix.size() - ext.size());
    if (digits.size() > 19 ||
        !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
      continue;
    out.emplace_back(std::stoull(std::string(digits)), it->path());
  }
  std::sort(out.begin(), out.end());
  return out;
}

/// @brief The newest checkpoint of `dir` (highest epoch), if any: the newest save of the run that a
///        checkpointer keeps there (it refuses to mix runs in one directory and prefix).
///
/// **Example**:
/// ```
/// lepton::io::train_state st;
/// if (auto p = lepton::io::latest_checkpoint("ckpt")) lepton::io::load_checkpoint(*p, model, opt, st);
/// ```
inline std::optional<std::filesystem::path> latest_checkpoint(std::filesystem::path const& dir,
                                                              std::string const& prefix = "ckpt-epoch-") {
  auto all = list_checkpoints(dir, prefix);
  if (all.empty()) return std::nullopt;
  return all.back().second;
}

/// @brief A fit callback that saves a checkpoint every N epochs and keeps the last K files of its run.
///
/// Pass it as `fit_options::on_checkpoint` (called after `on_epoch`, so a scheduler stepped there is
/// saved in its new state). After epoch e (1-based) with `e % every == 0` it writes
/// `checkpoint_path(dir, e, prefix)` with `train_state{e, opt.steps(), seed}`, then deletes this
/// run's oldest files beyond `keep_last` (by epoch number; never the file just written; deletion is
/// best effort).
///
/// One directory (and prefix) holds one run, so that `latest_checkpoint` names its newest save and
/// pruning deletes only its files. A run's files are those it wrote and, when it resumes
/// (`checkpoint_options::start_epoch` > 0), those of epochs <= start_epoch that `dir` held when it was
/// made. The constructor throws lepton::value_error, before any training, when `dir` holds any other
/// file of `prefix` (a new run in the directory of an old one; a run resumed from an epoch older than
/// the directory's newest), and `save` throws it, writing and deleting nothing, when the directory
/// holds a file of a later epoch, or of the same epoch that this run did not write (another process
/// saving there). Each message names the directory, the files and what to do.
///
/// It holds pointers to the model, optimizer and scheduler, which must outlive it; copies (such as
/// the one `fit_options::on_checkpoint` stores) share them and the record of the run's files.
/// @tparam Sched a stateful_scheduler, or detail::no_scheduler for none
///
/// **Example**:
/// ```
/// lepton::io::train_state st; // resume if the directory holds a checkpoint
/// if (auto last = lepton::io::latest_checkpoint("ckpt")) lepton::io::load_checkpoint(*last, model, opt, st, sched);
/// lepton::io::checkpointer ckpt(model, opt, sched,
///                               {.dir = "ckpt", .every = 1, .keep_last = 2, .start_epoch = st.epoch}, 9);
/// lepton::train::fit(model, opt, loss, train, {.epochs = 10, .start_epoch = st.epoch, .seed = 9,
///                    .on_epoch = [&](auto const&) { sched.step(); return true; }, .on_checkpoint = ckpt});
/// ```
template <class Model, optim::stateful_optimizer Opt, class Sched = detail::no_scheduler> class checkpointer {
public:
  /// Without a scheduler. `seed` is the data seed (fit_options::seed), stored for resuming.
  checkpointer(Model& model, Opt& opt, checkpoint_options options, std::uint64_t seed = 0)
    requires std::is_same_v<Sched, detail::no_scheduler>
      : m_model(&model), m_opt(&opt), m_options(std::move(options)), m_seed(seed) {
    check();
  }
  /// With a scheduler, saved with the rest.
  checkpointer(Model& model, Opt& opt, Sched& sched, checkpoint_options options, std::uint64_t seed = 0)
    requires optim::stateful_scheduler<Sched>
      : m_model(&model), m_opt(&opt), m_sched(&sched), m_options(std::move(options)), m_seed(seed) {
    check();
  }

  /// Saves now as after epoch `epoch` (creating the directory if needed), then prunes this run's
  /// old files. Returns the file written, which exists when save returns. Throws lepton::io_error
  /// if the directory or file cannot be written, lepton::value_error if the directory holds a file
  /// of a later epoch or another run's file of this epoch (then nothing is written or deleted).
  std::filesystem::path save(std::uint64_t epoch) {
    std::error_code ec;
    std::filesystem::create_directories(m_options.dir, ec);
    if (ec)
      throw io_error(m_options.dir.string() + ": cannot create the checkpoint directory: " + ec.message());
    auto path = checkpoint_path(m_options.dir, epoch, m_options.prefix);
    for (auto const& [e, p] : list_checkpoints(m_options.dir, m_options.prefix)) {
      if (e < epoch || (e == epoch && owns(e))) continue;
      throw value_error(
          "checkpointer: " + m_options.dir.string() + ": cannot save epoch " + std::to_string(epoch) +
          " as " + path.filename().string() + ": the directory holds " + p.filename().string() +
          (owns(e) ? ", a later epoch that this run saved before (saves must not go back in epochs, or "
                     "latest_checkpoint would not name the newest)"
                   : ", which this run did not write: is another run saving into the same directory? Give "
                     "each run its own directory or prefix"));
    }
    train_state st{.epoch = epoch, .step = m_opt->steps(), .seed = m_seed};
    if constexpr (std::is_same_v<Sched, detail::no_scheduler>)
      save_checkpoint(path, *m_model, *m_opt, st, m_options.write);
    else
      save_checkpoint(path, *m_model, *m_opt, st, *m_sched, m_options.write);
    if (!owns(epoch)) m_run->owned.push_back(epoch);
    prune(path);
    return path;
  }

  /// The fit hook: saves when `stats.epoch` (1-based, completed epochs) is a multiple of `every`.
  template <class Stats>
    requires requires(Stats const& s) { static_cast<std::uint64_t>(s.epoch); }
  void operator()(Stats const& stats) {
    auto const e = static_cast<std::uint64_t>(stats.epoch);
    if (e % m_options.every == 0) save(e);
  }

  /// The options given at construction.
  checkpoint_options const& options() const noexcept { return m_options; }

private:
  struct run_record {
    std::vector<std::uint64_t> owned; ///< epochs of this run's files (adopted or written)
  };

  bool owns(std::uint64_t epoch) const {
    return std::find(m_run->owned.begin(), m_run->owned.end(), epoch) != m_run->owned.end();
  }

  /// Validates the options and adopts the files of the run this one continues (see the class).
  void check() {
    if (m_options.every == 0) throw value_error("checkpointer: every must be > 0");
    std::vector<std::filesystem::path> foreign;
    for (auto const& [e, p] : list_checkpoints(m_options.dir, m_options.prefix)) {
      if (m_options.start_epoch > 0 && e <= m_options.start_epoch)
        m_run->owned.push_back(e);
      else
        foreign.push_back(p);
    }
    if (foreign.empty()) return;
    std::string const files = foreign.front().filename().string() +
                              (foreign.size() > 1 ? " .. " + foreign.back().filename().string() + ", " +
                                                        std::to_string(foreign.size()) + " files"
                                                  : std::string());
    std::string const remedy = "use another dir or prefix, or move those files away";
    if (m_options.start_epoch == 0)
      throw value_error("checkpointer: " + m_options.dir.string() + " holds checkpoints of another run (" +
                        files +
                        ") and this run is new (checkpoint_options::start_epoch = 0): its saves would "
                        "overwrite them and pruning would delete its own. To continue that run, load "
                        "the latest and pass its epoch as start_epoch (here and to fit); else " +
                        remedy);
    throw value_error("checkpointer: " + m_options.dir.string() + " holds checkpoints newer than epoch " +
                      std::to_string(m_options.start_epoch) + ", where this run continues (" + files +
                      "): they are another run's, or a later part of this one that the new saves would "
                      "mix with. Resume from the latest, or " +
                      remedy);
  }

  void prune(std::filesystem::path const& just_written) noexcept {
    if (m_options.keep_last == 0) return;
    try {
      std::vector<std::pair<std::uint64_t, std::filesystem::path>> mine;
      for (auto& f : list_checkpoints(m_options.dir, m_options.prefix))
        if (owns(f.first) && f.second != just_written) mine.push_back(std::move(f));
      // keep_last - 1 of the older files, and the one just written
      std::size_t const excess =
          mine.size() + 1 > m_options.keep_last ? mine.size() + 1 - m_options.keep_last : 0;
      for (std::size_t i = 0; i < excess; ++i) {
        std::error_code ec;
        if (std::filesystem::remove(mine[i].second, ec) && !ec) std::erase(m_run->owned, mine[i].first);
      }
    } catch (...) {
      // best effort: a checkpoint that could not be deleted is harmless
    }
  }

  Model* m_model;
  Opt* m_opt;
  Sched* m_sched = nullptr;
  checkpoint_options m_options;
  std::uint64_t m_seed;
  std::shared_ptr<run_record> m_run = std::make_shared<run_record>();
};

/// Deduction: `checkpointer(model, opt, options, seed)` has no scheduler.
template <class Model, class Opt> checkpointer(Model&, Opt&, checkpoint_options, std::uint64_t)
    -> checkpointer<Model, Opt>;
template <class Model, class Opt> checkpointer(Model&, Opt&, checkpoint_options) -> checkpointer<Model, Opt>;
/// Deduction: `checkpointer(model, opt, sched, options, seed)`.
template <class Model, class Opt, class Sched>
checkpointer(Model&, Opt&, Sched&, checkpoint_options, std::uint64_t) -> checkpointer<Model, Opt, Sched>;
template <class Model, class Opt, class Sched> checkpointer(Model&, Opt&, Sched&, checkpoint_options)
    -> checkpointer<Model, Opt, Sched>;

} // namespace lepton::io
