#pragma once
/// @file dyn_tensor.hpp
/// @brief Type-erased tensors for file I/O: `dyn_tensor` (owning, dtype and shape known at run time),
///        `tensor_ref` (a named read-only view, what the savers take), `tensor_target` (a named
///        destination, what the `load_*_into` functions fill) and `tensor_map` (what the loaders return).

#include <algorithm>
#include <cstddef>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "../core/error.hpp"
#include "../core/memory.hpp"
#include "../core/param.hpp"
#include "../core/shape.hpp"
#include "../core/tensor.hpp"
#include "dtype.hpp"
#include "reader.hpp"

namespace lepton::io {

/// @brief An owning tensor whose dtype and shape are known only at run time: what a file holds.
///
/// Storage is one 64-byte aligned block of `nbytes()` bytes in row-major (C) order. Convert to a typed
/// tensor with `as<T, Dims...>()`, which checks dtype and shape.
///
/// **Example**:
/// ```
/// lepton::tensor<float, 2, 3> t({2, 3}, {1, 2, 3, 4, 5, 6});
/// lepton::io::dyn_tensor d(t);                        // F32 (2, 3), a copy
/// auto back = d.as<float, lepton::dyn, 3>();          // tensor<float, dyn, 3>, shape (2, 3)
/// ```
class dyn_tensor {
public:
  /// An F32 tensor of shape (0).
  dyn_tensor() : dyn_tensor(dtype::f32, {0}) {}

  /// Zero-filled. Throws lepton::value_error if the byte size overflows.
  dyn_tensor(dtype type, std::vector<std::size_t> shape) : dyn_tensor(uninitialized(type, std::move(shape))) {
    if (m_nbytes) std::memset(m_data.get(), 0, m_nbytes);
  }

  /// A copy of a lepton tensor or tensor view.
  template <dense D>
    requires storable_element<typename std::remove_cvref_t<D>::value_type>
  explicit dyn_tensor(D const& t)
      : dyn_tensor(uninitialized(dtype_of<typename std::remove_cvref_t<D>::value_type>, shape_of(t))) {
    if (m_nbytes) std::memcpy(m_data.get(), t.data(), m_nbytes);
  }

  /// Storage with unspecified content (the loaders fill it).
  static dyn_tensor uninitialized(dtype type, std::vector<std::size_t> shape) {
    auto n = detail::checked_nbytes(type, shape);
    if (!n)
      throw value_error("dyn_tensor: " + std::string(to_string(type)) + " " + shape_string(shape) +
                        " does not fit in memory (its byte size overflows)");
    dyn_tensor d(type, std::move(shape), *n);
    return d;
  }

  dyn_tensor(dyn_tensor const& o) : dyn_tensor(uninitialized(o.m_type, o.m_shape)) {
    if (m_nbytes) std::memcpy(m_data.get(), o.m_data.get(), m_nbytes);
  }
  /// Leaves `o` as an F32 tensor of shape (0).
  dyn_tensor(dyn_tensor&& o) noexcept
      : m_type(std::exchange(o.m_type, dtype::f32)), m_shape(std::exchange(o.m_shape, {0})),
        m_nbytes(std::exchange(o.m_nbytes, 0)), m_data(std::move(o.m_data)) {}
  dyn_tensor& operator=(dyn_tensor const& o) {
    if (this != &o) *this = dyn_tensor(o);
    return *this;
  }
  dyn_tensor& operator=(dyn_tensor&& o) noexcept {
    m_type = std::exchange(o.m_type, dtype::f32);
    m_shape = std::exchange(o.m_shape, {0});
    m_nbytes = std::exchange(o.m_nbytes, 0);
    m_data = std::move(o.m_data);
    return *this;
  }

  /// Element type.
  dtype type() const noexcept { return m_type; }
  /// Dimensions (empty for a scalar).
  std::vector<std::size_t> const& shape() const noexcept { return m_shape; }
  /// Number of dimensions.
  std::size_t rank() const noexcept { return m_shape.size(); }
  /// Number of elements (1 for a scalar).
  std::size_t size() const noexcept { return m_nbytes / itemsize(m_type); }
  /// Size of the storage in bytes (`size() * itemsize(type())`).
  std::size_t nbytes() const noexcept { return m_nbytes; }
  /// The raw row-major storage, 64-byte aligned.
  void* data() noexcept { return m_data.get(); }
  void const* data() const noexcept { return m_data.get(); }
  /// The storage as bytes (little-endian elements, row-major).
  std::span<std::byte> bytes() noexcept { return {m_data.get(), m_nbytes}; }
  std::span<std::byte const> bytes() const noexcept { return {m_data.get(), m_nbytes}; }

