#pragma once
/// @file loader.hpp
/// @brief `lepton::data::loader`: iterates a dataset in batches, with seeded shuffling that is the
///        same on every platform, and without heap allocation once constructed.
///
/// The loader owns one feature and one target buffer of `batch` rows, allocated on construction.
/// Each batch is gathered into them and handed out as views, so iterating any number of epochs
/// allocates nothing (the last, partial batch is a shorter view of the same buffers).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <numeric>
#include <span>
#include <string>
#include <vector>

#include "../core/error.hpp"
#include "../core/shape.hpp"
#include "../core/tensor.hpp"
#include "dataset.hpp"
#include "shuffle.hpp"

namespace lepton::data {

/// @brief How a loader walks a dataset.
///
/// **Example**: `lepton::data::loader ld(train, {.batch = 64, .shuffle = true, .seed = 42});`
struct loader_options {
  std::size_t batch = 32; ///< samples per batch (> 0)
  bool shuffle = true;    ///< reorder the samples every epoch (else: in dataset order)
  std::uint64_t seed = 0; ///< the order of epoch e depends only on (seed, e), see epoch_seed()
  bool drop_last = false; ///< skip the last batch when it has fewer than `batch` samples
};

/// @brief One batch: views of the loader's buffers, valid until the loader gathers another batch.
///
/// **Example**: `for (auto [x, y] : ld.epoch(0)) { /* x: (b, 784), y: (b) */ }`
template <sample_tensor X, sample_tensor Y> struct batch_view {
  typename X::view_type x; ///< (b, F...)
  typename Y::view_type y; ///< (b, ...)
  /// Number of samples b in this batch.
  std::size_t size() const noexcept { return x.shape()[0]; }
};

/// @brief Iterates a dataset in batches; the dataset must outlive the loader.
///
/// Epoch `e` visits every sample exactly once, in dataset order without shuffling, else in the
/// order `seeded_shuffle(0..n-1, epoch_seed(seed, e))`: the same seed and epoch give the same order
/// on every platform, different epochs reshuffle. Buffers are allocated on construction; calling
/// `epoch()` and iterating allocate nothing. Each batch's views are overwritten by the next batch
/// (copy the values out to keep them), and calling `epoch()` again restarts the order.
/// @tparam X features tensor (n, F...), @tparam Y targets tensor (n, ...)
///
/// **Example**:
/// ```
/// lepton::data::loader ld(train_set, {.batch = 64, .shuffle = true, .seed = 42, .drop_last = false});
/// for (std::size_t epoch = 0; epoch < 5; ++epoch)
///   for (auto [x, y] : ld.epoch(epoch)) { /* x: (b, 784) view, y: (b) view */ }
/// ```
template <sample_tensor X, sample_tensor Y> class loader {
public:
  using dataset_type = dataset<X, Y>;
  using batch_type = batch_view<X, Y>;

  /// Input iterator over the batches of the current epoch; dereferencing gathers the batch.
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
    friend class loader;
    iterator(loader* l, std::size_t i) noexcept : m_loader(l), m_index(i) {}
    loader* m_loader = nullptr;
    std::size_t m_index = 0;
  };

  /// The batches of one epoch, for a range-for.
  class epoch_range {
  public:
    iterator begin() const noexcept { return {m_loader, 0}; }
    iterator end() const noexcept { return {m_loader, m_loader->batches_per_epoch()}; }
    std::size_t size() const noexcept { return m_loader->batches_per_epoch(); }

  private:
    friend class loader;
    explicit epoch_range(loader* l) noexcept : m_loader(l) {}
    loader* m_loader;
  };

  /// Throws value_error if options.batch is 0. Allocates the batch buffers (min(batch, n) rows).
  loader(dataset_type const& data, loader_options const& options = {})
      : m_data(&data), m_opt(options), m_order(data.size()) {
    if (m_opt.batch == 0) throw value_error("data::loader: batch size 0 (need at least 1)");
    std::size_t rows = std::min(m_opt.batch, data.size());
    m_x = detail::with_rows(data.features(), rows);
    m_y = detail::with_rows(data.targets(), rows);
    std::iota(m_order.begin(), m_order.end(), std::size_t{0});
  }
  /// A loader keeps a pointer to its dataset: a temporary would dangle.
  loader(dataset_type const&&, loader_options const& = {}) = delete;

  /// Prepares epoch `e` (its sample order) and returns its batches. Allocates nothing. Throws
  /// shape_error if the dataset's size or sample shape changed since the loader was made.
  epoch_range epoch(std::size_t e) {
    check_dataset();
    std::iota(m_order.begin(), m_order.end(), std::size_t{0});
    if (m_opt.shuffle) seeded_shuffle(std::span<std::size_t>(m_order), epoch_seed(m_opt.seed, e));
    m_epoch = e;
    return epoch_range(this);
  }

  /// Gathers batch `k` of the current epoch into the buffers and returns views of them.
  /// Throws index_error if k >= batches_per_epoch().
  batch_type get_batch(std::size_t k) {
    if (k >= batches_per_epoch())
      throw index_error("data::loader: batch " + std::to_string(k) + " of an epoch of " +
                        std::to_string(batches_per_epoch()) + " batches");
    std::size_t const start = k * m_opt.batch;
    std::size_t const b = std::min(m_opt.batch, m_order.size() - start);
    std::span<std::size_t const> idx = std::span<std::size_t const>(m_order).subspan(start, b);
    detail::gather_rows(m_data->features().data(), detail::row_elems(m_x.shape()), idx, m_x.data());
    detail::gather_rows(m_data->targets().data(), detail::row_elems(m_y.shape()), idx, m_y.data());
    return {m_x.rows(0, b), m_y.rows(0, b)};
  }

  /// Batches in one epoch: ceil(n / batch), or floor(n / batch) with drop_last.
  std::size_t batches_per_epoch() const noexcept {
    std::size_t n = m_order.size();
    return m_opt.drop_last ? n / m_opt.batch : (n + m_opt.batch - 1) / m_opt.batch;
  }
  /// Samples in the dataset.
  std::size_t size() const noexcept { return m_order.size(); }
  /// The epoch last prepared by epoch() (0 before the first call).
  std::size_t current_epoch() const noexcept { return m_epoch; }
  loader_options const& options() const noexcept { return m_opt; }
  /// The sample order of the current epoch (dataset indices, batch after batch).
  std::span<std::size_t const> order() const noexcept { return m_order; }

private:
  void check_dataset() const {
    auto xs = m_data->features().shape();
    auto ys = m_data->targets().shape();
    bool same = xs[0] == m_order.size() && ys[0] == m_order.size();
    for (std::size_t i = 1; i < xs.size(); ++i) same = same && xs[i] == m_x.shape()[i];
    for (std::size_t i = 1; i < ys.size(); ++i) same = same && ys[i] == m_y.shape()[i];
    if (!same)
      throw shape_error("data::loader: the dataset changed shape since the loader was made: features " +
                        to_string(xs) + ", targets " + to_string(ys) + ", loader made for " +
                        std::to_string(m_order.size()) + " samples");
  }

  dataset_type const* m_data;
  loader_options m_opt;
  std::vector<std::size_t> m_order;
  X m_x; // (min(batch, n), F...)
  Y m_y; // (min(batch, n), ...)
  std::size_t m_epoch = 0;
};

} // namespace lepton::data
