// CIFAR-10 binary reader (validation, errors naming the file, directory layouts) and the seeded
// augmenter (determinism, crop/flip geometry, normalisation), on small synthetic files.
#include <catch2/catch.hpp>
#include <lepton/data.hpp>
#include <lepton/data/augment.hpp>
#include <lepton/data/cifar10.hpp>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace lp = lepton;
namespace fs = std::filesystem;

namespace {
class temp_dir {
public:
  temp_dir() {
    std::random_device rd;
    auto stamp = static_cast<unsigned long long>(std::chrono::steady_clock::now().time_since_epoch().count());
    m_path = fs::temp_directory_path() /
             ("lepton-cifar-test-" + std::to_string(stamp) + "-" + std::to_string(rd()));
    fs::create_directories(m_path);
  }
  temp_dir(temp_dir const&) = delete;
  temp_dir& operator=(temp_dir const&) = delete;
  ~temp_dir() {
    std::error_code ec;
    fs::remove_all(m_path, ec);
  }
  fs::path const& path() const { return m_path; }

private:
  fs::path m_path;
};

/// Record i: label labels[i], pixel (c, q) = (i * 7 + c * 50 + q) % 256.
std::vector<unsigned char> records(std::vector<int> const& labels) {
  std::vector<unsigned char> b;
  for (std::size_t i = 0; i < labels.size(); ++i) {
    b.push_back(static_cast<unsigned char>(labels[i]));
    for (std::size_t c = 0; c < 3; ++c)
      for (std::size_t q = 0; q < 1024; ++q)
        b.push_back(static_cast<unsigned char>((i * 7 + c * 50 + q) % 256));
  }
  return b;
}
void write(fs::path const& p, std::vector<unsigned char> const& b) {
  std::ofstream f(p, std::ios::binary);
  f.write(reinterpret_cast<char const*>(b.data()), std::streamsize(b.size()));
}
} // namespace

TEST_CASE("cifar10: reads records as NCHW floats with labels", "[data][cifar]") {
  temp_dir d;
  write(d.path() / "data_batch_1.bin", records({3, 0, 9}));
  write(d.path() / "data_batch_2.bin", records({1, 2}));
  write(d.path() / "test_batch.bin", records({7}));
  auto train = lp::data::cifar10(d.path(), lp::data::split::train);
  REQUIRE(train.size() == 5);
  REQUIRE(train.targets()(0) == 3);
  REQUIRE(train.targets()(2) == 9);
  REQUIRE(train.targets()(3) == 1); // batch 2 follows batch 1
  auto const& x = train.features();
  REQUIRE(x(1, 2, 0, 5) == Approx(float((1 * 7 + 2 * 50 + 5) % 256) / 255.0f));
  REQUIRE(x(3, 0, 31, 31) == Approx(float((0 * 7 + 0 * 50 + 1023) % 256) / 255.0f));
  auto test = lp::data::cifar10(d.path(), lp::data::split::test);
  REQUIRE(test.size() == 1);
  REQUIRE(test.targets()(0) == 7);
  // normalisation per channel, and the cifar-10-batches-bin subdirectory layout
  fs::create_directories(d.path() / "parent" / "cifar-10-batches-bin");
  write(d.path() / "parent" / "cifar-10-batches-bin" / "test_batch.bin", records({4, 5}));
  auto norm = lp::data::cifar10(d.path() / "parent", lp::data::split::test, {.normalize = true});
  float const raw = float((1 * 7 + 1 * 50 + 9) % 256) / 255.0f;
  REQUIRE(norm.features()(1, 1, 0, 9) ==
          Approx((raw - lp::data::cifar10_mean[1]) / lp::data::cifar10_stddev[1]));
  auto few = lp::data::cifar10(d.path(), lp::data::split::train, {.max_samples = 4});
  REQUIRE(few.size() == 4);
}

TEST_CASE("cifar10: damaged files and missing paths throw errors naming them", "[data][cifar]") {
  temp_dir d;
  auto bad_size = records({1, 2});
  bad_size.pop_back();
  write(d.path() / "short.bin", bad_size);
  REQUIRE_THROWS_AS(lp::data::read_cifar10_file(d.path() / "short.bin"), lp::format_error);
  REQUIRE_THROWS_WITH(lp::data::read_cifar10_file(d.path() / "short.bin"),
                      Catch::Contains("short.bin") && Catch::Contains("6145") && Catch::Contains("3073"));
  auto bad_label = records({1, 10, 2});
  write(d.path() / "label.bin", bad_label);
  REQUIRE_THROWS_AS(lp::data::read_cifar10_file(d.path() / "label.bin"), lp::format_error);
  REQUIRE_THROWS_WITH(lp::data::read_cifar10_file(d.path() / "label.bin"),
                      Catch::Contains("label.bin") && Catch::Contains("label 10 of record 1"));
  write(d.path() / "empty.bin", {});
  REQUIRE_THROWS_WITH(lp::data::read_cifar10_file(d.path() / "empty.bin"),
                      Catch::Contains("empty.bin") && Catch::Contains("empty"));
  REQUIRE_THROWS_AS(lp::data::read_cifar10_file(d.path() / "missing.bin"), lp::io_error);
  REQUIRE_THROWS_WITH(lp::data::read_cifar10_file(d.path() / "missing.bin"), Catch::Contains("missing.bin"));
  REQUIRE_THROWS_WITH(lp::data::read_cifar10_file(d.path()), Catch::Contains("directory"));
  REQUIRE_THROWS_WITH(lp::data::cifar10(d.path() / "nope", lp::data::split::train), Catch::Contains("nope"));
  REQUIRE_THROWS_WITH(lp::data::cifar10(d.path(), lp::data::split::train), Catch::Contains("data_batch"));
  REQUIRE_THROWS_WITH(lp::data::cifar10(d.path(), lp::data::split::test), Catch::Contains("test_batch.bin"));
  REQUIRE_THROWS_WITH(lp::data::read_cifar10_file(d.path() / "label.bin", {.max_bytes = 100}),
                      Catch::Contains("too large"));
}

