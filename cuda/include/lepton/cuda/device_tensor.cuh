#pragma once
/// @file device_tensor.cuh
/// @brief `lepton::cuda::device_tensor<T, Dims...>`: an owning, row-major tensor in device memory with
///        the static/dynamic dimensions of `lepton::tensor`, and the host <-> device copies
///        (`to_device`, `device_tensor::to_host`, `copy_into`). Include from .cu files only (through
///        <lepton/cuda.cuh>).

#include <cuda_runtime.h>

#include <algorithm>
#include <concepts>
#include <cstddef>
#include <string>
#include <type_traits>
#include <utility>

#include <lepton/core/error.hpp>
#include <lepton/core/shape.hpp>
#include <lepton/core/tensor.hpp>
#include <lepton/cuda/allocator.cuh>
#include <lepton/cuda/device.cuh>
#include <lepton/cuda/stream.cuh>

namespace lepton::cuda {

namespace detail {

/// Writes `value` to p[0, n): a grid-stride loop, so any grid size covers any n.
template <class T> __global__ void fill_kernel(T* __restrict__ p, std::size_t n, T value) {
  std::size_t const stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    p[i] = value;
}

template <std::size_t R>
void check_same_shape(shape_t<R> const& src, shape_t<R> const& dst, char const* where) {
  if (src != dst)
    throw shape_error(std::string(where) + ": source shape " + to_string(src) + " and destination shape " +
                      to_string(dst) + " differ");
}

/// cudaMemcpyAsync on `s`, then waits for it; nothing (no CUDA call) for 0 bytes.
inline void copy_and_wait(void* dst, void const* src, std::size_t bytes, cudaMemcpyKind kind,
                          stream const& s) {
  if (bytes == 0) return;
  LEPTON_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, kind, s.get()));
  s.synchronize();
}

} // namespace detail

