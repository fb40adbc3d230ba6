// Replays every fuzz target (fuzz/fuzz_*.cpp, built here without libFuzzer) over its checked-in
// seed corpus and the saved regressions: each input is accepted or rejected with a lepton::error
// naming the input, and the target's invariants hold. Under the asan preset this is the ASan+UBSan
// check of the seeds; the fuzzing itself is fuzz/run.sh (docs/reliability.md).
#include <catch2/catch.hpp>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "fuzz_common.hpp"

int lepton_fuzz_idx(std::uint8_t const*, std::size_t);
int lepton_fuzz_idx_gzip(std::uint8_t const*, std::size_t);
int lepton_fuzz_mnist(std::uint8_t const*, std::size_t);
int lepton_fuzz_csv(std::uint8_t const*, std::size_t);
int lepton_fuzz_npy(std::uint8_t const*, std::size_t);
int lepton_fuzz_npz(std::uint8_t const*, std::size_t);
int lepton_fuzz_safetensors(std::uint8_t const*, std::size_t);
#ifdef LEPTON_FUZZ_HAVE_CIFAR10
int lepton_fuzz_cifar10(std::uint8_t const*, std::size_t);
#endif

namespace {

namespace fs = std::filesystem;

/// Runs `entry` over fuzz/corpus/<name>/ and fuzz/regressions/<name>/; returns the inputs run.
std::size_t replay(std::string const& name, int (*entry)(std::uint8_t const*, std::size_t)) {
  lepton_fuzz::counts() = {};
  std::size_t n = 0;
  for (char const* dir : {"corpus", "regressions"}) {
    fs::path d = fs::path(LEPTON_FUZZ_DIR) / dir / name;
    if (!fs::is_directory(d)) continue;
    std::vector<fs::path> files;
    for (auto const& e : fs::directory_iterator(d))
      if (e.is_regular_file()) files.push_back(e.path());
    std::sort(files.begin(), files.end());
    for (auto const& f : files) {
      std::ifstream in(f, std::ios::binary);
      std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      INFO(f.string());
      entry(reinterpret_cast<std::uint8_t const*>(bytes.data()), bytes.size());
      ++n;
    }
  }
  auto const& c = lepton_fuzz::counts();
  std::printf("fuzz replay %-12s %3zu inputs: %3zu accepted, %3zu rejected\n", name.c_str(), n, c.accepted,
              c.rejected);
  // Every corpus holds valid files and hostile ones: both outcomes must occur.
  CHECK(c.accepted > 0);
  CHECK(c.rejected > 0);
  return n;
}

} // namespace

TEST_CASE("fuzz corpora and regressions replay cleanly", "[reliability][fuzz]") {
  SECTION("idx") { REQUIRE(replay("idx", lepton_fuzz_idx) > 0); }
  SECTION("idx_gzip") { REQUIRE(replay("idx_gzip", lepton_fuzz_idx_gzip) > 0); }
  SECTION("mnist") { REQUIRE(replay("mnist", lepton_fuzz_mnist) > 0); }
  SECTION("csv") { REQUIRE(replay("csv", lepton_fuzz_csv) > 0); }
  SECTION("npy") { REQUIRE(replay("npy", lepton_fuzz_npy) > 0); }
  SECTION("npz") { REQUIRE(replay("npz", lepton_fuzz_npz) > 0); }
  SECTION("safetensors") { REQUIRE(replay("safetensors", lepton_fuzz_safetensors) > 0); }
#ifdef LEPTON_FUZZ_HAVE_CIFAR10
  SECTION("cifar10") { REQUIRE(replay("cifar10", lepton_fuzz_cifar10) > 0); }
#endif
}
