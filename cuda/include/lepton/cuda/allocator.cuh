#pragma once
/// @file allocator.cuh
/// @brief `lepton::cuda::caching_allocator` (a caching device allocator), the process-wide
///        `lepton::cuda::default_allocator()`, and `lepton::cuda::thrust_allocator<T>`, an adaptor that lets
///        Thrust take its temporary storage from the cache. Include from .cu files only (through
///        <lepton/cuda.cuh>).

#include <cuda_runtime.h>

#include <cstddef>
#include <limits>
#include <map>
#include <mutex>
#include <new>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include <lepton/core/error.hpp>
#include <lepton/cuda/device.cuh>

namespace lepton::cuda {

namespace detail {

/// Makes `device` current for the guard's lifetime, then restores the previous device.
class current_device_guard {
public:
  explicit current_device_guard(int device) {
    LEPTON_CUDA_CHECK(cudaGetDevice(&m_previous));
    if (m_previous != device) LEPTON_CUDA_CHECK(cudaSetDevice(device));
  }
  ~current_device_guard() {
    int now = m_previous;
    if (cudaGetDevice(&now) != cudaSuccess || (now != m_previous && cudaSetDevice(m_previous) != cudaSuccess))
      (void)cudaGetLastError();
  }
  current_device_guard(current_device_guard const&) = delete;
  current_device_guard& operator=(current_device_guard const&) = delete;

private:
  int m_previous = 0;
};

} // namespace detail

/// @brief A thread-safe caching allocator of device memory: freed blocks are kept in per-device free
///        lists and handed out again, so that steady-state code does not call `cudaMalloc`/`cudaFree`.
///
/// Requests are rounded up to a size class (`size_class`): multiples of 512 B up to 1 MiB, multiples of
/// 2 MiB above. A request is served from a cached block of exactly its class on the current device (a
/// *hit*), or else by one `cudaMalloc` of the class size. Blocks are `cudaMalloc` allocations of their
/// own, so every pointer is at least 256-byte aligned.
///
/// **Reuse is not stream-ordered.** `deallocate` returns a block to the cache at once, and the next
/// `allocate` of that class (from any stream, any thread) may receive it. Callers therefore synchronise:
/// deallocate a block only once the work that uses it has completed (`stream::synchronize()`), or only
/// ever use the allocator's blocks from one stream, in whose order reuse is safe.
///
/// When `cudaMalloc` reports `cudaErrorMemoryAllocation`, the allocator clears that error, frees every
/// cached block (`release_cached`) and retries once; if the retry fails too it throws
/// `lepton::device_error` naming the requested bytes and the bytes in use and cached. Out-of-memory is
/// not a sticky CUDA error: later (smaller) allocations work.
///
/// Destroying the allocator frees its cached blocks; blocks still in use are not freed (their owners
/// outlive the allocator; the driver reclaims them at process exit).
///
/// **Example**:
/// ```
/// lepton::cuda::caching_allocator alloc;
/// void* p = alloc.allocate(1000);        // cudaMalloc(1024)
/// alloc.deallocate(p);                   // cached, not freed
/// void* q = alloc.allocate(700);         // same class: a hit, q == p, no cudaMalloc
/// alloc.deallocate(q);
/// alloc.release_cached();                // cudaFree of the cached block
/// ```
class caching_allocator {
public:
  /// @brief Counters of one allocator, summed over all devices.
  ///
  /// **Example**: `auto st = alloc.stats(); std::printf("%zu hits\n", st.hits);`
  struct statistics {
    /// Bytes (rounded to size classes) of the blocks handed out and not yet deallocated.
    std::size_t bytes_in_use = 0;
    /// Bytes (rounded to size classes) of the blocks held in the free lists.
    std::size_t bytes_cached = 0;
    /// Calls made to `cudaMalloc`, failed ones included (an out-of-memory retry counts twice).
    std::size_t cuda_malloc_calls = 0;
    /// Allocations served from the cache.
    std::size_t hits = 0;
  };

  /// @brief The size class of a request: `bytes` rounded up to a multiple of 512 B when `bytes <= 1 MiB`,
  ///        to a multiple of 2 MiB above; 0 for 0. Throws `lepton::device_error` when the rounded size
  ///        does not fit in `std::size_t`.
  ///
  /// **Example**: `caching_allocator::size_class(513) == 1024; size_class((1 << 20) + 1) == 2 << 20;`
  static std::size_t size_class(std::size_t bytes) {
    constexpr std::size_t small_step = 512, large_step = std::size_t{2} << 20;
    if (bytes <= small_limit) return round_up(bytes, small_step);
    if (bytes > std::numeric_limits<std::size_t>::max() - (large_step - 1))
      throw device_error("cuda::caching_allocator: cannot allocate " + std::to_string(bytes) +
                         " bytes (larger than any device memory)");
    return round_up(bytes, large_step);
  }