  /// The elements as `T`; throws lepton::value_error if `T` is not the dtype.
  /// **Example**: `float first = d.values<float>()[0];`
  template <storable_element T> std::span<T> values() {
    check_type(dtype_of<T>, "values");
    return {reinterpret_cast<T*>(m_data.get()), size()};
  }
  template <storable_element T> std::span<T const> values() const {
    check_type(dtype_of<T>, "values");
    return {reinterpret_cast<T const*>(m_data.get()), size()};
  }

  /// A typed copy. Throws lepton::value_error if `T` is not the dtype and lepton::shape_error if the
  /// shape does not fit `Dims` (`dyn` fits any size); both messages name the two dtypes and shapes.
  /// **Example**: `auto w = file.at("fc1.weight").as<float, 784, 256>();`
  template <storable_element T, std::size_t... Dims> tensor<T, Dims...> as() const {
    constexpr std::size_t R = sizeof...(Dims);
    std::string const wanted = std::string(to_string(dtype_of<T>)) + " " + lepton::to_string(dims<Dims...>{});
    std::string const have = std::string(to_string(m_type)) + " " + shape_string(m_shape);
    if (m_type != dtype_of<T>)
      throw value_error("dyn_tensor::as: expected " + wanted + ", the tensor is " + have);
    shape_t<R> s{};
    bool ok = m_shape.size() == R;
    if constexpr (R > 0) { // (GCC 12 warns -Wnonnull on a copy into an empty array)
      if (ok) {
        std::copy(m_shape.begin(), m_shape.end(), s.begin());
        ok = lepton::detail::matches(dims<Dims...>{}, s);
      }
    }
    if (!ok) throw shape_error("dyn_tensor::as: expected " + wanted + ", the tensor is " + have);
    tensor<T, Dims...> out(s);
    if (m_nbytes) std::memcpy(out.data(), m_data.get(), m_nbytes);
    return out;
  }

  /// Same dtype, shape and bytes (NaNs with equal bits compare equal).
  friend bool operator==(dyn_tensor const& a, dyn_tensor const& b) noexcept {
    return a.m_type == b.m_type && a.m_shape == b.m_shape &&
           (a.m_nbytes == 0 || std::memcmp(a.m_data.get(), b.m_data.get(), a.m_nbytes) == 0);
  }

private:
  template <class D> static std::vector<std::size_t> shape_of(D const& t) {
    auto s = t.shape(); // tensor::shape() returns by value
    return std::vector<std::size_t>(s.begin(), s.end());
  }

  struct deleter {
    void operator()(std::byte* p) const noexcept { lepton::detail::aligned_free_bytes(p); }
  };

  dyn_tensor(dtype type, std::vector<std::size_t> shape, std::size_t nbytes)
      : m_type(type), m_shape(std::move(shape)), m_nbytes(nbytes),
        m_data(static_cast<std::byte*>(lepton::detail::aligned_alloc_bytes(nbytes))) {}

  void check_type(dtype t, char const* where) const {
    if (t != m_type)
      throw value_error("dyn_tensor::" + std::string(where) + ": asked for " + std::string(to_string(t)) +
                        ", the tensor is " + std::string(to_string(m_type)) + " " + shape_string(m_shape));
  }

  dtype m_type = dtype::f32;
  std::vector<std::size_t> m_shape;
  std::size_t m_nbytes = 0;
  std::unique_ptr<std::byte, deleter> m_data;
};

/// @brief A named, read-only reference to tensor data: what the savers take. Build it with
///        lepton::io::ref(). It does not own the data: the tensor must outlive the call.
///
/// **Example**: `lepton::io::save_safetensors("m.safetensors", {lepton::io::ref("fc1.weight", w)});`
struct tensor_ref {
  std::string name;               ///< the name in the file (kept as given)
  dtype type = dtype::f32;        ///< element type
  std::vector<std::size_t> shape; ///< dimensions, row-major
  void const* data = nullptr;     ///< contiguous row-major elements

