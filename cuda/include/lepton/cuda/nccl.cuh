#pragma once
/// @file nccl.cuh
/// @brief The NCCL path of lepton::dist: `lepton::cuda::nccl_communicator`, an NCCL communicator
///        over the ranks of a `lepton::dist::communicator`, and `nccl_communicator::reduce_gradients`,
///        the data-parallel gradient all-reduce of a flat device buffer. Include from .cu files of
///        a target linked with `lepton::nccl` (CUDA + MPI + NCCL), after <lepton/dist.hpp>.
///
/// MPI stays the launcher and the control plane (ranks, the NCCL unique id, timeouts); NCCL moves
/// the gradients between GPUs (NVLink / PCIe / network). Every wait is bounded like the MPI path's:
/// a collective that does not finish within the communicator's timeout, or an NCCL asynchronous
/// error, aborts the NCCL communicator and ends the job with a message naming the operation.

#include <nccl.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdio>
#include <string>
#include <thread>
#include <type_traits>

#include <lepton/cuda/device.cuh>
#include <lepton/cuda/stream.cuh>
#include <lepton/dist/environment.hpp>

namespace lepton::cuda {

namespace detail {

/// Throws lepton::dist::dist_error naming the NCCL call and NCCL's error string.
inline void nccl_check(ncclResult_t r, char const* what) {
  if (r != ncclSuccess && r != ncclInProgress)
    throw lepton::dist::dist_error(std::string("nccl: ") + what + " failed: " + ncclGetErrorString(r));
}

template <class T> constexpr ncclDataType_t nccl_type() {
  if constexpr (std::is_same_v<T, float>)
    return ncclFloat32;
  else if constexpr (std::is_same_v<T, double>)
    return ncclFloat64;
  else
    static_assert(sizeof(T) == 0, "lepton::cuda::nccl_communicator: float or double gradients");
}

/// buf[i] *= w on the device (the rank's share of the global batch), grid-stride.
template <class T> __global__ void scale_kernel(T* __restrict__ buf, std::size_t n, T w) {
  std::size_t const stride = static_cast<std::size_t>(gridDim.x) * blockDim.x;
  for (std::size_t i = static_cast<std::size_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += stride)
    buf[i] *= w;
}

} // namespace detail

/// @brief An NCCL communicator spanning the ranks of a lepton::dist communicator, on each rank's
///        current CUDA device. Collective construction; move-only.
///
/// Rank 0 creates the NCCL unique id, MPI broadcasts it (under the communicator's timeout), every
/// rank joins with `ncclCommInitRank`. Several ranks may share one GPU (NCCL then uses its
/// intra-device path). The destructor destroys the communicator; after a failure it is aborted.
///
/// **Example**:
/// ```
/// lepton::dist::environment env(argc, argv);
/// LEPTON_CUDA_CHECK(cudaSetDevice(env.rank() % lepton::cuda::device_count())); // one GPU per rank
/// lepton::cuda::nccl_communicator nc(env.world());
/// lepton::cuda::stream s;
/// nc.reduce_gradients(grads_on_device, n, shard.weight(), s); // every rank: sum_r w_r g_r
/// ```
class nccl_communicator {
public:
  explicit nccl_communicator(lepton::dist::communicator const& c) : m_mpi(&c) {
    ncclUniqueId id{};
    if (c.rank() == 0) detail::nccl_check(ncclGetUniqueId(&id), "ncclGetUniqueId");
    MPI_Request req = MPI_REQUEST_NULL;
    lepton::dist::detail::check(MPI_Ibcast(&id, int(sizeof id), MPI_BYTE, 0, c.get(), &req),
                                "MPI_Ibcast(NCCL unique id)");
    lepton::dist::detail::wait_one(c, req, "NCCL unique id broadcast");
    detail::nccl_check(ncclCommInitRank(&m_comm, c.size(), id, c.rank()), "ncclCommInitRank");
  }
  nccl_communicator(nccl_communicator const&) = delete;
  nccl_communicator& operator=(nccl_communicator const&) = delete;
  nccl_communicator(nccl_communicator&& o) noexcept : m_mpi(o.m_mpi), m_comm(o.m_comm), m_failed(o.m_failed) {
    o.m_comm = nullptr;
  }
  nccl_communicator& operator=(nccl_communicator&& o) noexcept {
    if (this != &o) {
      release();
      m_mpi = o.m_mpi;
      m_comm = o.m_comm;
      m_failed = o.m_failed;
      o.m_comm = nullptr;
    }
    return *this;
  }
  ~nccl_communicator() { release(); }

