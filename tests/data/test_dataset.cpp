// dataset, split, feature statistics, one_hot, seeded shuffling and the batch loader.

#include <catch2/catch.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <random>
#include <set>
#include <span>
#include <vector>

#include <lepton/data/dataset.hpp>
#include <lepton/data/loader.hpp>
#include <lepton/data/shuffle.hpp>

#include "data_test_util.hpp"

namespace ld = lepton::data;
using lepton::dyn;

namespace {
using xs_t = lepton::tensor<float, dyn, 3>;
using ys_t = lepton::tensor<std::int32_t, dyn>;

/// n samples; sample i has features (i, 10 i, 100 i) and target i.
ld::dataset<xs_t, ys_t> counting_set(std::size_t n) {
  xs_t x(n);
  ys_t y(n);
  for (std::size_t i = 0; i < n; ++i) {
    x(i, 0) = float(i);
    x(i, 1) = float(10 * i);
    x(i, 2) = float(100 * i);
    y(i) = static_cast<std::int32_t>(i);
  }
  return {std::move(x), std::move(y)};
}

/// The targets of every batch of one epoch, in order, checking that features match targets.
template <class L> std::vector<std::int32_t> epoch_targets(L& ld_, std::size_t epoch,
                                                           std::vector<std::size_t>* sizes = nullptr) {
  std::vector<std::int32_t> out;
  for (auto [x, y] : ld_.epoch(epoch)) {
    REQUIRE(x.shape()[0] == y.shape()[0]);
    if (sizes) sizes->push_back(y.shape()[0]);
    for (std::size_t k = 0; k < y.shape()[0]; ++k) {
      CHECK(x(k, 0) == float(y(k)));
      CHECK(x(k, 2) == float(100 * y(k)));
      out.push_back(y(k));
    }
  }
  return out;
}
} // namespace

TEST_CASE("dataset checks that features and targets have the same number of samples", "[data][dataset]") {
  LEPTON_CHECK_THROWS_NAMING((ld::dataset<xs_t, ys_t>(xs_t(3), ys_t(4))), lepton::shape_error, "(3, 3)",
                             "(4)");
  auto ds = counting_set(5);
  CHECK(ds.size() == 5);
  CHECK_FALSE(ds.empty());
  CHECK(ld::dataset<xs_t, ys_t>().empty());
  static_assert(ld::sample_tensor<xs_t>);
  static_assert(!ld::sample_tensor<lepton::tensor<float, 3, 3>>);
  static_assert(!ld::sample_tensor<lepton::tensor_view<float, dyn, 3>>);
}

TEST_CASE("dataset::subset and split", "[data][dataset]") {
  auto ds = counting_set(10);
  std::vector<std::size_t> idx{7, 2, 2};
  auto sub = ds.subset(idx);
  CHECK(sub.size() == 3);
  CHECK(sub.targets()(0) == 7);
  CHECK(sub.features()(2, 1) == 20.0f);
  std::vector<std::size_t> bad{1, 10};
  LEPTON_CHECK_THROWS_NAMING(ds.subset(bad), lepton::index_error, "index 10 (entry 1)", "10 samples");

  auto [train, val] = ds.split(0.8, 5);
  CHECK(train.size() == 8);
  CHECK(val.size() == 2);
  std::set<std::int32_t> all;
  for (std::size_t i = 0; i < train.size(); ++i) all.insert(train.targets()(i));
  for (std::size_t i = 0; i < val.size(); ++i) all.insert(val.targets()(i));
  CHECK(all.size() == 10);
  auto [train2, val2] = ds.split(0.8, 5);
  CHECK(std::equal(train.targets().flat().begin(), train.targets().flat().end(),
                   train2.targets().flat().begin()));
  CHECK(ds.split(0.0, 1).first.size() == 0);
  CHECK(ds.split(1.0, 1).second.size() == 0);
  CHECK_THROWS_AS(ds.split(1.5, 1), lepton::value_error);
  CHECK_THROWS_AS(ds.split(-0.1, 1), lepton::value_error);
}

TEST_CASE("feature statistics computed on one set apply to another", "[data][dataset]") {
  auto train = counting_set(5); // features i, 10 i, 100 i for i = 0..4: means 2, 20, 200
  auto stats = ld::compute_feature_stats(train.features());
  REQUIRE(stats.mean.size() == 3);
  CHECK(stats.mean[1] == Approx(20.0f));
  CHECK(stats.stddev[0] == Approx(std::sqrt(2.0f)));
  auto test = counting_set(3);
  ld::standardize(test.features(), stats);
  CHECK(test.features()(2, 2) == Approx(0.0f).margin(1e-6));
  CHECK(test.features()(0, 0) == Approx(-2.0f / std::sqrt(2.0f)));

  lepton::tensor<double, dyn, 2> c({3, 2}, {1, 5, 2, 5, 3, 5}); // the second feature is constant
  auto cs = ld::compute_feature_stats(c);
  CHECK(cs.stddev[1] == 1.0);
  ld::standardize(c, cs);
  CHECK(c(0, 1) == 0.0);

  lepton::tensor<float, dyn, 4> wrong(2);
  CHECK_THROWS_AS(ld::standardize(wrong, stats), lepton::shape_error);
  CHECK_THROWS_AS(ld::compute_feature_stats(xs_t(0)), lepton::value_error);
}

