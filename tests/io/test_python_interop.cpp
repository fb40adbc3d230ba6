// Tensor-level interoperation with Python: lepton writes safetensors/.npz/.npy, tests/io/interop.py
// (json + numpy only) checks them and writes its own files, which lepton then reads and checks.
// Skipped with a warning when /usr/bin/python3 or numpy is missing.
#include <catch2/catch.hpp>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include <lepton/io.hpp>

#include "io_test_util.hpp"

namespace interop_test {
namespace lio = lepton::io;
using lepton::tensor;

/// Runs a shell command; returns its exit status and appends its output to `out`.
inline int run(std::string const& cmd, std::string& out) {
  FILE* f = ::popen((cmd + " 2>&1").c_str(), "r");
  if (!f) return -1;
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, f)) out.append(buf, n);
  int status = ::pclose(f);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

template <class T, std::size_t... D> void iota_fill(tensor<T, D...>& t, auto&& f) {
  for (std::size_t i = 0; i < t.size(); ++i) t.flat()[i] = f(i);
}

/// The values interop.py's python_expected() defines.
struct python_values {
  tensor<float, 3, 4> f32;
  tensor<double, 5> f64;
  tensor<std::int32_t, 2, 3> i32;
  tensor<std::int64_t, 2, 2, 1> i64;
  tensor<std::uint8_t, 256> u8;
  tensor<double> scalar;
  tensor<float, 2, 0> empty;
  python_values() {
    iota_fill(f32, [](std::size_t i) { return static_cast<float>(i) * 0.25f; });
    iota_fill(f64, [](std::size_t i) { return static_cast<double>(i) / 4; });
    iota_fill(i32, [](std::size_t i) { return static_cast<std::int32_t>(i) - 3; });
    iota_fill(i64, [](std::size_t i) { return static_cast<std::int64_t>(i) * 1000000000000; });
    iota_fill(u8, [](std::size_t i) { return static_cast<std::uint8_t>(i); });
    scalar.fill(3.5);
  }
  void check(lio::tensor_map const& m, std::string const& what) const {
    INFO(what);
    CHECK(m.size() == 7);
    CHECK(io_test::same_bits(f32, m.at("p_f32")));
    CHECK(io_test::same_bits(f64, m.at("p_f64")));
    CHECK(io_test::same_bits(i32, m.at("p_i32")));
    CHECK(io_test::same_bits(i64, m.at("p_i64")));
    CHECK(io_test::same_bits(u8, m.at("p_u8")));
    CHECK(io_test::same_bits(scalar, m.at("p_scalar")));
    CHECK(io_test::same_bits(empty, m.at("p_empty")));
  }
};

} // namespace interop_test

TEST_CASE("python (json + numpy) reads lepton's files and lepton reads python's", "[io][python]") {
  using namespace interop_test;
  std::string out;
  if (::access("/usr/bin/python3", X_OK) != 0 || run("/usr/bin/python3 -c 'import numpy'", out) != 0) {
    WARN("skipped: /usr/bin/python3 with numpy is not available (" << out << ")");
    return;
  }
  std::string const script = std::string(LEPTON_SOURCE_DIR) + "/tests/io/interop.py";
  io_test::scratch_dir dir;

  // the values interop.py's lepton_expected() defines
  tensor<float, 2, 3> a;
  iota_fill(a, [](std::size_t i) { return static_cast<float>(i) * 0.5f - 1.0f; });
  tensor<double, 4> b;
  iota_fill(b, [](std::size_t i) { return 1.0 / static_cast<double>(i + 1); });
  tensor<std::int32_t, 2, 2, 2> c;
  iota_fill(c, [](std::size_t i) { return static_cast<std::int32_t>(i) * 7 - 20; });
  tensor<std::int64_t> d({}, -1234567890123);
  tensor<std::uint8_t, 5> e({5}, {0, 1, 127, 128, 255});
  tensor<float, lepton::dyn, 3> empty(0);
  tensor<float, 3, 4> w;
  iota_fill(w, [](std::size_t i) { return static_cast<float>(static_cast<double>(i * i % 17) / 8.0 - 1.0); });
  std::vector<lio::tensor_ref> refs{lio::ref("a", a),         lio::ref("b", b), lio::ref("c", c),
                                    lio::ref("d", d),         lio::ref("e", e), lio::ref("empty", empty),
                                    lio::ref("fc1.weight", w)};
  lio::save_safetensors(dir / "lepton.safetensors", refs, {{"framework", "lepton"}, {"epoch", "3"}});
  lio::save_npz(dir / "lepton.npz", refs);
  lio::save_npy(dir / "lepton_a.npy", a);

  out.clear();
  int rc = run("/usr/bin/python3 '" + script + "' '" + dir.path().string() + "'", out);
  INFO("interop.py output:\n" << out);
  REQUIRE(rc == 0);

  python_values const p;
  auto st = lio::load_safetensors(dir / "python.safetensors");
  p.check(st, "python.safetensors");
  CHECK(st.metadata.at("source") == "numpy");
  p.check(lio::load_npz(dir / "python.npz"), "python.npz (stored)");
  p.check(lio::load_npz(dir / "python_c.npz"), "python_c.npz (deflate)");
  CHECK(io_test::same_bits(p.f32, lio::load_npy(dir / "python_fortran.npy")));
  CHECK(io_test::same_bits(p.f64, lio::load_npy(dir / "python_be.npy")));
  CHECK(io_test::same_bits(p.i64, lio::load_npy(dir / "python_be_i64.npy")));
  CHECK(io_test::same_bits(p.i32, lio::load_npy(dir / "python_v2.npy")));
  CHECK(io_test::same_bits(p.i32, lio::load_npy(dir / "python_v3.npy")));

  // into typed tensors with the strong guarantee
  tensor<float, 3, 4> f32;
  tensor<std::uint8_t, lepton::dyn> u8;
  lio::load_safetensors_into(dir / "python.safetensors", {lio::target("p_f32", f32), lio::target("p_u8", u8)},
                             {.allow_unexpected = true});
  CHECK(io_test::same_tensor_bits(f32, p.f32));
  CHECK(io_test::same_tensor_bits(u8, p.u8));
}
