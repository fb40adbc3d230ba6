#pragma once
/// @file sampler.hpp
/// @brief `lepton::dist::shard_loader`: each rank's share of every global batch.
///
/// **Sharding rule.** Epoch e visits the samples in the order of `data::loader` with the same
/// seed: `seeded_shuffle(0..n-1, epoch_seed(seed, e))` (or dataset order without shuffling), cut
/// into global batches of `batch` samples. Global batch k (`gb` samples, `gb < batch` only for the
/// last one) is split into `N` contiguous pieces: rank r gets positions
/// `[k*batch + gb*r/N, k*batch + gb*(r+1)/N)`. So the ranks' shards are distinct, cover the epoch
/// exactly once, depend only on (seed, epoch, N), and N ranks together see exactly the batches a
/// single process with `data::loader` and the same `batch` sees: 2 ranks x 64 == 1 rank x 128.
/// Each shard carries its weight `b_r / gb`, the factor that turns the rank's mean-loss gradient
/// into its share of the global batch's mean gradient.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <numeric>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "../data/dataset.hpp"
#include "../data/loader.hpp"
#include "../data/shuffle.hpp"
#include "environment.hpp"

namespace lepton::dist {

/// @brief How a shard_loader walks a dataset. `batch` is the global batch (all ranks together).
struct shard_options {
  std::size_t batch = 32; ///< global batch: samples per step summed over the ranks (> 0)
  bool shuffle = true;
  std::uint64_t seed = 0; ///< the same on every rank
  bool drop_last = false; ///< skip the last global batch when it is short
};

/// @brief A rank's piece of one global batch: views of the loader's buffers (valid until the next
///        batch), the size of the whole global batch and this rank's share of it.
template <data::sample_tensor X, data::sample_tensor Y> struct shard_batch {
  typename X::view_type x;     ///< (b, F...), b may be 0 at the end of an epoch with N > batch
  typename Y::view_type y;     ///< (b, ...)
  std::size_t global_size = 0; ///< samples in the global batch (all ranks)
  /// Samples on this rank.
  std::size_t size() const noexcept { return x.shape()[0]; }
  /// `size() / global_size`: this rank's weight in the global mean.
  double weight() const noexcept { return global_size ? double(size()) / double(global_size) : 0.0; }
};

/// @brief Iterates this rank's shards of a dataset's global batches (see the sharding rule above).
///        Like data::loader it allocates its buffers (ceil(batch / N) rows) once and nothing after.
/// **Example**:
/// ```
/// lepton::dist::shard_loader ld(train, {.batch = 128, .seed = 1}, comm.rank(), comm.size());
/// for (auto sh : ld.epoch(e)) { /* sh.x: (64, 784) on each of 2 ranks */ }
/// ```
template <data::sample_tensor X, data::sample_tensor Y> class shard_loader {
public:
  using dataset_type = data::dataset<X, Y>;
  using batch_type = shard_batch<X, Y>;

  class iterator {
  public:
    using iterator_category = std::input_iterator_tag;
    using iterator_concept = std::input_iterator_tag;
    using value_type = batch_type;
    using difference_type = std::ptrdiff_t;
    iterator() = default;
    batch_type operator*() const { return m_loader->get_batch(m_index); }
    iterator& operator++() noexcept {
      ++m_index;
      return *this;
    }
    iterator operator++(int) noexcept {
      auto old = *this;
      ++m_index;
      return old;
    }
    bool operator==(iterator const&) const noexcept = default;

  private:
    friend class shard_loader;
    iterator(shard_loader* l, std::size_t i) noexcept : m_loader(l), m_index(i) {}
    shard_loader* m_loader = nullptr;
    std::size_t m_index = 0;
  };

  class epoch_range {
  public:
    iterator begin() const noexcept { return {m_loader, 0}; }
    iterator end() const noexcept { return {m_loader, m_loader->batches_per_epoch()}; }
    std::size_t size() const noexcept { return m_loader->batches_per_epoch(); }

  private:
    friend class shard_loader;
    explicit epoch_range(shard_loader* l) noexcept : m_loader(l) {}
    shard_loader* m_loader;
  };

  /// This rank is `rank` of `size`. Throws value_error for batch 0 or rank outside [0, size).
  shard_loader(dataset_type const& data, shard_options const& o, int rank, int size)
      : m_data(&data), m_opt(o), m_rank(std::size_t(rank)), m_size(std::size_t(size)), m_order(data.size()) {
    if (o.batch == 0) throw value_error("dist::shard_loader: batch size 0 (need at least 1)");
    if (size < 1 || rank < 0 || rank >= size)
      throw value_error("dist::shard_loader: rank " + std::to_string(rank) + " of " + std::to_string(size));
    std::size_t rows = std::max<std::size_t>(1, std::min((o.batch + m_size - 1) / m_size, data.size()));
    m_x = data::detail::with_rows(data.features(), rows);
    m_y = data::detail::with_rows(data.targets(), rows);
    std::iota(m_order.begin(), m_order.end(), std::size_t{0});
  }
  /// The rank and size of `c`.
  shard_loader(dataset_type const& data, shard_options const& o, communicator const& c)
      : shard_loader(data, o, c.rank(), c.size()) {}
  shard_loader(dataset_type const&&, shard_options const&, int, int) = delete;

  /// Prepares epoch `e` (the same order on every rank) and returns this rank's shards.
  epoch_range epoch(std::size_t e) {
    if (m_data->size() != m_order.size())
      throw shape_error("dist::shard_loader: the dataset changed size since the loader was made");
    std::iota(m_order.begin(), m_order.end(), std::size_t{0});
    if (m_opt.shuffle) data::seeded_shuffle(std::span<std::size_t>(m_order), data::epoch_seed(m_opt.seed, e));
    return epoch_range(this);
  }

  /// Global batch k's positions in order() held by this rank, and the global batch's size.
  struct range {
    std::size_t begin, end, global_size;
  };
  range shard_range(std::size_t k) const noexcept {
    std::size_t const g0 = k * m_opt.batch;
    std::size_t const gb = std::min(m_opt.batch, m_order.size() - g0);
    return {g0 + gb * m_rank / m_size, g0 + gb * (m_rank + 1) / m_size, gb};
  }

  /// Gathers this rank's shard of global batch k.
  batch_type get_batch(std::size_t k) {
    if (k >= batches_per_epoch())
      throw index_error("dist::shard_loader: batch " + std::to_string(k) + " of an epoch of " +
                        std::to_string(batches_per_epoch()) + " batches");
    auto [lo, hi, gb] = shard_range(k);
    std::span<std::size_t const> idx = std::span<std::size_t const>(m_order).subspan(lo, hi - lo);
    data::detail::gather_rows(m_data->features().data(), data::detail::row_elems(m_x.shape()), idx,
                              m_x.data());
    data::detail::gather_rows(m_data->targets().data(), data::detail::row_elems(m_y.shape()), idx,
                              m_y.data());
    return {m_x.rows(0, hi - lo), m_y.rows(0, hi - lo), gb};
  }

  /// Global batches per epoch (the same on every rank): ceil(n / batch), floor with drop_last.
  std::size_t batches_per_epoch() const noexcept {
    std::size_t n = m_order.size();
    return m_opt.drop_last ? n / m_opt.batch : (n + m_opt.batch - 1) / m_opt.batch;
  }
  /// The whole epoch's order (every rank holds the same).
  std::span<std::size_t const> order() const noexcept { return m_order; }
  shard_options const& options() const noexcept { return m_opt; }
  int rank() const noexcept { return int(m_rank); }
  int ranks() const noexcept { return int(m_size); }

private:
  dataset_type const* m_data;
  shard_options m_opt;
  std::size_t m_rank, m_size;
  std::vector<std::size_t> m_order;
  X m_x;
  Y m_y;
};

} // namespace lepton::dist