TEST_CASE("one_hot", "[data][dataset]") {
  lepton::tensor<std::int32_t, dyn> y({3}, {2, 0, 1});
  auto t = ld::one_hot<3>(y);
  static_assert(std::is_same_v<decltype(t), lepton::tensor<float, dyn, 3>>);
  CHECK(t(0, 2) == 1.0f);
  CHECK(t(0, 0) == 0.0f);
  CHECK(t(1, 0) == 1.0f);
  CHECK(t(2, 1) == 1.0f);
  float sum = 0;
  for (float v : t.flat()) sum += v;
  CHECK(sum == 3.0f);
  CHECK(ld::one_hot<3, double>(y.view())(2, 1) == 1.0);
  lepton::tensor<std::int32_t, dyn> bad({3}, {0, 3, 1});
  LEPTON_CHECK_THROWS_NAMING(ld::one_hot<3>(bad), lepton::value_error, "label 3 at index 1", "[0, 3)");
  lepton::tensor<std::int32_t, dyn> neg({1}, {-1});
  LEPTON_CHECK_THROWS_NAMING(ld::one_hot<3>(neg), lepton::value_error, "label -1 at index 0", "[0, 3)");
  lepton::tensor<std::uint8_t, dyn> u({1}, {200});
  CHECK_THROWS_AS(ld::one_hot<10>(u), lepton::value_error);
}

TEST_CASE("seeded shuffling is pinned to one algorithm", "[data][shuffle]") {
  static_assert(ld::splitmix64(0) == 0xE220A8397B1DCDAFull);
  auto p = ld::permutation(10, 42);
  std::vector<std::size_t> sorted = p;
  std::sort(sorted.begin(), sorted.end());
  for (std::size_t i = 0; i < 10; ++i) CHECK(sorted[i] == i);
  // Golden values: the same on every platform and standard library (mt19937_64 + our Fisher-Yates).
  CHECK(p == std::vector<std::size_t>{1, 7, 9, 0, 3, 8, 4, 2, 5, 6});
  CHECK(ld::permutation(10, 42) == p);
  CHECK(ld::permutation(10, 43) != p);
  CHECK(ld::permutation(0, 1).empty());
  CHECK(ld::permutation(1, 1) == std::vector<std::size_t>{0});
  CHECK(ld::epoch_seed(42, 0) != ld::epoch_seed(42, 1));
  std::mt19937_64 rng(3);
  for (int i = 0; i < 1000; ++i) CHECK(ld::uniform_below(rng, 7) < 7);
}

TEST_CASE("loader visits every sample once per epoch, deterministically", "[data][loader]") {
  auto ds = counting_set(103);
  ld::loader ld_(ds, {.batch = 10, .shuffle = true, .seed = 42});
  CHECK(ld_.batches_per_epoch() == 11);
  std::vector<std::size_t> sizes;
  auto e0 = epoch_targets(ld_, 0, &sizes);
  REQUIRE(e0.size() == 103);
  CHECK(sizes.size() == 11);
  CHECK(sizes.back() == 3); // the partial last batch
  std::vector<std::int32_t> sorted = e0;
  std::sort(sorted.begin(), sorted.end());
  for (std::int32_t i = 0; i < 103; ++i) CHECK(sorted[static_cast<std::size_t>(i)] == i);

  std::vector<std::int32_t> identity(103);
  for (std::size_t i = 0; i < 103; ++i) identity[i] = static_cast<std::int32_t>(i);
  CHECK(e0 != identity); // shuffled
  // Golden values, pinned across platforms.
  CHECK(std::vector<std::int32_t>(e0.begin(), e0.begin() + 8) ==
        std::vector<std::int32_t>{47, 32, 4, 81, 27, 30, 74, 49});

  auto e1 = epoch_targets(ld_, 1);
  CHECK(e1 != e0);                    // a new epoch reshuffles
  CHECK(epoch_targets(ld_, 0) == e0); // an epoch's order depends only on (seed, epoch)
  CHECK(ld_.current_epoch() == 0);

  ld::loader same(ds, {.batch = 7, .shuffle = true, .seed = 42});
  CHECK(epoch_targets(same, 1) == e1); // the batch size does not change the order
  ld::loader other(ds, {.batch = 10, .shuffle = true, .seed = 43});
  CHECK(epoch_targets(other, 0) != e0);

  // The order is exactly seeded_shuffle(0..n-1, epoch_seed(seed, epoch)).
  std::vector<std::size_t> expect(103);
  std::iota(expect.begin(), expect.end(), std::size_t{0});
  ld::seeded_shuffle(std::span<std::size_t>(expect), ld::epoch_seed(42, 1));
  ld_.epoch(1);
  CHECK(std::equal(expect.begin(), expect.end(), ld_.order().begin(), ld_.order().end()));
}

