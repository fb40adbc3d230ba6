#pragma once
/// @file stream.cuh
/// @brief `lepton::cuda::stream`: an owning, move-only CUDA stream. Include from .cu files only
///        (through <lepton/cuda.cuh>).

#include <cuda_runtime.h>

#include <utility>

#include <lepton/core/error.hpp>
#include <lepton/cuda/device.cuh>

namespace lepton::cuda {

/// @brief An owning CUDA stream, created non-blocking (`cudaStreamNonBlocking`: it does not
///        synchronise with the legacy default stream) on the device current at construction.
///
/// Move-only; the destructor destroys the stream (work already enqueued still completes, see
/// `cudaStreamDestroy`). Every CUDA call is checked: failures throw `lepton::device_error`, and creating
/// a stream on a machine without a usable device or driver throws too. A moved-from stream owns nothing:
/// `get()` returns `nullptr` (which CUDA reads as the legacy default stream) and `synchronize()` throws.
///
/// **Example**:
/// ```
/// lepton::cuda::stream s;                 // throws lepton::device_error without a device
/// my_kernel<<<grid, block, 0, s.get()>>>(/*...*/);
/// s.synchronize();                        // waits for the kernel, reports its errors
/// ```
class stream {
public:
  /// @brief Creates a non-blocking stream on the current device; throws `lepton::device_error` on failure.
  ///
  /// **Example**: `lepton::cuda::stream s;`
  stream() { LEPTON_CUDA_CHECK(cudaStreamCreateWithFlags(&m_stream, cudaStreamNonBlocking)); }

  /// @brief Destroys the stream (a moved-from stream has nothing to destroy). Never throws: an error
  ///        from `cudaStreamDestroy` is cleared and dropped.
  ~stream() { reset(); }

  stream(stream const&) = delete;
  stream& operator=(stream const&) = delete;

  /// @brief Takes over `other`'s stream; `other` then owns nothing.
  ///
  /// **Example**: `lepton::cuda::stream a; lepton::cuda::stream b = std::move(a); // a.get() == nullptr`
  stream(stream&& other) noexcept : m_stream(std::exchange(other.m_stream, nullptr)) {}

  /// @brief Destroys the stream held, then takes over `other`'s.
  ///
  /// **Example**: `a = std::move(b); // a's old stream is destroyed`
  stream& operator=(stream&& other) noexcept {
    if (this != &other) {
      reset();
      m_stream = std::exchange(other.m_stream, nullptr);
    }
    return *this;
  }

  /// @brief Blocks until all work enqueued on the stream has completed; throws `lepton::device_error`
  ///        if that work failed (for example a kernel fault) or if the stream was moved from.
  ///
  /// **Example**: `s.synchronize();`
  void synchronize() const {
    if (m_stream == nullptr) throw device_error("cuda::stream::synchronize: the stream was moved from");
    LEPTON_CUDA_CHECK(cudaStreamSynchronize(m_stream));
  }

  /// @brief The CUDA handle, for kernel launches and runtime calls; `nullptr` after a move.
  ///
  /// **Example**: `cudaMemsetAsync(p, 0, bytes, s.get());`
  cudaStream_t get() const noexcept { return m_stream; }

private:
  void reset() noexcept {
    if (m_stream != nullptr) {
      if (cudaStreamDestroy(m_stream) != cudaSuccess) (void)cudaGetLastError();
      m_stream = nullptr;
    }
  }

  cudaStream_t m_stream = nullptr;
};

} // namespace lepton::cuda
