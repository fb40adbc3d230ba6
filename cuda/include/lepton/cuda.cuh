#pragma once
/// @file cuda.cuh
/// @brief lepton's CUDA backend, for .cu files compiled by nvcc (link the `lepton::cuda` target).
///        So far its foundation: error checking and devices, streams, a caching device allocator (with a
///        Thrust adaptor) and device tensors; see docs/cuda.md for what is not built yet.
///
/// **Example**:
/// ```
/// #include <lepton/lepton.hpp>
/// #include <lepton/cuda.cuh>
/// int main() {
///   lepton::cuda::require_device();
///   lepton::cuda::stream s;
///   lepton::tensor<float, lepton::dyn> x(1000);
///   auto dx = lepton::cuda::to_device(x, s);  // device_tensor<float, lepton::dyn>
///   dx.fill(1.0f, s);
///   x = dx.to_host(s);
/// }
/// ```

#include <lepton/cuda/allocator.cuh>
#include <lepton/cuda/device.cuh>
#include <lepton/cuda/device_tensor.cuh>
#include <lepton/cuda/stream.cuh>