  /// Byte size (the caller's tensor exists, so it cannot overflow).
  std::size_t nbytes() const noexcept { return detail::checked_nbytes(type, shape).value_or(0); }
};

/// @brief A named reference to a lepton tensor or tensor view.
///
/// **Example**: `auto r = lepton::io::ref("fc1.bias", b); // F32 (256)`
template <dense D>
  requires storable_element<typename std::remove_cvref_t<D>::value_type>
tensor_ref ref(std::string name, D const& t) {
  auto s = t.shape();
  return {std::move(name), dtype_of<typename std::remove_cvref_t<D>::value_type>,
          std::vector<std::size_t>(s.begin(), s.end()), static_cast<void const*>(t.data())};
}

/// @brief A named reference to a parameter's value.
///
/// **Example**: `auto r = lepton::io::ref("fc1.weight", layer.weight);`
template <class T, std::size_t... Dims> tensor_ref ref(std::string name, param<T, Dims...> const& p) {
  return ref(std::move(name), p.value);
}

/// @brief A named reference to a dyn_tensor.
///
/// **Example**: `auto r = lepton::io::ref("x", file.at("x"));`
inline tensor_ref ref(std::string name, dyn_tensor const& t) {
  return {std::move(name), t.type(), t.shape(), t.data()};
}

/// @brief A named destination for `load_safetensors_into` / `load_npz_into`. Build it with
///        lepton::io::target().
///
/// `shape` is what the file must hold; an entry equal to `lepton::dyn` accepts any size and the
/// tensor is then resized (through `stage`/`commit_staged`). The loaders validate every target before
/// they write any, so a failed load leaves all targets unchanged.
///
/// **Example**: `lepton::io::load_safetensors_into("m.safetensors", {lepton::io::target("fc1.weight", w)});`
struct tensor_target {
  std::string name;                 ///< the name in the file
  dtype type = dtype::f32;          ///< required element type
  std::vector<std::size_t> shape;   ///< required shape; `lepton::dyn` entries accept any size
  std::vector<std::size_t> current; ///< the tensor's shape now
  void* data = nullptr;             ///< its storage now (written in place when the shape is unchanged)
  /// For resizable targets: makes storage for a new shape (may throw; nothing is changed yet) and
  /// returns where to copy the values.
  std::function<void*(std::vector<std::size_t> const&)> stage;
  /// For resizable targets: installs what stage() made. Must not throw.
  std::function<void()> commit_staged;
};

/// @brief A destination tensor. Its `dyn` dimensions take the sizes found in the file.
///
/// **Example**:
/// ```
/// lepton::tensor<float, lepton::dyn, 10> logits; // any number of rows
/// lepton::io::load_npz_into("x.npz", {lepton::io::target("logits", logits)});
/// ```
template <storable_element T, std::size_t... Dims>
tensor_target target(std::string name, tensor<T, Dims...>& t) {
  auto s = t.shape();
  tensor_target r{std::move(name),
                  dtype_of<T>,
                  {Dims...},
                  std::vector<std::size_t>(s.begin(), s.end()),
                  static_cast<void*>(t.data()),
                  {},
                  {}};
  if constexpr (dims<Dims...>::dynamic_count > 0) {
    auto staged = std::make_shared<tensor<T, Dims...>>();
    auto* dst = &t;
    r.stage = [staged](std::vector<std::size_t> const& shape) -> void* {
      shape_t<sizeof...(Dims)> st{};
      std::copy(shape.begin(), shape.end(), st.begin());
      *staged = tensor<T, Dims...>(st);
      return staged->data();
    };
    r.commit_staged = [staged, dst]() noexcept { *dst = std::move(*staged); };
  }
  return r;
}

/// @brief A destination view: fixed memory, so the file must hold exactly its shape.
///
/// **Example**: `lepton::io::target("first_rows", x.rows(0, 8))`
template <storable_element T, std::size_t... Dims>
  requires(!std::is_const_v<T>)
tensor_target target(std::string name, tensor_view<T, Dims...> const& v) {
  auto s = v.shape();
  std::vector<std::size_t> shape(s.begin(), s.end());
  return {std::move(name), dtype_of<T>, shape, shape, static_cast<void*>(v.data()), {}, {}};
}

/// @brief A destination parameter (its value; the gradient is not touched).
///
/// **Example**: `lepton::io::target("fc1.weight", layer.weight)`
template <class T, std::size_t... Dims> tensor_target target(std::string name, param<T, Dims...>& p) {
  return target(std::move(name), p.value);
}

/// @brief A destination dyn_tensor: the file must hold exactly its dtype and shape.
///
/// **Example**: `lepton::io::target("x", d)`
inline tensor_target target(std::string name, dyn_tensor& d) {
  return {std::move(name), d.type(), d.shape(), d.shape(), d.data(), {}, {}};
}

/// @brief Named tensors in file order, plus the safetensors `__metadata__` (empty for .npz).
///
/// **Example**:
/// ```
/// auto m = lepton::io::load_safetensors("m.safetensors");
/// for (auto const& [name, t] : m) std::cout << name << " " << lepton::io::shape_string(t.shape()) << "\n";
/// auto w = m.at("fc1.weight").as<float, 784, 256>();
/// ```
class tensor_map {
public:
  using value_type = std::pair<std::string, dyn_tensor>;

