// The CUDA consumer check: lepton's host headers and <lepton/cuda.cuh> compiled by nvcc (-std=c++20),
// linked against cudart/cuBLAS only. Exits 77 (ctest: skipped) when no device is usable; otherwise
// runs a kernel built from a LEPTON_HD functor and compares with the same functor on the host.
#include <lepton/cuda.cuh>
#include <lepton/lepton.hpp>

#include <cstdio>
#include <string>

namespace {

int failures = 0;
void expect(bool ok, char const* what) {
  if (!ok) {
    std::fprintf(stderr, "cuda smoke: FAILED: %s\n", what);
    ++failures;
  }
}

struct axpy {
  float a;
  template <class T> LEPTON_HD T operator()(T x, T y) const { return a * x + y; }
};

__global__ void axpy_kernel(axpy f, float const* x, float* y, int n) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < n; i += gridDim.x * blockDim.x)
    y[i] = f(x[i], y[i]);
}

} // namespace

int main() {
  // LEPTON_CUDA_CHECK works without a device: the error text comes from the runtime library.
  try {
    LEPTON_CUDA_CHECK(cudaErrorInvalidValue);
    expect(false, "LEPTON_CUDA_CHECK(cudaErrorInvalidValue) did not throw");
  } catch (lepton::device_error const& e) {
    std::string what = e.what();
    expect(what.find("lepton: cudaErrorInvalidValue") == 0, "device_error names the CUDA error");
    expect(what.find("smoke.cu:") != std::string::npos, "device_error names file and line");
  }

  int const devices = lepton::cuda::device_count();
  if (devices == 0) {
    try {
      lepton::cuda::require_device();
      expect(false, "require_device() did not throw with 0 devices");
    } catch (lepton::device_error const& e) {
      std::printf("cuda smoke: %s -> skipped\n", e.what());
      expect(std::string(e.what()).find("lepton: no CUDA device: ") == 0, "require_device() message");
    }
    return failures == 0 ? 77 : 1;
  }
  lepton::cuda::require_device();

  constexpr int n = 1000;
  lepton::tensor<float, lepton::dyn> x(n), y(n); // (n,)
  for (int i = 0; i < n; ++i) {
    x(i) = static_cast<float>(i);
    y(i) = 1.0f;
  }
  axpy f{2.0f};
  float *dx = nullptr, *dy = nullptr;
  LEPTON_CUDA_CHECK(cudaMalloc(&dx, n * sizeof(float)));
  LEPTON_CUDA_CHECK(cudaMalloc(&dy, n * sizeof(float)));
  LEPTON_CUDA_CHECK(cudaMemcpy(dx, x.data(), n * sizeof(float), cudaMemcpyHostToDevice));
  LEPTON_CUDA_CHECK(cudaMemcpy(dy, y.data(), n * sizeof(float), cudaMemcpyHostToDevice));
  axpy_kernel<<<4, 128>>>(f, dx, dy, n);
  LEPTON_CUDA_CHECK(cudaGetLastError());
  lepton::tensor<float, lepton::dyn> out(n);
  LEPTON_CUDA_CHECK(cudaMemcpy(out.data(), dy, n * sizeof(float), cudaMemcpyDeviceToHost));
  LEPTON_CUDA_CHECK(cudaFree(dx));
  LEPTON_CUDA_CHECK(cudaFree(dy));

  int wrong = 0;
  for (int i = 0; i < n; ++i) wrong += out(i) != f(x(i), y(i)); // exact: small integers, FMA or not
  expect(wrong == 0, "kernel result equals the host functor");

  // A failing call throws, names the error, and leaves no sticky error behind.
  try {
    LEPTON_CUDA_CHECK(cudaSetDevice(devices + 7));
    expect(false, "cudaSetDevice(out of range) did not throw");
  } catch (lepton::device_error const& e) {
    expect(std::string(e.what()).find("cudaErrorInvalidDevice") != std::string::npos,
           "invalid device message");
  }
  expect(cudaGetLastError() == cudaSuccess, "error state cleared after LEPTON_CUDA_CHECK threw");

  std::printf("cuda smoke: %d device(s), %s\n", devices, failures == 0 ? "ok" : "FAILED");
  return failures == 0 ? 0 : 1;
}