  /// @brief This rank and the number of ranks (those of the MPI communicator).
  int rank() const noexcept { return m_mpi->rank(); }
  int size() const noexcept { return m_mpi->size(); }
  /// @brief The NCCL handle, for calls lepton does not wrap.
  ncclComm_t get() const noexcept { return m_comm; }

  /// @brief Sums `n` elements of device memory `buf` over the ranks, in place, on stream `s`, and
  ///        waits for the result (bounded by the MPI communicator's timeout).
  ///
  /// With 2 ranks the sum is `x0 + x1` on both ranks: bit-identical to the MPI path. With more,
  /// NCCL's ring or tree fixes an association order of its own.
  template <class T> void all_reduce_sum(T* buf, std::size_t n, stream const& s) {
    if (n == 0) return;
    detail::nccl_check(ncclAllReduce(buf, buf, n, detail::nccl_type<T>(), ncclSum, m_comm, s.get()),
                       "ncclAllReduce");
    wait(s, "NCCL gradient all-reduce");
  }

  /// @brief Data-parallel gradient reduction of a flat device buffer: `grads = sum over ranks of
  ///        weight_r * grads_r`, `weight` being this rank's share of the global batch
  ///        (`shard_batch::weight()`), as `lepton::dist::grad_reducer` does on the host.
  template <class T> void reduce_gradients(T* grads, std::size_t n, double weight, stream const& s) {
    if (n == 0) return;
    if (weight != 1.0) {
      unsigned const blocks = unsigned(std::min<std::size_t>((n + 255) / 256, 4096));
      detail::scale_kernel<T><<<blocks, 256, 0, s.get()>>>(grads, n, static_cast<T>(weight));
      LEPTON_CUDA_CHECK(cudaGetLastError());
    }
    all_reduce_sum(grads, n, s);
  }

private:
  /// Polls the stream and NCCL's asynchronous error state; aborts the NCCL communicator and the
  /// job when the MPI communicator's timeout passes or NCCL reports an error.
  void wait(stream const& s, char const* what) {
    using clock = std::chrono::steady_clock;
    auto const t0 = clock::now();
    for (std::size_t polls = 0;; ++polls) {
      cudaError_t const st = cudaStreamQuery(s.get());
      if (st == cudaSuccess) return;
      if (st != cudaErrorNotReady) {
        m_failed = true;
        LEPTON_CUDA_CHECK(st);
      }
      ncclResult_t async = ncclSuccess;
      ncclCommGetAsyncError(m_comm, &async);
      if (async != ncclSuccess && async != ncclInProgress) {
        m_failed = true;
        lepton::dist::detail::abort_job(lepton::dist::detail::rank_tag() + ": " + what + ": NCCL error: " +
                                            ncclGetErrorString(async) + "; aborting the job",
                                        3);
      }
      if (polls > 1000) std::this_thread::sleep_for(std::chrono::microseconds(50));
      auto const waited = clock::now() - t0;
      if (m_mpi->timeout().count() > 0 && waited > m_mpi->timeout()) {
        m_failed = true;
        ncclCommAbort(m_comm);
        m_comm = nullptr;
        char secs[32];
        std::snprintf(secs, sizeof secs, "%g", double(m_mpi->timeout().count()) / 1000.0);
        lepton::dist::detail::abort_job(
            lepton::dist::detail::rank_tag() + ": " + what + " did not complete within " + secs +
                " s: another rank failed, exited early or is stuck; aborting the job",
            3);
      }
    }
  }
  void release() noexcept {
    if (!m_comm) return;
    if (m_failed)
      ncclCommAbort(m_comm);
    else
      ncclCommDestroy(m_comm);
    m_comm = nullptr;
  }

  lepton::dist::communicator const* m_mpi;
  ncclComm_t m_comm = nullptr;
  bool m_failed = false;
};

} // namespace lepton::cuda
