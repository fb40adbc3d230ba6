#pragma once
// Invariants of accepted .npy/.npz/safetensors content, shared by the io fuzz targets.
#include <cstddef>
#include <string>
#include <vector>

#include <lepton/io/dyn_tensor.hpp>

#include "fuzz_common.hpp"

namespace lepton_fuzz::io {

/// The byte size agrees with dtype and shape.
inline void check_tensor(lepton::io::dyn_tensor const& t) {
  std::size_t n = 1;
  for (auto d : t.shape()) n *= d; // cannot overflow: the loader checked the byte size
  check(t.size() == n, "io: element count != product of the shape");
  check(t.nbytes() == n * lepton::io::itemsize(t.type()), "io: nbytes != count * itemsize");
  check(n == 0 || t.data() != nullptr, "io: no data pointer");
}

/// Two maps hold the same names in the same order with equal tensors.
inline bool same(lepton::io::tensor_map const& a, lepton::io::tensor_map const& b) {
  if (a.size() != b.size() || a.metadata != b.metadata) return false;
  auto ib = b.begin();
  for (auto const& [name, t] : a) {
    if (ib->first != name || !(ib->second == t)) return false;
    ++ib;
  }
  return true;
}

} // namespace lepton_fuzz::io
