// Fashion-MNIST / MNIST loader: synthetic directories (valid and broken) and, when installed, the
// real Fashion-MNIST data set.

#include <catch2/catch.hpp>

#include <array>
#include <cmath>
#include <cstdint>
#include <iostream>
#include <string>

#include <lepton/data/fashion_mnist.hpp>

#include "data_test_util.hpp"

using namespace lepton_data_test;
namespace ld = lepton::data;

namespace {
/// Writes a synthetic train split of n images (gzipped) into dir.
void write_mnist_split(temp_dir const& dir, std::string const& prefix, std::size_t n, bool gz = true,
                       std::size_t labels = 0, unsigned char bad_label = 0) {
  bytes img = idx_u8({static_cast<std::uint32_t>(n), 28, 28}, pixels(n));
  std::size_t nl = labels ? labels : n;
  bytes lbl_data(nl);
  for (std::size_t i = 0; i < nl; ++i) lbl_data[i] = static_cast<unsigned char>(i % 10);
  if (bad_label) lbl_data[nl - 1] = bad_label;
  bytes lbl = idx_u8({static_cast<std::uint32_t>(nl)}, lbl_data);
  if (gz) {
    write_gz(dir / (prefix + "-images-idx3-ubyte.gz"), img);
    write_gz(dir / (prefix + "-labels-idx1-ubyte.gz"), lbl);
  } else {
    write_file(dir / (prefix + "-images-idx3-ubyte"), img);
    write_file(dir / (prefix + "-labels-idx1-ubyte"), lbl);
  }
}
} // namespace

TEST_CASE("fashion_mnist loads a synthetic directory", "[data][mnist]") {
  temp_dir dir;
  write_mnist_split(dir, "train", 12);
  write_mnist_split(dir, "t10k", 5, /*gz=*/false);
  bytes px = pixels(12);

  auto train = ld::fashion_mnist(dir.path(), ld::split::train);
  static_assert(std::is_same_v<decltype(train), ld::dataset<lepton::tensor<float, lepton::dyn, 784>,
                                                            lepton::tensor<std::int32_t, lepton::dyn>>>);
  REQUIRE(train.size() == 12);
  CHECK(train.features().shape() == lepton::shape_t<2>{12, 784});
  CHECK(train.features()(3, 100) == Approx(px[3 * 784 + 100] / 255.0f));
  CHECK(train.targets()(11) == 1);

  auto test = ld::mnist(dir.path(), ld::split::test); // raw files, same layout
  CHECK(test.size() == 5);

  auto cnn = ld::fashion_mnist<ld::image_layout::nchw>(dir.path(), ld::split::train);
  CHECK(cnn.features().shape() == lepton::shape_t<4>{12, 1, 28, 28});
  CHECK(cnn.features()(3, 0, 3, 16) == train.features()(3, 3 * 28 + 16));

  auto norm = ld::fashion_mnist(dir.path(), ld::split::train, {.normalize = true});
  float expect = (px[3 * 784 + 100] / 255.0f - ld::fashion_mnist_mean) / ld::fashion_mnist_stddev;
  CHECK(norm.features()(3, 100) == Approx(expect).epsilon(1e-5));
  auto norm_mnist = ld::mnist(dir.path(), ld::split::train, {.normalize = true});
  CHECK(norm_mnist.features()(3, 100) ==
        Approx((px[3 * 784 + 100] / 255.0f - ld::mnist_mean) / ld::mnist_stddev));
  auto custom =
      ld::fashion_mnist(dir.path(), ld::split::train, {.normalize = true, .mean = 0.5f, .stddev = 0.5f});
  CHECK(custom.features()(3, 100) == Approx(px[3 * 784 + 100] / 127.5f - 1.0f));
  CHECK_THROWS_AS(ld::fashion_mnist(dir.path(), ld::split::train, {.normalize = true, .stddev = 0.0f}),
                  lepton::value_error);
}