  /// @brief Creates an empty cache; allocates nothing and calls no CUDA function.
  ///
  /// **Example**: `lepton::cuda::caching_allocator alloc;`
  caching_allocator() = default;

  caching_allocator(caching_allocator const&) = delete;
  caching_allocator& operator=(caching_allocator const&) = delete;

  /// @brief Frees the cached blocks; errors are dropped (destructors do not throw). Blocks still in use
  ///        are left allocated.
  ~caching_allocator() {
    try {
      release_cached();
    } catch (...) {
      (void)cudaGetLastError();
    }
  }

  /// @brief At least `bytes` bytes of memory on the current device, 256-byte aligned; `nullptr` for 0
  ///        bytes (without calling CUDA). Throws `lepton::device_error` when no memory can be had (see the
  ///        class description) or a CUDA call fails.
  ///
  /// **Example**: `float* p = static_cast<float*>(alloc.allocate(n * sizeof(float)));`
  void* allocate(std::size_t bytes) {
    if (bytes == 0) return nullptr;
    std::size_t const size = size_class(bytes);
    int device = 0;
    LEPTON_CUDA_CHECK(cudaGetDevice(&device));

    std::lock_guard<std::mutex> lock(m_mutex);
    if (auto it = m_free.find({device, size}); it != m_free.end() && !it->second.empty()) {
      void* p = it->second.back();
      it->second.pop_back();
      try {
        m_in_use.emplace(p, block{device, size});
      } catch (...) {
        it->second.push_back(p); // cannot reallocate: capacity is unchanged since pop_back
        throw;
      }
      ++m_stats.hits;
      m_stats.bytes_cached -= size;
      m_stats.bytes_in_use += size;
      return p;
    }

    void* p = malloc_locked(size, bytes, device);
    try {
      m_in_use.emplace(p, block{device, size});
    } catch (...) {
      (void)cudaFree(p);
      (void)cudaGetLastError();
      throw;
    }
    m_stats.bytes_in_use += size;
    return p;
  }

  /// @brief Returns a block from `allocate` to the cache (it is not freed). `nullptr` is ignored. The
  ///        work using the block must have completed (see the class description). Throws
  ///        `lepton::value_error` for a pointer this allocator did not hand out, or one already returned.
  ///
  /// **Example**: `alloc.deallocate(p);`
  void deallocate(void* p) {
    if (p == nullptr) return;
    std::lock_guard<std::mutex> lock(m_mutex);
    auto it = m_in_use.find(p);
    if (it == m_in_use.end())
      throw value_error(
          "cuda::caching_allocator::deallocate: the pointer was not allocated by this allocator, "
          "or was deallocated already");
    block const b = it->second;
    m_in_use.erase(it);
    m_stats.bytes_in_use -= b.size;
    try {
      m_free[{b.device, b.size}].push_back(p);
      m_stats.bytes_cached += b.size;
    } catch (...) { // no memory for the free list: free the block instead of caching it
      try {
        detail::current_device_guard guard(b.device);
        if (cudaFree(p) != cudaSuccess) (void)cudaGetLastError();
      } catch (device_error const&) { // the device cannot be selected: the block is lost, not corrupted
      }
    }
  }

  /// @brief Frees (`cudaFree`) every cached block on every device; blocks in use are untouched. Throws
  ///        `lepton::device_error` if `cudaFree` fails (the block is dropped from the cache regardless).
  ///
  /// **Example**: `alloc.release_cached(); // alloc.stats().bytes_cached == 0`
  void release_cached() {
    std::lock_guard<std::mutex> lock(m_mutex);
    release_cached_locked();
  }

  /// @brief A snapshot of the counters.
  ///
  /// **Example**: `std::size_t before = alloc.stats().cuda_malloc_calls;`
  statistics stats() const {
    std::lock_guard<std::mutex> lock(m_mutex);
    return m_stats;
  }

private:
  static constexpr std::size_t small_limit = std::size_t{1} << 20;

  struct block {
    int device;
    std::size_t size; // the size class
  };

  static constexpr std::size_t round_up(std::size_t n, std::size_t step) noexcept {
    return (n + step - 1) / step * step;
  }

  // Called with m_mutex held. `requested` is only used in the error message.
  void* malloc_locked(std::size_t size, std::size_t requested, int device) {
    void* p = nullptr;
    ++m_stats.cuda_malloc_calls;
    cudaError_t err = cudaMalloc(&p, size);
    if (err == cudaErrorMemoryAllocation) {
      (void)cudaGetLastError();
      std::size_t const cached_before = m_stats.bytes_cached;
      release_cached_locked();
      ++m_stats.cuda_malloc_calls;
      err = cudaMalloc(&p, size);
      if (err == cudaErrorMemoryAllocation) {
        (void)cudaGetLastError();
        throw device_error("cuda::caching_allocator: out of memory on device " + std::to_string(device) +
                           " allocating " + std::to_string(requested) + " bytes (size class " +
                           std::to_string(size) + "); " + std::to_string(m_stats.bytes_in_use) +
                           " bytes in use, " + std::to_string(cached_before) +
                           " bytes were cached and have been released before retrying");
      }
    }
    cuda::detail::check(err, "cudaMalloc(&p, size)", __FILE__, __LINE__);
    return p;
  }

