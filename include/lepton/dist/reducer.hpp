#pragma once
/// @file reducer.hpp
/// @brief `lepton::dist::grad_reducer`: the gradient all-reduce of data-parallel training, through
///        one flat fused buffer allocated once.
///
/// After `lepton::backward` each rank holds the mean-loss gradient of its shard. `reduce(w)` packs
/// every non-frozen parameter's gradient, scaled by the rank's weight `w = b_r / B` (its share of
/// the global batch), into one contiguous buffer, sums the buffers of all ranks and unpacks the
/// sum into the gradients: every rank then holds `sum_r w_r g_r`, the gradient of the global
/// batch's mean loss, and the optimizer's step is the same on every rank.
///
/// **Modes** (reducer_options::mode):
/// - `reduction::allreduce`: `MPI_Iallreduce(MPI_SUM)` in place, on the whole buffer or on buckets
///   of `bucket_bytes` each started as soon as it is packed (packing of the next bucket and
///   unpacking of finished ones overlap the transfers). Bandwidth-optimal algorithms (ring,
///   recursive doubling) chosen by MPI. With 2 ranks the sum is `g0 + g1` (floating-point addition
///   is commutative), so it is exact, the same on both ranks and deterministic; with more ranks
///   the association order is MPI's choice.
/// - `reduction::ordered`: a reduce-scatter by `MPI_Ialltoall` (rank r receives chunk r of every
///   rank), a sum in rank order `((g0 + g1) + g2) + ...` of its chunk, and an `MPI_Iallgather`.
///   It moves the same bytes as a ring all-reduce (2 (N-1)/N of the buffer per rank) and gives
///   bit-identical results on every rank and in every run for any N, whatever MPI's tuning.
///
/// - `reduction::automatic` (the default): `shared_memory` when every rank runs on this machine,
///   no buckets were asked for and the segment can be made; `allreduce` otherwise.
/// - `reduction::shared_memory`: for ranks that share one machine (checked at construction). The
///   ranks map one POSIX shared-memory segment; each packs its weighted gradient straight into its
///   own slot of it, rank r sums chunk r of every slot in rank order (the same arithmetic as
///   `ordered`, so bit-identical to it) and every rank unpacks the sums from the owners' slots.
///   No MPI call per step: two flag barriers in the segment, waited on with the communicator's
///   timeout like the MPI modes. Slots are double-buffered by step parity, so a fast rank may
///   pack step s + 1 while a slower one still unpacks step s.
///
/// Overlap with the backward pass itself is not possible yet: `lepton::backward` is one call with
/// no per-parameter completion hook, so the reduction starts when backward returns.

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <utility>

#include <fcntl.h>
#include <span>
#include <string>
#include <string_view>
#include <sys/mman.h>
#include <type_traits>
#include <unistd.h>
#include <vector>

#include "../nn/model_view.hpp"
#include "../optim/optimizer.hpp"
#include "environment.hpp"

