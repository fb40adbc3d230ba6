// Writes a small synthetic data set in the CIFAR-10 binary format, for the cifar10_cnn example's
// smoke test:  cifar_synthetic DIR [TRAIN_SAMPLES] [TEST_SAMPLES]
// Class k is a bright square of colour k at a position that depends on k, over noise, so that a CNN
// can learn it in a couple of epochs.
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

namespace {
void write_split(std::filesystem::path const& file, std::size_t n, std::uint64_t seed) {
  std::vector<unsigned char> rec(3073);
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  std::uint64_t s = seed;
  auto next = [&] {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<unsigned>(s >> 33);
  };
  for (std::size_t i = 0; i < n; ++i) {
    unsigned const k = static_cast<unsigned>(i % 10);
    rec[0] = static_cast<unsigned char>(k);
    std::size_t const y0 = 4 + (k % 5) * 4, x0 = 4 + (k / 5) * 12;
    for (std::size_t c = 0; c < 3; ++c)
      for (std::size_t y = 0; y < 32; ++y)
        for (std::size_t x = 0; x < 32; ++x) {
          unsigned v = next() % 64;
          if (y >= y0 && y < y0 + 8 && x >= x0 && x < x0 + 8) v += ((k >> c) & 1) ? 180 : 90;
          rec[1 + c * 1024 + y * 32 + x] = static_cast<unsigned char>(v);
        }
    out.write(reinterpret_cast<char const*>(rec.data()), static_cast<std::streamsize>(rec.size()));
  }
  if (!out) {
    std::fprintf(stderr, "cifar_synthetic: cannot write %s\n", file.string().c_str());
    std::exit(1);
  }
}
} // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: cifar_synthetic DIR [TRAIN_SAMPLES] [TEST_SAMPLES]\n");
    return 2;
  }
  std::filesystem::path dir = argv[1];
  std::size_t const ntrain = argc > 2 ? std::strtoul(argv[2], nullptr, 10) : 640;
  std::size_t const ntest = argc > 3 ? std::strtoul(argv[3], nullptr, 10) : 200;
  std::filesystem::create_directories(dir);
  write_split(dir / "data_batch_1.bin", ntrain / 2, 1);
  write_split(dir / "data_batch_2.bin", ntrain - ntrain / 2, 2);
  write_split(dir / "test_batch.bin", ntest, 3);
  return 0;
}
