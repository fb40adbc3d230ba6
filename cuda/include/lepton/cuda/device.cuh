#pragma once
/// @file device.cuh
/// @brief CUDA error checking and device discovery: `LEPTON_CUDA_CHECK`, `lepton::cuda::device_count`,
///        `lepton::cuda::require_device`. Include from .cu files only (through <lepton/cuda.cuh>).

#include <cuda_runtime.h>

#include <string>

#include <lepton/core/error.hpp>

namespace lepton::cuda::detail {

/// Throws lepton::device_error naming the CUDA error, the failed expression and where it was checked.
/// Clears the runtime's last-error state first, so that a later cudaGetLastError() does not report
/// the same (non-sticky) error again.
inline void throw_cuda_error(cudaError_t err, char const* expr, char const* file, int line) {
  (void)cudaGetLastError();
  throw device_error(std::string(cudaGetErrorName(err)) + " (" + cudaGetErrorString(err) + ") in `" + expr +
                     "` at " + file + ":" + std::to_string(line));
}

inline void check(cudaError_t err, char const* expr, char const* file, int line) {
  if (err != cudaSuccess) throw_cuda_error(err, expr, file, line);
}

} // namespace lepton::cuda::detail

/// @brief Evaluates a CUDA runtime call and throws `lepton::device_error` if it did not return
///        `cudaSuccess`; the message names the error (`cudaErrorMemoryAllocation (out of memory)`),
///        the expression, the file and the line.
///
/// **Example**: `LEPTON_CUDA_CHECK(cudaMalloc(&p, bytes));`
#define LEPTON_CUDA_CHECK(expr) ::lepton::cuda::detail::check((expr), #expr, __FILE__, __LINE__)

namespace lepton::cuda {

/// @brief The number of CUDA devices this process can use; 0 when there is no device or no (recent
///        enough) driver. Any other failure of the runtime throws `lepton::device_error`.
///
/// Never links the driver API: a binary that calls this starts, and reports 0, on a machine without a
/// GPU driver. **Example**: `if (lepton::cuda::device_count() == 0) return 77; // ctest: skipped`
inline int device_count() {
  int n = 0;
  // On error the runtime leaves the count unwritten: the return code decides.
  cudaError_t err = cudaGetDeviceCount(&n);
  if (err == cudaErrorNoDevice || err == cudaErrorInsufficientDriver) {
    (void)cudaGetLastError();
    return 0;
  }
  LEPTON_CUDA_CHECK(err);
  return n;
}

/// @brief Throws `lepton::device_error("no CUDA device: <reason>")` unless at least one device is usable.
inline void require_device() {
  int n = 0;
  cudaError_t err = cudaGetDeviceCount(&n);
  if (err != cudaSuccess) {
    (void)cudaGetLastError();
    throw device_error(std::string("no CUDA device: ") + cudaGetErrorName(err) + " (" +
                       cudaGetErrorString(err) + ")");
  }
  if (n <= 0) throw device_error("no CUDA device: cudaGetDeviceCount found 0 devices");
}

} // namespace lepton::cuda
