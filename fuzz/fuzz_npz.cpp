// Fuzz target: lepton::io::decode_npz (zip directory, local headers, stored and deflate entries,
// CRC-32, the .npy inside), then a round trip through encode_npz.
#include <cstddef>
#include <span>

#include <lepton/io/npz.hpp>

#include "fuzz_common.hpp"
#include "io_checks.hpp"

LEPTON_FUZZ_ENTRY(npz) {
  using namespace lepton_fuzz;
  std::span<std::byte const> const bytes(reinterpret_cast<std::byte const*>(data), size);
  run_input("fuzz.npz", [&] {
    auto m = lepton::io::decode_npz(bytes, "fuzz.npz");
    for (auto const& [name, t] : m) {
      check(!name.empty(), "npz: empty tensor name");
      io::check_tensor(t);
    }
    auto again = lepton::io::encode_npz(m.refs());
    auto back = lepton::io::decode_npz(again, "fuzz.npz");
    check(io::same(back, m), "npz: encode_npz(decode_npz(f)) does not read back equal");
  });
  return 0;
}
