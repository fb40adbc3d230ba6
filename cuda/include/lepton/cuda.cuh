#pragma once
/// @file cuda.cuh
/// @brief lepton's CUDA backend, for .cu files compiled by nvcc (link the `lepton::cuda` target).
///
/// **Example**:
/// ```
/// #include <lepton/lepton.hpp>
/// #include <lepton/cuda.cuh>
/// int main() { lepton::cuda::require_device(); }
/// ```

#include <lepton/cuda/device.cuh>