TEST_CASE("loader: no shuffle, drop_last, large batches, empty sets", "[data][loader]") {
  auto ds = counting_set(10);
  SECTION("no shuffle keeps dataset order") {
    ld::loader ld_(ds, {.batch = 4, .shuffle = false});
    std::vector<std::size_t> sizes;
    auto t = epoch_targets(ld_, 3, &sizes);
    CHECK(t == std::vector<std::int32_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
    CHECK(sizes == std::vector<std::size_t>{4, 4, 2});
  }
  SECTION("drop_last") {
    ld::loader ld_(ds, {.batch = 4, .seed = 1, .drop_last = true});
    CHECK(ld_.batches_per_epoch() == 2);
    std::vector<std::size_t> sizes;
    auto t = epoch_targets(ld_, 0, &sizes);
    CHECK(sizes == std::vector<std::size_t>{4, 4});
    CHECK(std::set<std::int32_t>(t.begin(), t.end()).size() == 8);
  }
  SECTION("a batch larger than the data set") {
    ld::loader ld_(ds, {.batch = 64});
    std::vector<std::size_t> sizes;
    epoch_targets(ld_, 0, &sizes);
    CHECK(sizes == std::vector<std::size_t>{10});
    ld::loader dropped(ds, {.batch = 64, .drop_last = true});
    CHECK(dropped.batches_per_epoch() == 0);
    CHECK(epoch_targets(dropped, 0).empty());
  }
  SECTION("an empty data set") {
    ld::dataset<xs_t, ys_t> empty;
    ld::loader ld_(empty, {.batch = 4});
    CHECK(ld_.batches_per_epoch() == 0);
    CHECK(epoch_targets(ld_, 0).empty());
  }
  SECTION("batch 0 is a value_error") { CHECK_THROWS_AS(ld::loader(ds, {.batch = 0}), lepton::value_error); }
  SECTION("get_batch out of range") {
    ld::loader ld_(ds, {.batch = 4});
    ld_.epoch(0);
    CHECK_THROWS_AS(ld_.get_batch(3), lepton::index_error);
    CHECK(ld_.get_batch(2).size() == 2);
  }
  SECTION("a data set that changed shape since the loader was made") {
    ld::loader ld_(ds, {.batch = 4});
    ds.features() = xs_t(11);
    ds.targets() = ys_t(11);
    CHECK_THROWS_AS(ld_.epoch(0), lepton::shape_error);
  }
}

TEST_CASE("loader reuses its buffers and works with any sample shape", "[data][loader]") {
  SECTION("the batch views always point into the same two buffers") {
    auto ds = counting_set(25);
    ld::loader ld_(ds, {.batch = 8, .seed = 9});
    float const* x0 = nullptr;
    std::int32_t const* y0 = nullptr;
    for (std::size_t e = 0; e < 3; ++e)
      for (auto b : ld_.epoch(e)) {
        if (!x0) {
          x0 = b.x.data();
          y0 = b.y.data();
        }
        CHECK(b.x.data() == x0);
        CHECK(b.y.data() == y0);
      }
  }
  SECTION("image samples (n, 1, 2, 2) and one-hot targets (n, 3)") {
    lepton::tensor<float, dyn, 1, 2, 2> x(6);
    lepton::tensor<float, dyn, 3> y(6);
    for (std::size_t i = 0; i < 6; ++i) {
      for (std::size_t k = 0; k < 4; ++k) x(i, 0, k / 2, k % 2) = float(10 * i + k);
      y(i, i % 3) = 1.0f;
    }
    ld::dataset ds(std::move(x), std::move(y));
    ld::loader ld_(ds, {.batch = 4, .seed = 2});
    std::size_t seen = 0;
    for (auto [bx, by] : ld_.epoch(0)) {
      static_assert(std::is_same_v<decltype(bx), lepton::tensor_view<float, dyn, 1, 2, 2>>);
      for (std::size_t k = 0; k < bx.shape()[0]; ++k) {
        auto i = static_cast<std::size_t>(bx(k, 0, 0, 0)) / 10;
        CHECK(bx(k, 0, 1, 1) == float(10 * i + 3));
        CHECK(by(k, i % 3) == 1.0f);
        ++seen;
      }
    }
    CHECK(seen == 6);
  }
  SECTION("runtime feature width (from CSV)") {
    lepton::tensor<float, dyn, dyn> x(lepton::shape_t<2>{5, 2});
    lepton::tensor<float, dyn> y(5);
    for (std::size_t i = 0; i < 5; ++i) {
      x(i, 1) = float(i);
      y(i) = float(i);
    }
    ld::dataset ds(std::move(x), std::move(y));
    ld::loader ld_(ds, {.batch = 2, .seed = 2});
    for (auto [bx, by] : ld_.epoch(0)) {
      CHECK(bx.shape()[1] == 2);
      for (std::size_t k = 0; k < bx.shape()[0]; ++k) CHECK(bx(k, 1) == by(k));
    }
  }
}