TEST_CASE("fashion_mnist reports broken directories naming the file", "[data][mnist]") {
  temp_dir dir;
  SECTION("missing directory") {
    auto p = dir / "does-not-exist";
    LEPTON_CHECK_THROWS_NAMING(ld::fashion_mnist(p, ld::split::train), lepton::io_error, p.string(),
                               "no such directory");
  }
  SECTION("missing file") {
    write_mnist_split(dir, "train", 3);
    LEPTON_CHECK_THROWS_NAMING(ld::fashion_mnist(dir.path(), ld::split::test), lepton::io_error,
                               dir.path().string(),
                               "no t10k-images file (looked for t10k-images-idx3-ubyte.gz");
  }
  SECTION("image/label count mismatch") {
    write_mnist_split(dir, "train", 4, true, /*labels=*/5);
    LEPTON_CHECK_THROWS_NAMING(ld::fashion_mnist(dir.path(), ld::split::train), lepton::format_error,
                               "train-images-idx3-ubyte.gz", "count mismatch: 4 images, but");
    LEPTON_CHECK_THROWS_NAMING(ld::fashion_mnist(dir.path(), ld::split::train), lepton::format_error,
                               "train-labels-idx1-ubyte.gz", "has 5 labels");
  }
  SECTION("label 10") {
    write_mnist_split(dir, "train", 4, true, 0, /*bad_label=*/10);
    LEPTON_CHECK_THROWS_NAMING(ld::fashion_mnist(dir.path(), ld::split::train), lepton::format_error,
                               (dir / "train-labels-idx1-ubyte.gz").string(),
                               "label 10 at index 3 is outside 0..9");
  }
  SECTION("wrong image size") {
    write_gz(dir / "train-images-idx3-ubyte.gz", idx_u8({2, 27, 28}, pixels(2, 27, 28)));
    write_gz(dir / "train-labels-idx1-ubyte.gz", idx_u8({2}, {1, 2}));
    LEPTON_CHECK_THROWS_NAMING(ld::fashion_mnist(dir.path(), ld::split::train), lepton::format_error,
                               (dir / "train-images-idx3-ubyte.gz").string(),
                               "must be (n, 28, 28), the file holds 2x27x28");
  }
  SECTION("labels of the wrong type") {
    write_gz(dir / "train-images-idx3-ubyte.gz", idx_u8({2, 28, 28}, pixels(2)));
    bytes lbl = idx_header_bytes(0x0C, {2});
    put_be32(lbl, 1);
    put_be32(lbl, 2);
    write_gz(dir / "train-labels-idx1-ubyte.gz", lbl);
    LEPTON_CHECK_THROWS_NAMING(ld::fashion_mnist(dir.path(), ld::split::train), lepton::format_error,
                               (dir / "train-labels-idx1-ubyte.gz").string(), "0x0C (int)");
  }
  SECTION("a directory where a file should be") {
    write_gz(dir / "train-images-idx3-ubyte.gz", idx_u8({2, 28, 28}, pixels(2)));
    fs::create_directory(dir / "train-labels-idx1-ubyte.gz");
    LEPTON_CHECK_THROWS_NAMING(ld::fashion_mnist(dir.path(), ld::split::train), lepton::io_error,
                               (dir / "train-labels-idx1-ubyte.gz").string(), "is a directory");
  }
  SECTION("a truncated image file") {
    write_mnist_split(dir, "train", 30);
    auto p = dir / "train-images-idx3-ubyte.gz";
    bytes gz = read_file(p);
    gz.resize(gz.size() / 3);
    write_file(p, gz);
    LEPTON_CHECK_THROWS_NAMING(ld::fashion_mnist(dir.path(), ld::split::train), lepton::format_error,
                               p.string(), "");
  }
}

namespace {
char const* const fashion_dir = "/usr/share/datasets/fashion-mnist";
bool have_fashion_mnist() {
  std::error_code ec;
  bool ok = fs::exists(fs::path(fashion_dir) / "train-images-idx3-ubyte.gz", ec);
  if (!ok) std::cout << "note: " << fashion_dir << " is missing: real Fashion-MNIST checks skipped\n";
  return ok;
}

template <class DS> std::array<std::size_t, 10> histogram(DS const& ds) {
  std::array<std::size_t, 10> h{};
  for (std::size_t i = 0; i < ds.size(); ++i) ++h.at(static_cast<std::size_t>(ds.targets()(i)));
  return h;
}
} // namespace

TEST_CASE("the real Fashion-MNIST train split", "[data][mnist][real]") {
  if (!have_fashion_mnist()) return;
  auto train = ld::fashion_mnist(fashion_dir, ld::split::train);
  REQUIRE(train.size() == 60000);
  CHECK(train.features().shape() == lepton::shape_t<2>{60000, 784});
  auto px = train.features().flat();
  float lo = 1, hi = 0;
  double sum = 0, sq = 0;
  for (float v : px) {
    lo = std::min(lo, v);
    hi = std::max(hi, v);
    sum += v;
    sq += double(v) * v;
  }
  CHECK(lo == 0.0f);
  CHECK(hi == 1.0f);
  double mean = sum / double(px.size());
  double sd = std::sqrt(sq / double(px.size()) - mean * mean);
  CHECK(mean == Approx(ld::fashion_mnist_mean).margin(1e-5));
  CHECK(sd == Approx(ld::fashion_mnist_stddev).margin(1e-5));
  for (auto count : histogram(train)) CHECK(count == 6000);
}

TEST_CASE("the real Fashion-MNIST test split, in both layouts", "[data][mnist][real]") {
  if (!have_fashion_mnist()) return;
  auto test = ld::fashion_mnist(fashion_dir, ld::split::test);
  REQUIRE(test.size() == 10000);
  for (auto count : histogram(test)) CHECK(count == 1000);
  auto cnn = ld::fashion_mnist<ld::image_layout::nchw>(fashion_dir, ld::split::test, {.normalize = true});
  REQUIRE(cnn.size() == 10000);
  CHECK(cnn.features()(9999, 0, 27, 27) ==
        Approx((test.features()(9999, 783) - ld::fashion_mnist_mean) / ld::fashion_mnist_stddev));
  CHECK(cnn.targets()(0) == test.targets()(0));
  CHECK(test.targets()(0) == 9); // the first test image is an ankle boot
}