namespace {
/// Checks that `expr` throws `type` with a message containing every one of `parts`.
template <class E, class F> void require_throws_naming(F&& f, std::vector<std::string> const& parts) {
  bool thrown = false;
  try {
    f();
  } catch (E const& e) {
    thrown = true;
    std::string const what = e.what();
    INFO("what(): " << what);
    for (auto const& part : parts) CHECK(what.find(part) != std::string::npos);
  }
  REQUIRE(thrown);
}
} // namespace

TEST_CASE("cifar10: only canonical batch names, without gaps or duplicates", "[data][cifar]") {
  auto const one = records({1});
  auto train = [](fs::path const& dir) { return lp::data::cifar10(dir, lp::data::split::train); };
  SECTION("look-alike names are errors naming the directory and the file") {
    for (std::string bad :
         {"data_batch_01.bin", "data_batch_001.bin", "data_batch_6.bin", "data_batch_0.bin",
          "data_batch_1 (copy).bin", "Data_Batch_1.bin", "data_batch_+1.bin", "data_batch.bin"}) {
      INFO(bad);
      temp_dir d;
      write(d.path() / "data_batch_1.bin", one);
      write(d.path() / bad, one);
      require_throws_naming<lp::format_error>(
          [&] { train(d.path()); },
          {(d.path() / bad).string(), "not a CIFAR-10 batch name", "data_batch_1.bin ... data_batch_5.bin"});
    }
    temp_dir d;
    write(d.path() / "data_batch_1.bin", one);
    write(d.path() / "data_batch_01.bin", one);
    write(d.path() / "data_batch_001.bin", one);
    require_throws_naming<lp::format_error>(
        [&] { train(d.path()); },
        {"data_batch_001.bin", "a duplicate of data_batch_1.bin", "and 1 more like it"});
    write(d.path() / "test_batch.bin", one);
    CHECK(lp::data::cifar10(d.path(), lp::data::split::test).size() == 1); // the test split lists no batches
  }
  SECTION("a gap is an io_error naming the directory and the missing file") {
    temp_dir d;
    for (auto const* n : {"data_batch_1.bin", "data_batch_2.bin", "data_batch_4.bin"})
      write(d.path() / n, one);
    require_throws_naming<lp::io_error>(
        [&] { train(d.path()); },
        {d.path().string(), "missing data_batch_3.bin, but data_batch_4.bin exists"});
    fs::remove(d.path() / "data_batch_1.bin");
    require_throws_naming<lp::io_error>([&] { train(d.path()); }, {"missing data_batch_1.bin"});
  }
  SECTION("a gap-free prefix, unrelated files and test_batch.bin are fine") {
    temp_dir d;
    for (auto const* n : {"data_batch_2.bin", "data_batch_1.bin", "data_batch_3.bin", "test_batch.bin"})
      write(d.path() / n, one);
    write(d.path() / "batches.meta.txt", {'a'});
    write(d.path() / "data_batch_1.bin.bak", one);
    write(d.path() / "readme.html", one);
    auto files = lp::data::cifar10_files(d.path(), lp::data::split::train);
    REQUIRE(files.size() == 3);
    CHECK(files[0].filename() == "data_batch_1.bin");
    CHECK(files[2].filename() == "data_batch_3.bin");
    CHECK(train(d.path()).size() == 3);
  }
  SECTION("the same files in the directory and in its cifar-10-batches-bin") {
    temp_dir d;
    fs::create_directories(d.path() / "cifar-10-batches-bin");
    write(d.path() / "cifar-10-batches-bin" / "data_batch_1.bin", one);
    write(d.path() / "data_batch_1.bin", one);
    require_throws_naming<lp::format_error>(
        [&] { train(d.path()); },
        {(d.path() / "data_batch_1.bin").string(), "duplicate CIFAR-10 file", "cifar-10-batches-bin"});
  }
}