namespace lepton::dist {

/// @brief How gradients are summed over the ranks (see the file comment).
enum class reduction {
  automatic,    ///< shared_memory when every rank runs on this machine (and no buckets), else allreduce
  allreduce,    ///< MPI_Iallreduce (whole buffer or buckets)
  ordered,      ///< reduce-scatter, sum in rank order, all-gather: bit-identical for any N
  shared_memory ///< ranks on one machine: sum in rank order through a shared segment (= ordered)
};

namespace detail {

/// Whether every rank of `c` runs on this machine (MPI_COMM_TYPE_SHARED); collective.
inline bool ranks_on_this_machine(communicator const& c, int* local_size_out = nullptr) {
  MPI_Comm local = MPI_COMM_NULL;
  check(MPI_Comm_split_type(c.get(), MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local),
        "MPI_Comm_split_type(shared memory)");
  int local_size = 0;
  MPI_Comm_size(local, &local_size);
  MPI_Comm_free(&local);
  if (local_size_out) *local_size_out = local_size;
  return local_size == c.size();
}

/// One shared-memory segment (a file in /dev/shm, or in LEPTON_DIST_SHM_DIR) mapped by every rank
/// of a communicator whose ranks all run on this machine. Collective construction; the file is
/// unlinked as soon as every rank has mapped it, so nothing is left behind even if the job is killed.
class shm_segment {
public:
  shm_segment() = default;
  shm_segment(communicator const& c, std::size_t bytes) : m_bytes(bytes) {
    int local_size = 0;
    if (!ranks_on_this_machine(c, &local_size))
      throw dist_error("dist::grad_reducer: reduction::shared_memory needs every rank on one machine (" +
                       std::to_string(local_size) + " of " + std::to_string(c.size()) +
                       " ranks share this one); use reduction::allreduce or ordered across machines");
    // A file in a memory-backed directory (what shm_open does, with the directory choosable:
    // LEPTON_DIST_SHM_DIR, default /dev/shm), created by rank 0 and opened by name on the others.
    char name[512] = {};
    std::string err;
    if (c.rank() == 0) {
      char const* dir = std::getenv("LEPTON_DIST_SHM_DIR");
      std::random_device rd;
      std::snprintf(name, sizeof name, "%s/lepton-%ld-%08x", dir && *dir ? dir : "/dev/shm", long(::getpid()),
                    unsigned(rd()));
      int const fd = ::open(name, O_CREAT | O_EXCL | O_RDWR | O_CLOEXEC, 0600);
      if (fd < 0)
        err = std::string("creating ") + name + " failed: " + std::strerror(errno);
      else {
        // posix_fallocate reserves the pages now: a /dev/shm too small for the segment (64 MiB in
        // a default Docker container) is an error here, not a SIGBUS at the first write.
        if (int const rc = ::posix_fallocate(fd, 0, off_t(bytes)); rc != 0) {
          err = "reserving " + std::to_string(bytes) + " bytes for " + name + " failed: " + std::strerror(rc);
          ::unlink(name);
        }
        ::close(fd);
      }
      if (!err.empty()) { // name[0] = 0 marks the failure; rank 0's message follows for the others
        name[0] = '\0';
        std::snprintf(name + 1, sizeof name - 1, "%s", err.c_str());
      }
    }
    MPI_Request req = MPI_REQUEST_NULL;
    check(MPI_Ibcast(name, int(sizeof name), MPI_CHAR, 0, c.get(), &req), "MPI_Ibcast(segment name)");
    wait_one(c, req, "shared-memory segment setup");
    if (name[0] != '\0') {
      int const fd = ::open(name, O_RDWR | O_CLOEXEC);
      if (fd < 0)
        err = std::string("opening ") + name + " failed: " + std::strerror(errno);
      else {
        void* p = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
        ::close(fd);
        if (p == MAP_FAILED)
          err = "mmap of " + std::to_string(bytes) + " bytes of " + name + " failed: " + std::strerror(errno);
        else
          m_ptr = p;
      }
    } else if (err.empty()) {
      err = std::string("on rank 0: ") + (name + 1);
    }
    int ok = err.empty() ? 1 : 0;
    check(MPI_Iallreduce(MPI_IN_PLACE, &ok, 1, MPI_INT, MPI_MIN, c.get(), &req),
          "MPI_Iallreduce(segment ok)");
    wait_one(c, req, "shared-memory segment setup");
    if (c.rank() == 0 && name[0] != '\0') ::unlink(name); // every rank has it mapped (or failed)
    if (!ok) {
      release();
      throw dist_error("dist::grad_reducer: shared-memory segment: " +
                       (err.empty() ? std::string("another rank failed to map it") : err));
    }
  }
  shm_segment(shm_segment const&) = delete;
  shm_segment& operator=(shm_segment const&) = delete;
  shm_segment(shm_segment&& o) noexcept : m_ptr(std::exchange(o.m_ptr, nullptr)), m_bytes(o.m_bytes) {}
  shm_segment& operator=(shm_segment&& o) noexcept {
    if (this != &o) {
      release();
      m_ptr = std::exchange(o.m_ptr, nullptr);
      m_bytes = o.m_bytes;
    }
    return *this;
  }
  ~shm_segment() { release(); }
  std::byte* data() const noexcept { return static_cast<std::byte*>(m_ptr); }

private:
  void release() noexcept {
    if (m_ptr) ::munmap(m_ptr, m_bytes);
    m_ptr = nullptr;
  }
  void* m_ptr = nullptr;
  std::size_t m_bytes = 0;
};

} // namespace detail

/// @brief Options of grad_reducer.
struct reducer_options {
  /// How to sum; `automatic` is resolved at construction (grad_reducer::options() shows the result).
  reduction mode = reduction::automatic;
  /// allreduce mode: 0 = one collective on the whole fused buffer; else buckets of about this
  /// many bytes, each its own MPI_Iallreduce started as soon as it is packed.
  std::size_t bucket_bytes = 0;
  /// Number of extra scalars that can be summed together with the gradients (reduce's `extra`),
  /// e.g. the loss, at no extra message.
  std::size_t extra = 0;
};

/// @brief Sums the ranks' weighted gradients through one fused buffer (see the file comment).
///        Allocates its buffers on construction and nothing in reduce().
/// @tparam T the parameters' element type (every parameter must have it)
///
/// **Example**:
/// ```
/// lepton::dist::grad_reducer<float> red(comm, model);
/// for (auto sh : loader.epoch(e)) {
///   lepton::backward(loss(model(sh.x), sh.y));
///   red.reduce(sh.weight());   // every rank now holds the global batch's gradient
///   opt.step();
/// }
/// ```
template <class T = float> class grad_reducer {
public:
  using value_type = T;

  /// Collects the model's parameters (allocating gradients that do not exist yet, like the
  /// optimizers do; either may be made first). The model and `c` must outlive the reducer.
  template <class Model> grad_reducer(communicator const& c, Model& model, reducer_options const& o = {})
      : m_comm(&c), m_opt(o) {
    nn::model_view const view(model, nn::gradients::allocate, nn::element<T>);
    for (auto const& p : view.parameters()) m_slots.push_back({p.grads<T>(), p.size, p.frozen});
    m_total = view.parameter_scalars();
    if (m_slots.empty()) throw value_error("dist::grad_reducer: the model has no parameters");
    std::size_t const n = std::size_t(c.size());
    std::size_t const cap = m_total + o.extra;
    detail::mpi_count(cap, "grad_reducer");
    std::size_t const chunk = (cap + n - 1) / n;
    // Per rank in a shared segment: a 128-byte control block (two step counters on their own cache
    // lines), then two slots of chunk * n elements (step parity), each 64-byte aligned.
    auto make_segment = [&] {
      m_slot_elems = (chunk * n * sizeof(T) + 63) / 64 * 64 / sizeof(T);
      m_shm = detail::shm_segment(c, n * shm_ctrl_bytes + 2 * n * m_slot_elems * sizeof(T));
    };
    if (m_opt.mode == reduction::automatic) {
      // Every rank takes the same branch: ranks_on_this_machine and the segment's construction
      // are collective and agree on their outcome (a failure to create or map the segment on any
      // rank throws on every rank).
      m_opt.mode = reduction::allreduce;
      if (c.distributed() && m_opt.bucket_bytes == 0 && detail::ranks_on_this_machine(c)) {
        try {
          make_segment();
          m_opt.mode = reduction::shared_memory;
        } catch (dist_error const&) {
          m_shm = detail::shm_segment(); // e.g. no /dev/shm: stay with MPI
        }
      }
    } else if (m_opt.mode == reduction::shared_memory && c.distributed()) {
      make_segment();
    }
    if (m_opt.mode == reduction::ordered) {
      m_buf = optim::detail::state_buffer<T>(chunk * n);
      if (c.distributed()) m_recv = optim::detail::state_buffer<T>(chunk * n);
    } else if (m_opt.mode == reduction::allreduce) {
      m_buf = optim::detail::state_buffer<T>(cap);
    }
    std::size_t const per = bucket_elems();
    m_reqs.assign(m_opt.mode == reduction::allreduce ? (cap + per - 1) / per : 2, MPI_REQUEST_NULL);
  }
  grad_reducer(grad_reducer const&) = delete;
  grad_reducer& operator=(grad_reducer const&) = delete;

  /// Replaces every non-frozen gradient g by `sum over ranks of weight_r * g_r`, and each
  /// `extra[i]` by the sum over ranks of `extra[i]`. `weight` is this rank's share of the global
  /// batch (shard_batch::weight()); with weight 0 (no samples this step) the rank contributes
  /// zeros whatever its gradients hold. Collective: every rank calls it with the same number of
  /// extras, and with the same parameters frozen.
  void reduce(double weight, std::span<T> extra = {}) {
    if (extra.size() > m_opt.extra)
      throw value_error("dist::grad_reducer::reduce: " + std::to_string(extra.size()) +
                        " extra values, room for " + std::to_string(m_opt.extra) +
                        " (reducer_options::extra)");
    T const w = static_cast<T>(weight);
    if (!m_comm->distributed()) {
      if (weight != 1.0)
        for (auto& s : m_slots)
          if (!*s.frozen) scale_copy(s.grad, s.size, w, s.grad);
      return;
    }
    std::size_t len = extra.size();
    for (auto& s : m_slots)
      if (!*s.frozen) len += s.size;
    if (m_opt.mode == reduction::shared_memory)
      reduce_shared(w, extra, len);
    else if (m_opt.mode == reduction::ordered)
      reduce_ordered(w, extra, len);
    else
      reduce_allreduce(w, extra, len);
  }

  /// Scalars in the fused buffer (all parameters, frozen or not).
  std::size_t scalars() const noexcept { return m_total; }
  /// Bytes of gradient each rank contributes per step (all parameters).
  std::size_t bytes() const noexcept { return m_total * sizeof(T); }
  /// The options in effect: `mode` is never `automatic` (it says what was chosen).
  reducer_options const& options() const noexcept { return m_opt; }

private:
  struct slot {
    T* grad;
    std::size_t size;
    bool const* frozen;
  };

  std::size_t bucket_elems() const noexcept {
    if (m_opt.mode != reduction::allreduce || m_opt.bucket_bytes == 0)
      return std::max<std::size_t>(1, m_total + m_opt.extra);
    return std::max<std::size_t>(1, m_opt.bucket_bytes / sizeof(T));
  }

  static void scale_copy(T const* src, std::size_t n, T w, T* dst) noexcept {
    if (w == T(0))
      std::fill_n(dst, n, T(0));
    else if (w == T(1)) {
      if (src != dst) std::copy_n(src, n, dst);
    } else
      for (std::size_t i = 0; i < n; ++i) dst[i] = src[i] * w;
  }

  /// Copies flat positions [from, to) of the packed layout (active gradients, then extras) into
  /// the buffer (pack) or back (unpack). `cur` remembers where the previous call stopped.
  struct cursor {
    std::size_t slot = 0, offset = 0, pos = 0;
  };
  template <bool Pack> void transfer(cursor& cur, std::size_t to, T w, std::span<T> extra) noexcept {
    transfer<Pack>(m_buf.data(), cur, to, w, extra);
  }
  /// The same with `buf` as the packed layout's storage (position p at buf[p]).
  template <bool Pack> void transfer(T* buf, cursor& cur, std::size_t to, T w, std::span<T> extra) noexcept {
    while (cur.pos < to && cur.slot < m_slots.size()) {
      slot const& s = m_slots[cur.slot];
      if (*s.frozen || cur.offset == s.size) {
        ++cur.slot;
        cur.offset = 0;
        continue;
      }
      std::size_t const n = std::min(s.size - cur.offset, to - cur.pos);
      if constexpr (Pack)
        scale_copy(s.grad + cur.offset, n, w, buf + cur.pos);
      else
        std::copy_n(buf + cur.pos, n, s.grad + cur.offset);
      cur.offset += n;
      cur.pos += n;
    }
    if (cur.pos < to && cur.slot >= m_slots.size()) { // the extras follow the gradients
      std::size_t const first = cur.pos - m_grad_len;
      std::size_t const n = to - cur.pos;
      if constexpr (Pack)
        std::copy_n(extra.data() + first, n, buf + cur.pos);
      else
        std::copy_n(buf + cur.pos, n, extra.data() + first);
      cur.pos = to;
    }
  }

  void reduce_allreduce(T w, std::span<T> extra, std::size_t len) {
    m_grad_len = len - extra.size();
    std::size_t const per = bucket_elems();
    std::size_t const nb = (len + per - 1) / per;
    MPI_Datatype const type = detail::mpi_type<T>();
    cursor pack, unpack;
    for (std::size_t b = 0; b < nb; ++b) {
      std::size_t const lo = b * per, hi = std::min(len, lo + per);
      transfer<true>(pack, hi, w, extra);
      detail::check(MPI_Iallreduce(MPI_IN_PLACE, m_buf.data() + lo, int(hi - lo), type, MPI_SUM,
                                   m_comm->get(), &m_reqs[b]),
                    "MPI_Iallreduce(gradients)");
      if (b > 0) { // let MPI progress the buckets in flight while we pack the next one
        int done = 0;
        MPI_Testall(int(b), m_reqs.data(), &done, MPI_STATUSES_IGNORE);
      }
    }
    for (std::size_t b = 0; b < nb; ++b) {
      detail::wait_one(*m_comm, m_reqs[b], "gradient all-reduce");
      transfer<false>(unpack, std::min(len, (b + 1) * per), w, extra);
    }
  }

  void reduce_ordered(T w, std::span<T> extra, std::size_t len) {
    m_grad_len = len - extra.size();
    std::size_t const n = std::size_t(m_comm->size()), r = std::size_t(m_comm->rank());
    std::size_t const chunk = (len + n - 1) / n;
    cursor pack, unpack;
    transfer<true>(pack, len, w, extra);
    std::fill(m_buf.data() + len, m_buf.data() + chunk * n, T(0));
    MPI_Datatype const type = detail::mpi_type<T>();
    detail::check(MPI_Ialltoall(m_buf.data(), int(chunk), type, m_recv.data(), int(chunk), type,
                                m_comm->get(), &m_reqs[0]),
                  "MPI_Ialltoall(gradients)");
    detail::wait_one(*m_comm, m_reqs[0], "gradient reduce-scatter (ordered)");
    T* mine = m_buf.data() + r * chunk;
    T const* in = m_recv.data();
    std::copy_n(in, chunk, mine);
    for (std::size_t q = 1; q < n; ++q) {
      T const* part = in + q * chunk;
      for (std::size_t i = 0; i < chunk; ++i) mine[i] += part[i];
    }
    detail::check(MPI_Iallgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, m_buf.data(), int(chunk), type,
                                 m_comm->get(), &m_reqs[1]),
                  "MPI_Iallgather(gradients)");
    detail::wait_one(*m_comm, m_reqs[1], "gradient all-gather (ordered)");
    transfer<false>(unpack, len, w, extra);
  }