  /// Appends a tensor; throws lepton::value_error if the name is already there.
  dyn_tensor& insert(std::string name, dyn_tensor t) {
    auto [it, fresh] = m_index.try_emplace(name, m_entries.size()); // one search: loaders insert 10^6 names
    if (!fresh) throw value_error("tensor_map: duplicate tensor name '" + name + "'");
    try {
      m_entries.emplace_back(std::move(name), std::move(t));
    } catch (...) {
      m_index.erase(it);
      throw;
    }
    return m_entries.back().second;
  }

  /// Whether a tensor is called `name`.
  bool contains(std::string_view name) const { return m_index.find(name) != m_index.end(); }
  /// The tensor called `name`; throws lepton::value_error naming it if there is none.
  dyn_tensor const& at(std::string_view name) const { return m_entries[index(name)].second; }
  dyn_tensor& at(std::string_view name) { return m_entries[index(name)].second; }

  /// Number of tensors.
  std::size_t size() const noexcept { return m_entries.size(); }
  bool empty() const noexcept { return m_entries.empty(); }
  /// Iteration over `std::pair<std::string, dyn_tensor>` in file order.
  auto begin() const noexcept { return m_entries.begin(); }
  auto end() const noexcept { return m_entries.end(); }
  auto begin() noexcept { return m_entries.begin(); }
  auto end() noexcept { return m_entries.end(); }

  /// Names in order.
  std::vector<std::string> names() const {
    std::vector<std::string> n;
    for (auto const& e : m_entries) n.push_back(e.first);
    return n;
  }

  /// References to every tensor, in order (for saving the map again).
  std::vector<tensor_ref> refs() const {
    std::vector<tensor_ref> r;
    for (auto const& e : m_entries) r.push_back(ref(e.first, e.second));
    return r;
  }

  /// Free-form string metadata (safetensors `__metadata__`).
  std::map<std::string, std::string> metadata;

private:
  std::size_t index(std::string_view name) const {
    auto it = m_index.find(name);
    if (it == m_index.end()) throw value_error("tensor_map: no tensor named '" + std::string(name) + "'");
    return it->second;
  }