/// @brief An owning, row-major tensor in device memory. Static dimensions are template arguments;
///        `lepton::dyn` marks one given at run time, exactly as for `lepton::tensor`.
///
/// Storage comes from a `caching_allocator` (`default_allocator()` unless one is given) and goes back
/// to it when the tensor is destroyed or assigned. Move-only: copies are explicit (`clone`, `copy_into`).
/// A tensor with no elements holds no memory and calls no CUDA function, so zero-size tensors work
/// without a device. The values of a new tensor are unspecified (no kernel runs): use `fill` or a copy.
///
/// Operations that touch host memory (`to_device`, `to_host`, `copy_into` to or from a host tensor)
/// enqueue their copy on the given stream and wait for it. Device-only operations (`fill`, `clone`,
/// device-to-device `copy_into`) are only enqueued: their result is ready in the order of that stream.
/// Following the allocator's rule, destroy a tensor only after the work that uses it has completed.
/// @tparam T     element type (float, double, or an integer type)
/// @tparam Dims  one entry per dimension: a size, or `lepton::dyn`
///
/// **Example**:
/// ```
/// lepton::cuda::stream s;
/// lepton::tensor<float, lepton::dyn, 784> x(64);              // (batch=64, 784) on the host
/// auto dx = lepton::cuda::to_device(x, s);                    // device_tensor<float, dyn, 784>
/// dx.fill(1.0f, s);
/// lepton::tensor<float, lepton::dyn, 784> back = dx.to_host(s);
/// ```
template <class T, std::size_t... Dims> class device_tensor {
public:
  /// The element type.
  using value_type = T;
  /// The static dimensions (`dyn` for those known at run time).
  using static_dims = dims<Dims...>;
  /// The number of dimensions.
  static constexpr std::size_t rank = sizeof...(Dims);
  /// A runtime shape of this rank.
  using shape_type = shape_t<rank>;
  /// The host tensor with the same dimensions (what `to_host` returns).
  using host_type = tensor<T, Dims...>;

  static_assert(std::is_arithmetic_v<T>,
                "lepton: device_tensor element types are arithmetic (float, double, integers)");
  static_assert(rank <= max_rank, "lepton: tensors have at most lepton::max_rank (6) dimensions");

  /// @brief Every `dyn` dimension has size 0 (then no memory and no CUDA call); a tensor whose dimensions
  ///        are all static allocates its fixed size.
  ///
  /// **Example**: `lepton::cuda::device_tensor<float, lepton::dyn, 10> empty; // (0, 10)`
  device_tensor() : device_tensor(lepton::detail::shape_from_dyn<rank, Dims...>({})) {}

  /// @brief Uninitialised, with one size per `dyn` dimension in order, from `default_allocator()`.
  ///
  /// **Example**: `lepton::cuda::device_tensor<float, lepton::dyn, 784> x(64); // (64, 784)`
  template <std::integral... S>
    requires(sizeof...(S) == static_dims::dynamic_count && sizeof...(S) > 0)
  explicit device_tensor(S... dyn_sizes)
      : device_tensor(
            lepton::detail::shape_from_dyn<rank, Dims...>({static_cast<std::size_t>(dyn_sizes)...})) {}

  /// @brief Uninitialised, with a full runtime shape (checked against the static dimensions:
  ///        `lepton::shape_error`; a size that cannot fit in memory: `lepton::value_error`), from
  ///        `alloc`, which must outlive the tensor.
  ///
  /// **Example**: `lepton::cuda::device_tensor<double, lepton::dyn, lepton::dyn> m({3, 5}, my_cache);`
  explicit device_tensor(shape_type const& shape, caching_allocator& alloc = default_allocator())
      : m_shape(shape), m_alloc(&alloc) {
    lepton::detail::check_shape<Dims...>(shape, "cuda::device_tensor");
    std::size_t const n = lepton::detail::checked_alloc_count<T>(shape, "cuda::device_tensor");
    m_data = static_cast<T*>(m_alloc->allocate(n * sizeof(T)));
  }

  /// @brief Gives the memory back to the allocator (the work using it must have completed).
  ~device_tensor() { release(); }

  device_tensor(device_tensor const&) = delete;
  device_tensor& operator=(device_tensor const&) = delete;

  /// @brief Takes over `other`'s memory; `other` is left with no elements (every dimension 0).
  ///
  /// **Example**: `auto y = std::move(x); // x.size() == 0`
  device_tensor(device_tensor&& other) noexcept
      : m_shape(std::exchange(other.m_shape, shape_type{})), m_data(std::exchange(other.m_data, nullptr)),
        m_alloc(other.m_alloc) {}

  /// @brief Gives back the memory held, then takes over `other`'s; `other` is left with no elements.
  ///
  /// **Example**: `y = std::move(x);`
  device_tensor& operator=(device_tensor&& other) noexcept {
    if (this != &other) {
      release();
      m_shape = std::exchange(other.m_shape, shape_type{});
      m_data = std::exchange(other.m_data, nullptr);
      m_alloc = other.m_alloc;
    }
    return *this;
  }

  /// @brief A new tensor (same shape, same allocator) with a copy of the values, enqueued on `s`.
  ///
  /// **Example**: `auto backup = x.clone(s);`
  device_tensor clone(stream const& s) const {
    device_tensor out(m_shape, *m_alloc);
    if (size() != 0)
      LEPTON_CUDA_CHECK(cudaMemcpyAsync(out.m_data, m_data, bytes(), cudaMemcpyDeviceToDevice, s.get()));
    return out;
  }

  /// @brief The runtime shape. **Example**: `auto [batch, features] = x.shape();`
  shape_type const& shape() const noexcept { return m_shape; }

  /// @brief The size of dimension `i`; throws `lepton::index_error` when `i >= rank`.
  ///
  /// **Example**: `std::size_t batch = x.shape(0);`
  std::size_t shape(std::size_t i) const {
    if (i >= rank)
      throw index_error("cuda::device_tensor::shape(" + std::to_string(i) + "): rank is " +
                        std::to_string(rank));
    return m_shape[i];
  }

  /// @brief The number of elements (1 for rank 0). **Example**: `std::size_t n = x.size();`
  std::size_t size() const noexcept { return shape_size(m_shape); }

  /// @brief The size of the values in bytes. **Example**: `cudaMemsetAsync(x.data(), 0, x.bytes(), s.get());`
  std::size_t bytes() const noexcept { return size() * sizeof(T); }

  /// @brief The device pointer to the first element (row-major); `nullptr` when the tensor is empty.
  ///        Dereference it in device code only.
  ///
  /// **Example**: `my_kernel<<<grid, block, 0, s.get()>>>(x.data(), x.size());`
  T* data() noexcept { return m_data; }
  /// @brief The device pointer to the first element, read-only. **Example**: `T const* p = x.data();`
  T const* data() const noexcept { return m_data; }

  /// @brief The allocator the storage comes from. **Example**: `auto st = x.allocator().stats();`
  caching_allocator& allocator() const noexcept { return *m_alloc; }

  /// @brief Sets every element to `value` with a grid-stride kernel enqueued on `s` (no CUDA call for an
  ///        empty tensor). Throws `lepton::device_error` if the launch fails.
  ///
  /// **Example**: `x.fill(0.0f, s);`
  void fill(T value, stream const& s) {
    std::size_t const n = size();
    if (n == 0) return;
    constexpr unsigned block = 256;
    constexpr std::size_t max_grid = 4096; // enough blocks to fill any GPU; the loop strides over the rest
    auto const grid = static_cast<unsigned>(std::min<std::size_t>((n + block - 1) / block, max_grid));
    detail::fill_kernel<T><<<grid, block, 0, s.get()>>>(m_data, n, value);
    LEPTON_CUDA_CHECK(cudaGetLastError());
  }

  /// @brief A host copy of the values: the copy is enqueued on `s`, which is then synchronised.
  ///
  /// **Example**: `lepton::tensor<float, lepton::dyn, 784> h = x.to_host(s);`
  host_type to_host(stream const& s) const {
    host_type out(m_shape);
    detail::copy_and_wait(out.data(), m_data, bytes(), cudaMemcpyDeviceToHost, s);
    return out;
  }

private:
  void release() {
    if (m_data != nullptr) m_alloc->deallocate(m_data);
    m_data = nullptr;
  }

  shape_type m_shape{};
  T* m_data = nullptr;
  caching_allocator* m_alloc;
};

