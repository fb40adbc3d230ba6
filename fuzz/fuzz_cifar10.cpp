// Fuzz target: lepton::data::read_cifar10_files on one or two files. Input layout: byte 0 =
// options (bit 0 normalize, bits 1-3 max_samples, bit 4 round the content down to whole 3073-byte
// records so that the label and pixel paths are reached, bit 5 split the content into two files);
// the rest = the file content.
#include <cmath>
#include <cstdint>
#include <filesystem>
#include <vector>

#include <lepton/data/cifar10.hpp>

#include "fuzz_common.hpp"

LEPTON_FUZZ_ENTRY(cifar10) {
  using namespace lepton_fuzz;
  if (size < 1) return 0;
  unsigned const b = data[0];
  lepton::data::cifar10_options opt;
  opt.normalize = b & 1;
  opt.max_samples = (b >> 1) & 7;
  opt.max_bytes = std::uint64_t{1} << 20;
  std::size_t n = size - 1;
  if (b & 16) n -= n % lepton::data::cifar10_record_bytes;
  std::size_t first = n;
  if (b & 32) { // split at a record boundary near the middle (or the middle, if unaligned)
    first = n / 2;
    if (b & 16) first -= first % lepton::data::cifar10_record_bytes;
  }
  static mem_file f1("lepton-fuzz-cifar10-a");
  static mem_file f2("lepton-fuzz-cifar10-b");
  f1.assign(data + 1, first);
  f2.assign(data + 1 + first, n - first);
  std::vector<std::filesystem::path> files{f1.path()};
  if (b & 32) files.push_back(f2.path());
  run_input("/proc/self/fd/", [&] {
    auto ds = lepton::data::read_cifar10_files(files, opt);
    auto const& x = ds.features();
    auto const& y = ds.targets();
    std::size_t records = 0;
    for (std::size_t k = 0; k < files.size(); ++k)
      records += (k == 0 ? first : n - first) / lepton::data::cifar10_record_bytes;
    std::size_t const want = opt.max_samples ? std::min(records, opt.max_samples) : records;
    check(y.shape()[0] == want && x.shape()[0] == want, "cifar10: sample count");
    for (std::size_t i = 0; i < y.size(); ++i)
      check(y.data()[i] >= 0 && y.data()[i] <= 9, "cifar10: label outside 0..9");
    for (std::size_t i = 0; i < x.size(); ++i) {
      float v = x.data()[i];
      check(std::isfinite(v), "cifar10: non-finite pixel");
      if (!opt.normalize) check(v >= 0.0f && v <= 1.0f, "cifar10: pixel outside [0, 1]");
    }
  });
  return 0;
}