TEST_CASE("augmenter: deterministic for a seed, crop/flip geometry, normalisation", "[data][augment]") {
  using imgs = lp::tensor<float, lp::dyn, 2, 6, 5>;
  imgs src(8);
  for (std::size_t i = 0; i < src.size(); ++i) src.data()[i] = float(i % 97) + 1.0f; // no zeros
  auto run = [&](lp::data::augment_options o, std::uint64_t step) {
    imgs b = src;
    lp::data::augmenter aug(o);
    aug.apply(b.view(), step);
    return b;
  };
  auto a = run({.crop_padding = 2, .horizontal_flip = true, .seed = 5}, 3);
  auto b = run({.crop_padding = 2, .horizontal_flip = true, .seed = 5}, 3);
  auto c = run({.crop_padding = 2, .horizontal_flip = true, .seed = 6}, 3);
  auto e = run({.crop_padding = 2, .horizontal_flip = true, .seed = 5}, 4);
  REQUIRE(std::equal(a.data(), a.data() + a.size(), b.data()));
  REQUIRE_FALSE(std::equal(a.data(), a.data() + a.size(), c.data()));
  REQUIRE_FALSE(std::equal(a.data(), a.data() + a.size(), e.data()));
  // the call counter gives steps 0, 1, 2, ...
  {
    imgs b0 = src, b1 = src;
    lp::data::augmenter aug({.crop_padding = 2, .horizontal_flip = true, .seed = 5});
    aug(b0.view());
    aug(b1.view());
    auto r1 = run({.crop_padding = 2, .horizontal_flip = true, .seed = 5}, 1);
    REQUIRE(std::equal(b1.data(), b1.data() + b1.size(), r1.data()));
    REQUIRE(aug.steps() == 2);
  }
  // every augmented image is a shifted (by at most 2), possibly mirrored copy with zero fill
  std::size_t flips = 0, shifted = 0;
  for (std::size_t i = 0; i < 8; ++i) {
    bool found = false;
    for (int flip = 0; flip < 2 && !found; ++flip)
      for (int dy = -2; dy <= 2 && !found; ++dy)
        for (int dx = -2; dx <= 2 && !found; ++dx) {
          bool ok = true;
          for (std::size_t ch = 0; ch < 2 && ok; ++ch)
            for (int y = 0; y < 6 && ok; ++y)
              for (int x = 0; x < 5 && ok; ++x) {
                int const sx0 = flip ? 4 - x : x; // mirror after the crop
                int const sy = y + dy, sx = sx0 + dx;
                float expect = sy < 0 || sy >= 6 || sx < 0 || sx >= 5
                                   ? 0.0f
                                   : src(i, ch, std::size_t(sy), std::size_t(sx));
                ok = a(i, ch, std::size_t(y), std::size_t(x)) == expect;
              }
          if (ok) {
            found = true;
            flips += std::size_t(flip);
            shifted += std::size_t(dy != 0 || dx != 0);
          }
        }
    REQUIRE(found);
  }
  REQUIRE(shifted > 0);
  // flip only, no crop: an exact mirror or the identity
  auto f = run({.horizontal_flip = true, .seed = 1}, 0);
  for (std::size_t i = 0; i < 8; ++i) {
    bool same = f(i, 0, 0, 0) == src(i, 0, 0, 0);
    for (std::size_t ch = 0; ch < 2; ++ch)
      for (std::size_t y = 0; y < 6; ++y)
        for (std::size_t x = 0; x < 5; ++x) REQUIRE(f(i, ch, y, x) == src(i, ch, y, same ? x : 4 - x));
  }
  // normalisation only
  auto nrm = run({.mean = {1.0f, 2.0f}, .stddev = {2.0f, 4.0f}}, 0);
  REQUIRE(nrm(3, 1, 2, 2) == (src(3, 1, 2, 2) - 2.0f) / 4.0f);
  REQUIRE(nrm(3, 0, 2, 2) == (src(3, 0, 2, 2) - 1.0f) / 2.0f);
  REQUIRE_THROWS_AS(run({.mean = {1.0f}, .stddev = {2.0f}}, 0), lp::shape_error);
  REQUIRE_THROWS_AS(lp::data::augmenter({.mean = {1.0f, 2.0f}, .stddev = {0.0f, 1.0f}}), lp::value_error);
  (void)flips;
}

TEST_CASE("augmenter: applied to loader batches in a training loop", "[data][augment]") {
  temp_dir d;
  std::vector<int> labels;
  for (int i = 0; i < 40; ++i) labels.push_back(i % 10);
  write(d.path() / "data_batch_1.bin", records(labels));
  auto train = lp::data::cifar10(d.path(), lp::data::split::train);
  lp::data::loader ld(train, {.batch = 16, .seed = 1});
  auto epoch_sums = [&](std::uint64_t seed) {
    lp::data::augmenter aug({.crop_padding = 4, .horizontal_flip = true, .seed = seed});
    std::vector<double> sums;
    for (auto [x, y] : ld.epoch(0)) {
      aug(x);
      double s = 0;
      for (std::size_t i = 0; i < x.size(); ++i) s += x.data()[i] * double(i % 13);
      sums.push_back(s);
    }
    return sums;
  };
  REQUIRE(epoch_sums(3) == epoch_sums(3));
  REQUIRE(epoch_sums(3) != epoch_sums(4));
}