/// @brief A device tensor with the shape and values of `host` (allocated from `alloc`); the copy is
///        enqueued on `s`, which is then synchronised.
///
/// **Example**: `auto dx = lepton::cuda::to_device(x, s); // x: lepton::tensor<float, dyn, 784>`
template <class T, std::size_t... Dims> device_tensor<T, Dims...>
to_device(tensor<T, Dims...> const& host, stream const& s, caching_allocator& alloc = default_allocator()) {
  device_tensor<T, Dims...> out(host.shape(), alloc);
  detail::copy_and_wait(out.data(), host.data(), out.bytes(), cudaMemcpyHostToDevice, s);
  return out;
}

/// @brief A device tensor with the shape and values of the host view `host` (allocated from `alloc`);
///        the copy is enqueued on `s`, which is then synchronised.
///
/// **Example**: `auto first8 = lepton::cuda::to_device(x.rows(0, 8), s);`
template <class U, std::size_t... Dims> device_tensor<std::remove_const_t<U>, Dims...>
to_device(tensor_view<U, Dims...> host, stream const& s, caching_allocator& alloc = default_allocator()) {
  device_tensor<std::remove_const_t<U>, Dims...> out(host.shape(), alloc);
  detail::copy_and_wait(out.data(), host.data(), out.bytes(), cudaMemcpyHostToDevice, s);
  return out;
}

/// @brief Host to device: copies the values of `src` into `dst`, whose shape must be the same
///        (else `lepton::shape_error` naming both shapes, before any copy); `s` is then synchronised.
///
/// **Example**: `lepton::cuda::copy_into(x.view(), dx, s);`
template <class U, class T, std::size_t... Dims>
  requires std::same_as<std::remove_const_t<U>, T>
void copy_into(tensor_view<U, Dims...> src, device_tensor<T, Dims...>& dst, stream const& s) {
  detail::check_same_shape(src.shape(), dst.shape(), "cuda::copy_into (host to device)");
  detail::copy_and_wait(dst.data(), src.data(), dst.bytes(), cudaMemcpyHostToDevice, s);
}

/// @brief Host to device: copies the values of `src` into `dst` (same shape, else `lepton::shape_error`);
///        `s` is then synchronised.
///
/// **Example**: `lepton::cuda::copy_into(x, dx, s); // reuse dx's memory for the next batch`
template <class T, std::size_t... Dims>
void copy_into(tensor<T, Dims...> const& src, device_tensor<T, Dims...>& dst, stream const& s) {
  copy_into(src.view(), dst, s);
}

/// @brief Device to host: copies the values of `src` into the host view `dst` (same shape, else
///        `lepton::shape_error` naming both shapes); `s` is then synchronised.
///
/// **Example**: `lepton::cuda::copy_into(dy, y.rows(0, 8), s);`
template <class T, std::size_t... Dims>
void copy_into(device_tensor<T, Dims...> const& src, tensor_view<T, Dims...> dst, stream const& s) {
  detail::check_same_shape(src.shape(), dst.shape(), "cuda::copy_into (device to host)");
  detail::copy_and_wait(dst.data(), src.data(), src.bytes(), cudaMemcpyDeviceToHost, s);
}

/// @brief Device to host: copies the values of `src` into `dst` (same shape, else `lepton::shape_error`);
///        `s` is then synchronised.
///
/// **Example**: `lepton::cuda::copy_into(dy, y, s); // y: lepton::tensor<float, dyn, 10>`
template <class T, std::size_t... Dims>
void copy_into(device_tensor<T, Dims...> const& src, tensor<T, Dims...>& dst, stream const& s) {
  copy_into(src, dst.view(), s);
}

/// @brief Device to device: copies the values of `src` into `dst` (same shape, else `lepton::shape_error`),
///        enqueued on `s` without waiting.
///
/// **Example**: `lepton::cuda::copy_into(dx, dx_backup, s);`
template <class T, std::size_t... Dims>
void copy_into(device_tensor<T, Dims...> const& src, device_tensor<T, Dims...>& dst, stream const& s) {
  detail::check_same_shape(src.shape(), dst.shape(), "cuda::copy_into (device to device)");
  if (src.size() != 0)
    LEPTON_CUDA_CHECK(
        cudaMemcpyAsync(dst.data(), src.data(), src.bytes(), cudaMemcpyDeviceToDevice, s.get()));
}

} // namespace lepton::cuda
