#pragma once
/// @file model_file.hpp
/// @brief The lepton model and checkpoint file layout over named tensors (safetensors): the format
///        markers, reserved names and metadata keys, the training position record (`train_state`)
///        and the validated, all-or-nothing read of a file's tensors into fixed targets.
///
/// This is the file format only: it knows nothing of models or optimizers. Saving and loading a
/// model, a training checkpoint and the checkpointer (which list a model's tensors with
/// nn::model_view) are in train/checkpoint.hpp, under the same `lepton::io` names. See docs/io.md,
/// section "Checkpoints", for the layout.

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "dtype.hpp"
#include "reader.hpp"
#include "safetensors.hpp"

namespace lepton::io {

/// @brief The `__metadata__` value of `format` that marks a lepton checkpoint.
inline constexpr std::string_view checkpoint_format = "lepton.checkpoint";
/// @brief The checkpoint layout version written (and the only one read) by this lepton.
inline constexpr std::string_view checkpoint_format_version = "1";

/// @brief How `load_model` matches the file with the model.
///
/// **Example**: `lepton::io::load_model("backbone.safetensors", model, {.allow_missing = true});`
struct model_load_options {
  /// Parameters that the file does not hold keep their values (else: format_error).
  bool allow_missing = false;
  /// Tensors of the file that name no parameter are ignored (else: format_error). The optimizer,
  /// training and scheduler entries of a lepton checkpoint are always ignored by load_model.
  bool allow_unexpected = false;
  /// Limits applied while reading the file.
  load_options limits{};
};

/// @brief The training loop's position, saved with a checkpoint.
///
/// `epoch` is the number of completed epochs: resume with `fit_options::start_epoch = epoch`.
/// The `std::uint64_t` fields are stored as I64 tensors with the same bits.
///
/// **Example**:
/// ```
/// lepton::io::train_state st{.epoch = 2, .step = opt.steps(), .seed = 9};
/// lepton::io::save_checkpoint("ckpt.safetensors", model, opt, st);
/// ```
struct train_state {
  std::uint64_t epoch = 0; ///< epochs completed
  std::uint64_t step = 0;  ///< optimizer steps (batches) completed
  std::uint64_t seed = 0;  ///< the data loader's seed (fit_options::seed)
  /// Free-form strings saved in `__metadata__` and given back by load_checkpoint. The keys `format`,
  /// `format_version`, `optimizer_state`, `epoch` and `step` are lepton's (a value_error when saving).
  std::map<std::string, std::string> metadata{};
};

namespace detail {

inline constexpr std::string_view reserved_metadata[] = {"format", "format_version", "optimizer_state",
                                                         "epoch", "step"};

inline bool is_reserved_metadata(std::string_view key) {
  return std::find(std::begin(reserved_metadata), std::end(reserved_metadata), key) !=
         std::end(reserved_metadata);
}

/// Whether a tensor name belongs to the non-model part of a checkpoint.
inline bool is_checkpoint_state_name(std::string_view name) {
  return name.starts_with("optim.") || name.starts_with("train.") || name.starts_with("sched.");
}

inline std::int64_t to_i64(std::uint64_t v) noexcept { return std::bit_cast<std::int64_t>(v); }
inline std::uint64_t to_u64(std::int64_t v) noexcept { return std::bit_cast<std::uint64_t>(v); }

inline tensor_ref raw_ref(std::string name, dtype t, std::vector<std::size_t> shape, void const* data) {
  return {std::move(name), t, std::move(shape), data};
}

inline tensor_target raw_target(std::string name, dtype t, std::vector<std::size_t> shape, void* data) {
  auto cur = shape;
  return {std::move(name), t, std::move(shape), std::move(cur), data, {}, {}};
}

/// Reads the data of the matched entries into one staging buffer; `at[entry]` is its position.
struct staged_data {
  std::unique_ptr<std::byte[]> bytes;
  std::vector<std::size_t> at;
};

inline staged_data stage_matched(byte_source const& src, st_header const& h,
                                 std::vector<std::size_t> const& match) {
  std::size_t total = 0;
  for (auto m : match)
    if (m != no_entry) total += static_cast<std::size_t>(h.entries[m].end - h.entries[m].begin);
  staged_data s{std::make_unique_for_overwrite<std::byte[]>(total ? total : 1),
                std::vector<std::size_t>(h.entries.size(), 0)};
  std::size_t pos = 0;
  for (auto m : match) {
    if (m == no_entry) continue;
    auto const& e = h.entries[m];
    auto const n = static_cast<std::size_t>(e.end - e.begin);
    s.at[m] = pos;
    src.read(h.data_start + e.begin, s.bytes.get() + pos, n, "tensor '" + e.name + "'");
    pos += n;
  }
  return s;
}

/// Copies the staged data of targets [first, last) into them (fixed shapes: cannot fail).
inline void copy_staged(std::vector<tensor_target> const& targets, std::vector<std::size_t> const& match,
                        st_header const& h, staged_data const& s, std::size_t first,
                        std::size_t last) noexcept {
  for (std::size_t k = first; k < last; ++k) {
    if (match[k] == no_entry) continue;
    auto const& e = h.entries[match[k]];
    auto const n = static_cast<std::size_t>(e.end - e.begin);
    if (n) std::memcpy(targets[k].data, s.bytes.get() + s.at[match[k]], n);
  }
}

inline std::vector<entry_info> entry_infos(st_header const& h) {
  std::vector<entry_info> info;
  info.reserve(h.entries.size());
  for (auto const& e : h.entries) info.push_back({&e.name, e.type, &e.shape});
  return info;
}

inline std::string const* find_metadata(st_header const& h, std::string const& key) {
  auto it = h.metadata.find(key);
  return it == h.metadata.end() ? nullptr : &it->second;
}

/// Reads the tensors of a model file (save_model's or a checkpoint's, or any safetensors file) into
/// `targets` (fixed dtype and shape) with the strong guarantee: the file is validated and every
/// matched tensor read before the first target is written. A lepton checkpoint's own entries
/// (optim.*, train.*, sched.*) are ignored unless a target has the same name.
inline void read_model_tensors(std::filesystem::path const& path, std::vector<tensor_target> const& targets,
                               model_load_options const& options) {
  file_reader f(path);
  byte_source src(f, 0, f.size(), f.name());
  st_header const h = parse_safetensors_header(src, options.limits);
  auto const* format = find_metadata(h, "format");
  bool const is_checkpoint = format && *format == checkpoint_format;

  // Hide a checkpoint's own entries (unless a target has the same name) from the matching.
  std::vector<entry_info> info;
  std::vector<std::size_t> entry_of;
  for (std::size_t i = 0; i < h.entries.size(); ++i) {
    auto const& e = h.entries[i];
    if (is_checkpoint && is_checkpoint_state_name(e.name) &&
        std::none_of(targets.begin(), targets.end(), [&](auto const& t) { return t.name == e.name; }))
      continue;
    info.push_back({&e.name, e.type, &e.shape});
    entry_of.push_back(i);
  }
  auto match =
      match_targets(src.name(), info, targets,
                    {.allow_missing = options.allow_missing, .allow_unexpected = options.allow_unexpected});
  for (auto& m : match)
    if (m != no_entry) m = entry_of[m];
  staged_data const staged = stage_matched(src, h, match);
  copy_staged(targets, match, h, staged, 0, targets.size());
}

} // namespace detail
} // namespace lepton::io