  void release_cached_locked() {
    for (auto it = m_free.begin(); it != m_free.end(); it = m_free.erase(it)) {
      auto& [key, blocks] = *it;
      if (blocks.empty()) continue;
      detail::current_device_guard guard(key.first);
      while (!blocks.empty()) {
        void* p = blocks.back();
        blocks.pop_back();
        m_stats.bytes_cached -= key.second;
        LEPTON_CUDA_CHECK(cudaFree(p));
      }
    }
  }

  mutable std::mutex m_mutex;
  std::map<std::pair<int, std::size_t>, std::vector<void*>> m_free; // (device, size class) -> blocks
  std::unordered_map<void*, block> m_in_use;
  statistics m_stats;
};

/// @brief The process-wide allocator that device tensors use unless given another. Created on first use;
///        deliberately never destroyed (static destruction may run after the CUDA runtime has shut
///        down), so its blocks are reclaimed by the driver at process exit.
///
/// **Example**: `auto in_use = lepton::cuda::default_allocator().stats().bytes_in_use;`
inline caching_allocator& default_allocator() {
  static caching_allocator* const instance = new caching_allocator();
  return *instance;
}

/// @brief A standard-style allocator of `T` on top of a `caching_allocator`, for Thrust: pass it to
///        `thrust::cuda::par(alloc)` and Thrust takes its temporary storage from the cache instead of
///        calling `cudaMalloc`/`cudaFree` on every algorithm call.
///
/// Copies (and rebound copies) share the same `caching_allocator`, which must outlive them. The
/// reuse rule of `caching_allocator` applies: with `thrust::cuda::par` (not `par_nosync`) Thrust
/// synchronises the stream before an algorithm returns, so its temporaries are idle when given back.
/// @tparam T  element type (Thrust asks for `char`-sized storage; any type works)
///
/// **Example**:
/// ```
/// lepton::cuda::stream s;
/// lepton::cuda::thrust_allocator<char> alloc;                      // uses default_allocator()
/// double sum = thrust::reduce(thrust::cuda::par(alloc).on(s.get()), p, p + n, 0.0);
/// ```
template <class T> class thrust_allocator {
public:
  /// The element type allocated.
  using value_type = T;

  /// @brief An adaptor of `default_allocator()`.
  ///
  /// **Example**: `lepton::cuda::thrust_allocator<char> a;`
  thrust_allocator() : m_resource(&default_allocator()) {}

  /// @brief An adaptor of `resource`, which must outlive the adaptor and its copies.
  ///
  /// **Example**: `lepton::cuda::caching_allocator cache; lepton::cuda::thrust_allocator<char> a(cache);`
  explicit thrust_allocator(caching_allocator& resource) noexcept : m_resource(&resource) {}

  /// @brief The same cache, for another element type (allocator rebinding).
  ///
  /// **Example**: `lepton::cuda::thrust_allocator<float> f(a); // a: thrust_allocator<char>`
  template <class U> thrust_allocator(thrust_allocator<U> const& other) noexcept
      : m_resource(other.resource()) {}

  /// @brief Device memory for `n` objects of `T` (uninitialised); `nullptr` for 0. Throws
  ///        `std::bad_array_new_length` when `n * sizeof(T)` overflows, `lepton::device_error` when the
  ///        cache cannot allocate.
  ///
  /// **Example**: `char* p = a.allocate(4096);`
  T* allocate(std::size_t n) {
    if (n > std::numeric_limits<std::size_t>::max() / sizeof(T)) throw std::bad_array_new_length();
    return static_cast<T*>(m_resource->allocate(n * sizeof(T)));
  }

  /// @brief Gives memory from `allocate` back to the cache; `n` is unused (the cache knows the size).
  ///
  /// **Example**: `a.deallocate(p, 4096);`
  void deallocate(T* p, std::size_t n) {
    (void)n;
    m_resource->deallocate(p);
  }

  /// @brief The `caching_allocator` this adaptor uses.
  ///
  /// **Example**: `auto hits = a.resource()->stats().hits;`
  caching_allocator* resource() const noexcept { return m_resource; }

  /// @brief Adaptors are equal when they use the same cache (then one can free what the other allocated).
  ///
  /// **Example**: `assert(lepton::cuda::thrust_allocator<char>{} == lepton::cuda::thrust_allocator<int>{});`
  template <class U> bool operator==(thrust_allocator<U> const& other) const noexcept {
    return m_resource == other.resource();
  }

private:
  caching_allocator* m_resource;
};

} // namespace lepton::cuda
