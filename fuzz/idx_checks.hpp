#pragma once
// Invariants of an accepted IDX file, shared by fuzz_idx and fuzz_idx_gzip.
#include <cstdint>
#include <string>

#include <lepton/data/idx.hpp>

#include "fuzz_common.hpp"

namespace lepton_fuzz::idx {

inline void check_idx(lepton::data::idx_file const& f) {
  auto const& h = f.header;
  check(!h.dims.empty() && h.dims.size() <= lepton::max_rank, "idx: rank out of range");
  check(f.bytes.size() == h.data_bytes(), "idx: bytes.size() != header.data_bytes()");
  // Decoding: integral targets may reject non-finite or out-of-range floats (format_error).
  std::string const name = f.path.string();
  (void)accepts(name, [&] { check(f.values<float>().size() == h.count(), "idx: values<float> size"); });
  (void)accepts(name, [&] { (void)f.values<std::int32_t>(); });
  (void)accepts(name, [&] { (void)f.values<std::uint8_t>(); });
  (void)accepts(name, [&] { (void)f.values<double>(); });
}

/// 1 MiB: far above what a fuzzer input reaches raw, reachable through gzip (up to ~1032:1), so
/// the max_bytes refusal is exercised too.
inline constexpr lepton::data::idx_options options{.max_bytes = std::uint64_t{1} << 20};

} // namespace lepton_fuzz::idx
