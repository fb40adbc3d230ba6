// Fuzz target: lepton::io::decode_npy (the parser behind load_npy), then a round trip: an accepted
// array, written again with encode_npy, must read back bit-identical.
#include <cstddef>
#include <span>

#include <lepton/io/npy.hpp>

#include "fuzz_common.hpp"
#include "io_checks.hpp"

LEPTON_FUZZ_ENTRY(npy) {
  using namespace lepton_fuzz;
  std::span<std::byte const> const bytes(reinterpret_cast<std::byte const*>(data), size);
  run_input("fuzz.npy", [&] {
    auto t = lepton::io::decode_npy(bytes, "fuzz.npy");
    io::check_tensor(t);
    auto again = lepton::io::encode_npy(lepton::io::ref("x", t));
    auto back = lepton::io::decode_npy(again, "fuzz.npy");
    check(back == t, "npy: encode_npy(decode_npy(f)) does not read back equal");
  });
  return 0;
}
