// The NCCL path of lepton::dist against the MPI path: each rank holds its own gradients, weighted by
// its share of an uneven global batch; nccl_communicator::reduce_gradients on the device must give
// what the host path gives (the same weighting, then the sum in rank order): bit for bit with 1 or
// 2 ranks (x0 + x1 has one rounding whatever the algorithm), within 1e-6 relative with more.
// Run under mpirun (ctest: 1 and 2 ranks). Without a usable GPU on any rank, every rank exits 77
// (ctest: skipped) after checking that the program built and MPI works.
#include <lepton/cuda.cuh>
#include <lepton/dist.hpp>
#include <lepton/lepton.hpp>

#include <lepton/cuda/nccl.cuh>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <span>
#include <vector>

namespace {

namespace ld = lepton::dist;
namespace lc = lepton::cuda;

int run(ld::communicator const& c, int devices) {
  LEPTON_CUDA_CHECK(cudaSetDevice(c.rank() % devices));
  lc::nccl_communicator nc(c);
  lc::stream s;
  int failures = 0;
  int const N = c.size();
  // An uneven global batch of 99 samples: rank r's share, as shard_batch::weight() gives it.
  std::size_t const B = 99, mine = B / std::size_t(N) + (std::size_t(c.rank()) < B % std::size_t(N) ? 1 : 0);
  double const weight = double(mine) / double(B);
  for (std::size_t n : {std::size_t{1}, std::size_t{1000}, std::size_t{235146}}) {
    std::vector<float> g(n);
    for (std::size_t i = 0; i < n; ++i)
      g[i] = float(std::sin(0.37 * double(i) + 1.3 * c.rank()) * std::pow(10.0, double(i % 7) - 3));
    // The MPI path's arithmetic: g * w in float, then the sum in rank order.
    std::vector<float> want(n);
    float const w = float(weight);
    for (std::size_t i = 0; i < n; ++i) want[i] = g[i] * w;
    ld::ordered_sum(c, std::span<float>(want));
    // The NCCL path.
    float* d = nullptr;
    LEPTON_CUDA_CHECK(cudaMalloc(&d, n * sizeof(float)));
    LEPTON_CUDA_CHECK(cudaMemcpy(d, g.data(), n * sizeof(float), cudaMemcpyHostToDevice));
    nc.reduce_gradients(d, n, weight, s);
    std::vector<float> got(n);
    LEPTON_CUDA_CHECK(cudaMemcpy(got.data(), d, n * sizeof(float), cudaMemcpyDeviceToHost));
    LEPTON_CUDA_CHECK(cudaFree(d));
    std::size_t differing = 0, beyond = 0;
    for (std::size_t i = 0; i < n; ++i) {
      differing += std::memcmp(&got[i], &want[i], sizeof(float)) != 0;
      beyond += !(std::abs(double(got[i]) - double(want[i])) <= 1e-6 * std::abs(double(want[i])) + 1e-30);
    }
    bool const ok = N <= 2 ? differing == 0 : beyond == 0;
    std::printf("rank %d: n=%zu: %zu differing, %zu beyond 1e-6 relative: %s\n", c.rank(), n, differing,
                beyond, ok ? "ok" : "FAILED");
    failures += !ok;
  }
  return ld::all_ranks(c, failures == 0) ? 0 : 1;
}

} // namespace

int main(int argc, char** argv) {
  ld::environment env(argc, argv);
  auto& c = env.world();
  int const devices = lc::device_count();
  if (!ld::all_ranks(c, devices > 0)) {
    if (c.is_root()) std::printf("cuda nccl: %d rank(s), no usable GPU on some rank: skipped\n", c.size());
    return 77;
  }
  return ld::run_or_abort([&] { return run(c, devices); });
}