  std::vector<value_type> m_entries;
  std::map<std::string, std::size_t, std::less<>> m_index;
};

/// @brief How strictly `load_*_into` matches the file's names with the targets.
///
/// **Example**: `lepton::io::load_safetensors_into(p, targets, {.allow_unexpected = true});`
struct load_into_options {
  /// A target whose name is not in the file is left unchanged (else: format_error).
  bool allow_missing = false;
  /// Tensors of the file that no target names are ignored (else: format_error).
  bool allow_unexpected = false;
};

/// @brief Limits applied while loading untrusted files.
///
/// **Example**:
/// ```
/// auto m = lepton::io::load_safetensors("big.safetensors", {.max_header_bytes = 1 << 30});
/// auto z = lepton::io::load_npz("big.npz", {.max_decompressed_bytes = std::size_t{8} << 30});
/// ```
struct load_options {
  /// Largest accepted safetensors JSON header; a larger claimed length is a format_error.
  std::size_t max_header_bytes = std::size_t{100} << 20;
  /// Largest accepted .npy header dict (numpy itself refuses more than 10000 bytes by default).
  std::size_t max_npy_header_bytes = std::size_t{1} << 20;
  /// Most bytes that the compressed (deflate) entries of one .npz archive may inflate to, all entries
  /// together; a larger declared size is a format_error before anything is allocated or inflated.
  /// Stored entries do not count: the file itself holds their bytes.
  std::size_t max_decompressed_bytes = std::size_t{1} << 30;
};

namespace detail {

/// What the file says about one tensor.
struct entry_info {
  std::string const* name;
  dtype type;
  std::vector<std::size_t> const* shape;
};

inline std::string pattern_string(std::vector<std::size_t> const& shape) {
  std::string out = "(";
  for (std::size_t i = 0; i < shape.size(); ++i)
    out += (i ? ", " : "") + (shape[i] == dyn ? std::string("dyn") : std::to_string(shape[i]));
  return out + ")";
}

inline constexpr std::size_t no_entry = static_cast<std::size_t>(-1);

/// Checks names, dtypes and shapes of all targets against the file; returns, per target, the index
/// of its entry (no_entry for an allowed missing one). Changes nothing.
inline std::vector<std::size_t> match_targets(std::string const& file, std::vector<entry_info> const& entries,
                                              std::span<tensor_target const> targets,
                                              load_into_options const& opt) {
  std::map<std::string_view, std::size_t> by_name;
  for (std::size_t i = 0; i < entries.size(); ++i) by_name.emplace(*entries[i].name, i);
  std::map<std::string_view, std::size_t> seen;
  std::vector<std::size_t> match(targets.size(), no_entry);
  std::vector<bool> used(entries.size(), false);
  std::vector<std::string> missing;
  for (std::size_t k = 0; k < targets.size(); ++k) {
    auto const& t = targets[k];
    if (!seen.emplace(t.name, k).second) throw value_error(file + ": two targets are named '" + t.name + "'");
    auto it = by_name.find(t.name);
    if (it == by_name.end()) {
      missing.push_back(t.name);
      continue;
    }
    auto const& e = entries[it->second];
    bool ok = e.type == t.type && e.shape->size() == t.shape.size();
    for (std::size_t d = 0; ok && d < t.shape.size(); ++d)
      ok = t.shape[d] == dyn || t.shape[d] == (*e.shape)[d];
    if (!ok)
      format_fail(file, "tensor '" + t.name + "': expected " + std::string(to_string(t.type)) + " " +
                            pattern_string(t.shape) + ", file has " + std::string(to_string(e.type)) + " " +
                            shape_string(*e.shape));
    if (*e.shape != t.current && !(t.stage && t.commit_staged))
      throw value_error(file + ": target '" + t.name + "' has shape " + shape_string(t.current) +
                        " and cannot be resized to " + shape_string(*e.shape));
    match[k] = it->second;
    used[it->second] = true;
  }
  auto list = [](std::vector<std::string> const& names) {
    std::string s;
    for (std::size_t i = 0; i < names.size() && i < 8; ++i) s += (i ? ", '" : "'") + names[i] + "'";
    if (names.size() > 8) s += ", ... (" + std::to_string(names.size()) + " in all)";
    return s;
  };
  if (!missing.empty() && !opt.allow_missing)
    format_fail(file, "missing tensor" + std::string(missing.size() > 1 ? "s " : " ") + list(missing));
  if (!opt.allow_unexpected) {
    std::vector<std::string> extra;
    for (std::size_t i = 0; i < entries.size(); ++i)
      if (!used[i]) extra.push_back(*entries[i].name);
    if (!extra.empty())
      format_fail(file, "unexpected tensor" + std::string(extra.size() > 1 ? "s " : " ") + list(extra) +
                            " (no target has this name)");
  }
  return match;
}

/// Copies validated data into the targets: first makes new storage for the targets that must be
/// resized (the only step that can throw), then copies everything and installs it (cannot throw).
/// `source(entry)` gives the bytes of an entry, `shape(entry)` its shape.
template <class Source, class Shape> void fill_targets(std::span<tensor_target const> targets,
                                                       std::vector<std::size_t> const& match, Source&& source,
                                                       Shape&& shape) {
  std::vector<void*> dst(targets.size(), nullptr);
  std::vector<char> staged(targets.size(), 0);
  for (std::size_t k = 0; k < targets.size(); ++k) {
    if (match[k] == no_entry) continue;
    auto const& t = targets[k];
    std::vector<std::size_t> const& s = shape(match[k]);
    staged[k] = s != t.current && t.stage && t.commit_staged;
    dst[k] = staged[k] ? t.stage(s) : t.data;
  }
  for (std::size_t k = 0; k < targets.size(); ++k) {
    if (match[k] == no_entry) continue;
    std::span<std::byte const> src = source(match[k]);
    if (!src.empty()) std::memcpy(dst[k], src.data(), src.size());
    if (staged[k]) targets[k].commit_staged();
  }
}

} // namespace detail
} // namespace lepton::io
