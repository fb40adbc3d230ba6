// Fuzz target: lepton::data::load_mnist_files, the pair of IDX files (labels, images) behind
// fashion_mnist()/mnist(): type, rank, 28x28, count agreement and the 0..9 label range on top of
// read_idx. Input layout: bytes 0-1 = the labels file's length (little-endian, reduced modulo the
// rest), byte 2 bit 0 = normalize; then the labels file, then the images file.
#include <cmath>
#include <cstdint>

#include <lepton/data/fashion_mnist.hpp>

#include "fuzz_common.hpp"

LEPTON_FUZZ_ENTRY(mnist) {
  using namespace lepton_fuzz;
  if (size < 3) return 0;
  std::size_t const rest = size - 3;
  std::size_t const nlbl = (std::size_t{data[0]} | std::size_t{data[1]} << 8) % (rest + 1);
  bool const normalize = data[2] & 1;
  static mem_file labels("lepton-fuzz-mnist-labels");
  static mem_file images("lepton-fuzz-mnist-images");
  labels.assign(data + 3, nlbl);
  images.assign(data + 3 + nlbl, rest - nlbl);
  // Both paths start with /proc/self/fd/: a message must name one of the two files.
  run_input("/proc/self/fd/", [&] {
    lepton::data::mnist_options opt{.normalize = normalize};
    opt.idx.max_bytes = std::uint64_t{1} << 20;
    auto ds = lepton::data::load_mnist_files(images.path(), labels.path(), opt);
    auto const& x = ds.features();
    auto const& y = ds.targets();
    check(x.shape()[0] == y.shape()[0], "mnist: image and label counts differ");
    for (std::size_t i = 0; i < y.size(); ++i)
      check(y.data()[i] >= 0 && y.data()[i] <= 9, "mnist: label outside 0..9");
    for (std::size_t i = 0; i < x.size(); ++i) {
      float v = x.data()[i];
      check(std::isfinite(v), "mnist: non-finite pixel");
      if (!normalize) check(v >= 0.0f && v <= 1.0f, "mnist: pixel outside [0, 1]");
    }
  });
  return 0;
}