  // ---- reduction::shared_memory
  static constexpr std::size_t shm_ctrl_bytes = 128;
  /// Step counter `which` (0: packed, 1: summed) of rank q, in the segment.
  std::atomic_ref<std::uint64_t> flag(std::size_t q, int which) const noexcept {
    auto* p = reinterpret_cast<std::uint64_t*>(m_shm.data() + q * shm_ctrl_bytes + std::size_t(which) * 64);
    return std::atomic_ref<std::uint64_t>(*p);
  }
  /// Rank q's slot for step parity `par`.
  T* shm_slot(std::size_t q, std::size_t par) const noexcept {
    std::size_t const n = std::size_t(m_comm->size());
    return reinterpret_cast<T*>(m_shm.data() + n * shm_ctrl_bytes) + (q * 2 + par) * m_slot_elems;
  }
  void wait_all_flags(int which, std::uint64_t step, char const* what) const {
    std::size_t const n = std::size_t(m_comm->size());
    // Spins longer than an MPI wait (2000 polls): the peer's flag flips within microseconds of
    // its pack or sum, and there is no MPI progress to drive.
    detail::wait_until(
        *m_comm,
        [&] {
      for (std::size_t q = 0; q < n; ++q)
        if (flag(q, which).load(std::memory_order_acquire) < step) return false;
      return true;
        },
        what, 2000);
  }
  void reduce_shared(T w, std::span<T> extra, std::size_t len) {
    m_grad_len = len - extra.size();
    std::size_t const n = std::size_t(m_comm->size()), r = std::size_t(m_comm->rank());
    std::uint64_t const step = ++m_step;
    std::size_t const par = step & 1;
    std::size_t const chunk = (len + n - 1) / n;
    cursor pack, unpack;
    transfer<true>(shm_slot(r, par), pack, len, w, extra);
    flag(r, 0).store(step, std::memory_order_release);
    wait_all_flags(0, step, "gradient reduction (shared memory, pack)");
    // Chunk r of every slot, summed in rank order into this rank's own slot (only this rank
    // touches chunk r of any slot until the second barrier).
    std::size_t const lo = std::min(len, r * chunk), hi = std::min(len, lo + chunk);
    T* mine = shm_slot(r, par);
    constexpr std::size_t block = 1024;
    T acc[block];
    for (std::size_t b = lo; b < hi; b += block) {
      std::size_t const m = std::min(block, hi - b);
      std::copy_n(shm_slot(0, par) + b, m, acc);
      for (std::size_t q = 1; q < n; ++q) {
        T const* part = shm_slot(q, par) + b;
        for (std::size_t i = 0; i < m; ++i) acc[i] += part[i];
      }
      std::copy_n(acc, m, mine + b);
    }
    flag(r, 1).store(step, std::memory_order_release);
    wait_all_flags(1, step, "gradient reduction (shared memory, sum)");
    for (std::size_t q = 0; q < n; ++q)
      transfer<false>(shm_slot(q, par), unpack, std::min(len, (q + 1) * chunk), w, extra);
  }

  communicator const* m_comm;
  reducer_options m_opt;
  std::vector<slot> m_slots;
  std::size_t m_total = 0;
  std::size_t m_grad_len = 0; // active gradient scalars of the current reduce
  optim::detail::state_buffer<T> m_buf, m_recv;
  std::vector<MPI_Request> m_reqs;
  detail::shm_segment m_shm;    // reduction::shared_memory
  std::size_t m_slot_elems = 0; // elements per slot in m_shm
  std::uint64_t m_step = 0;     // reductions done (the flags' values)
};

} // namespace lepton::dist
