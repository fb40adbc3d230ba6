// Fuzz target: lepton::io::decode_safetensors (length prefix, strict JSON header, dtype/shape/
// offset validation, contiguity), a round trip through encode_safetensors, and the strong
// guarantee of load_safetensors_into: on any exception every target is unchanged.
#include <cstddef>
#include <cstring>
#include <span>
#include <vector>

#include <lepton/io/safetensors.hpp>

#include "fuzz_common.hpp"
#include "io_checks.hpp"

namespace lepton_fuzz::safetensors {

/// Loads into three targets (two resizable, one fixed) and checks the all-or-nothing promise.
inline void check_load_into(std::span<std::byte const> bytes, bool strict) {
  lepton::tensor<float, lepton::dyn, lepton::dyn> a(lepton::shape_t<2>{2, 3});
  lepton::tensor<std::int64_t, lepton::dyn> b(lepton::shape_t<1>{4});
  lepton::tensor<double, 2, 2> c;
  for (std::size_t i = 0; i < a.size(); ++i) a.data()[i] = float(i) + 0.5f;
  for (std::size_t i = 0; i < b.size(); ++i) b.data()[i] = std::int64_t(i) - 2;
  for (std::size_t i = 0; i < c.size(); ++i) c.data()[i] = double(i) * 0.25;
  auto const a0 = a;
  auto const b0 = b;
  auto const c0 = c;
  namespace lio = lepton::io;
  std::vector<lio::tensor_target> const targets{lio::target("a", a), lio::target("b", b),
                                                lio::target("c", c)};
  lio::load_into_options const into{.allow_missing = !strict, .allow_unexpected = !strict};
  bool const ok = accepts("fuzz.safetensors", [&] {
    lio::detail::load_safetensors_into_from(lio::detail::byte_source(bytes, "fuzz.safetensors"), targets,
                                            into, {});
  });
  if (!ok) {
    auto eq = [](auto const& x, auto const& y) {
      return x.shape() == y.shape() && std::memcmp(x.data(), y.data(), x.size() * sizeof(*x.data())) == 0;
    };
    check(eq(a, a0) && eq(b, b0) && eq(c, c0),
          "safetensors: a failed load_safetensors_into changed a target");
  }
}

} // namespace lepton_fuzz::safetensors

LEPTON_FUZZ_ENTRY(safetensors) {
  using namespace lepton_fuzz;
  std::span<std::byte const> const bytes(reinterpret_cast<std::byte const*>(data), size);
  run_input("fuzz.safetensors", [&] {
    auto m = lepton::io::decode_safetensors(bytes, "fuzz.safetensors");
    for (auto const& [name, t] : m) io::check_tensor(t);
    auto again = lepton::io::encode_safetensors(m.refs(), m.metadata);
    auto back = lepton::io::decode_safetensors(again, "fuzz.safetensors");
    check(io::same(back, m), "safetensors: encode(decode(f)) does not read back equal");
  });
  safetensors::check_load_into(bytes, (size & 1) != 0);
  return 0;
}
