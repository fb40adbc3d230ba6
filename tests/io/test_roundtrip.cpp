// Round trips: safetensors, .npy and .npz give back bit-identical tensors for every dtype and ranks 0..4
// (zero-size dimensions included); typed conversion and load_*_into semantics.
#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <string>
#include <tuple>
#include <vector>

#include <lepton/io.hpp>

#include "io_test_util.hpp"

namespace roundtrip_test {

namespace lio = lepton::io;
using lepton::dyn;
using lepton::tensor;

/// One tensor of every rank 0..4 of element type T, two of them with a zero-size dimension.
template <class T> struct rank_set {
  tensor<T> r0;
  tensor<T, dyn> r1;
  tensor<T, dyn, 3> r2;
  tensor<T, 2, dyn, 4> r3;
  tensor<T, dyn, 2, 3, dyn> r4;
  tensor<T, dyn, 3> z2;
  tensor<T, 2, dyn, 4> z3;
  tensor<T, dyn, 2, 3, dyn> z4;

  explicit rank_set(std::uint64_t seed) : r1(7), r2(5), r3(3), r4(2, 5), z2(0), z3(0), z4(1, 0) {
    io_test::fill_random_bits(r0, seed + 0);
    io_test::fill_random_bits(r1, seed + 1);
    io_test::fill_random_bits(r2, seed + 2);
    io_test::fill_random_bits(r3, seed + 3);
    io_test::fill_random_bits(r4, seed + 4);
  }
  std::vector<lio::tensor_ref> refs(std::string const& p) const {
    return {lio::ref(p + "r0", r0), lio::ref(p + "r1", r1), lio::ref(p + "r2", r2), lio::ref(p + "r3", r3),
            lio::ref(p + "r4", r4), lio::ref(p + "z2", z2), lio::ref(p + "z3", z3), lio::ref(p + "z4", z4)};
  }
  template <class F> void each(F&& f) const {
    f("r0", r0);
    f("r1", r1);
    f("r2", r2);
    f("r3", r3);
    f("r4", r4);
    f("z2", z2);
    f("z3", z3);
    f("z4", z4);
  }
};

} // namespace roundtrip_test

TEMPLATE_TEST_CASE("io round trip is bit-identical for every dtype and rank 0..4", "[io]", float, double,
                   std::int32_t, std::int64_t, std::uint8_t) {
  using namespace roundtrip_test;
  io_test::scratch_dir dir;
  rank_set<TestType> s(1234 + sizeof(TestType));

  SECTION("safetensors") {
    auto p = dir / "t.safetensors";
    lio::save_safetensors(p, s.refs("t."), {{"format", "pt"}, {"note", "ünïcode"}});
    auto m = lio::load_safetensors(p);
    REQUIRE(m.size() == 8);
    CHECK(m.metadata.at("format") == "pt");
    CHECK(m.metadata.at("note") == "ünïcode");
    std::vector<std::string> expected_order{"t.r0", "t.r1", "t.r2", "t.r3", "t.r4", "t.z2", "t.z3", "t.z4"};
    CHECK(m.names() == expected_order); // offset order; zero-size tensors keep the header's order
    s.each([&](std::string const& n, auto const& t) { CHECK(io_test::same_bits(t, m.at("t." + n))); });
    CHECK(io_test::same_tensor_bits(m.at("t.r4").template as<TestType, dyn, 2, 3, dyn>(), s.r4));
    CHECK(io_test::same_tensor_bits(m.at("t.r0").template as<TestType>(), s.r0));

    // encode_safetensors gives exactly the file's bytes; decode reads it back
    auto blob = lio::encode_safetensors(s.refs("t."), {{"format", "pt"}, {"note", "ünïcode"}});
    CHECK(blob == io_test::read_bytes(p));
    auto m2 = lio::decode_safetensors(blob);
    s.each([&](std::string const& n, auto const& t) { CHECK(io_test::same_bits(t, m2.at("t." + n))); });

    // load into fresh tensors (dyn dimensions take the file's sizes)
    rank_set<TestType> fresh(999);
    lio::load_safetensors_into(p, {lio::target("t.r0", fresh.r0), lio::target("t.r1", fresh.r1),
                                   lio::target("t.r2", fresh.r2), lio::target("t.r3", fresh.r3),
                                   lio::target("t.r4", fresh.r4), lio::target("t.z2", fresh.z2),
                                   lio::target("t.z3", fresh.z3), lio::target("t.z4", fresh.z4)});
    CHECK(io_test::same_tensor_bits(fresh.r0, s.r0));
    CHECK(io_test::same_tensor_bits(fresh.r1, s.r1));
    CHECK(io_test::same_tensor_bits(fresh.r2, s.r2));
    CHECK(io_test::same_tensor_bits(fresh.r3, s.r3));
    CHECK(io_test::same_tensor_bits(fresh.r4, s.r4));

    // saving a loaded map gives the same bytes
    lio::save_safetensors(dir / "u.safetensors", m);
    CHECK(io_test::read_bytes(dir / "u.safetensors") == io_test::read_bytes(p));
  }

  SECTION("npy") {
    s.each([&](std::string const& n, auto const& t) {
      auto p = dir / (n + ".npy");
      lio::save_npy(p, t);
      auto d = lio::load_npy(p);
      CHECK(io_test::same_bits(t, d));
      CHECK(io_test::read_bytes(p) == lio::encode_npy(lio::ref(n, t)));
      CHECK(io_test::same_bits(t, lio::decode_npy(io_test::read_bytes(p))));
    });
    tensor<TestType, dyn, 2, 3, dyn> back;
    lio::load_npy_into(dir / "r4.npy", lio::target("r4", back));
    CHECK(io_test::same_tensor_bits(back, s.r4));
  }

  SECTION("npz") {
    auto p = dir / "t.npz";
    lio::save_npz(p, s.refs(""));
    auto m = lio::load_npz(p);
    REQUIRE(m.size() == 8);
    CHECK(m.names() == std::vector<std::string>{"r0", "r1", "r2", "r3", "r4", "z2", "z3", "z4"});
    s.each([&](std::string const& n, auto const& t) { CHECK(io_test::same_bits(t, m.at(n))); });
    CHECK(lio::encode_npz(s.refs("")) == io_test::read_bytes(p));
    rank_set<TestType> fresh(77);
    lio::load_npz_into(p, {lio::target("r3", fresh.r3), lio::target("r1", fresh.r1)},
                       {.allow_unexpected = true});
    CHECK(io_test::same_tensor_bits(fresh.r3, s.r3));
    CHECK(io_test::same_tensor_bits(fresh.r1, s.r1));
  }
}

TEST_CASE("dyn_tensor conversions check dtype and shape", "[io]") {
  namespace lio = lepton::io;
  lepton::tensor<float, 2, 3> t({2, 3}, {1, 2, 3, 4, 5, 6});
  lio::dyn_tensor d(t);
  CHECK(d.type() == lio::dtype::f32);
  CHECK(d.shape() == std::vector<std::size_t>{2, 3});
  CHECK(d.nbytes() == 24);
  CHECK(d.values<float>()[5] == 6.0f);
  auto back = d.as<float, lepton::dyn, 3>();
  CHECK(back.shape() == lepton::shape_t<2>{2, 3});
  CHECK(back(1, 2) == 6.0f);

  try {
    (void)d.as<double, 2, 3>();
    FAIL("no exception");
  } catch (lepton::value_error const& e) {
    CHECK(std::string(e.what()) == "lepton: dyn_tensor::as: expected F64 (2, 3), the tensor is F32 (2, 3)");
  }
  try {
    (void)d.as<float, 3, 2>();
    FAIL("no exception");
  } catch (lepton::shape_error const& e) {
    CHECK(std::string(e.what()) == "lepton: dyn_tensor::as: expected F32 (3, 2), the tensor is F32 (2, 3)");
  }
  CHECK_THROWS_AS((d.as<float, 2, 3, 1>()), lepton::shape_error);
  CHECK_THROWS_AS(d.values<std::int32_t>(), lepton::value_error);

  lio::dyn_tensor copy = d;
  CHECK(copy == d);
  lio::dyn_tensor moved = std::move(copy);
  CHECK(moved == d);
  CHECK(copy.nbytes() == 0); // NOLINT: moved-from state is documented
  CHECK_THROWS_AS(lio::dyn_tensor(lio::dtype::f64, {std::size_t{1} << 62, 16}), lepton::value_error);
  lio::dyn_tensor z(lio::dtype::i64, {3});
  CHECK(z.values<std::int64_t>()[2] == 0);
}

TEST_CASE("load_safetensors_into validates every target before writing any", "[io]") {
  namespace lio = lepton::io;
  io_test::scratch_dir dir;
  auto p = dir / "m.safetensors";
  lepton::tensor<float, 784, 255> w_file;
  lepton::tensor<float, 256> b_file({256}, 0.5f);
  io_test::fill_random_bits(w_file, 1);
  lio::save_safetensors(p, {lio::ref("fc1.weight", w_file), lio::ref("fc1.bias", b_file)});

  lepton::tensor<float, 784, 256> w({784, 256}, 7.0f);
  lepton::tensor<float, 256> b({256}, 3.0f);
  auto unchanged = [&] {
    return std::all_of(w.flat().begin(), w.flat().end(), [](float v) { return v == 7.0f; }) &&
           std::all_of(b.flat().begin(), b.flat().end(), [](float v) { return v == 3.0f; });
  };

  // b comes first in the list and is valid: it must still not be written
  try {
    lio::load_safetensors_into(p, {lio::target("fc1.bias", b), lio::target("fc1.weight", w)});
    FAIL("no exception");
  } catch (lepton::format_error const& e) {
    CHECK(std::string(e.what()) ==
          "lepton: " + p.string() +
              ": tensor 'fc1.weight': expected F32 (784, 256), file has F32 (784, 255)");
  }
  CHECK(unchanged());

  lepton::tensor<double, 256> bd;
  try {
    lio::load_safetensors_into(p, {lio::target("fc1.bias", bd)}, {.allow_unexpected = true});
    FAIL("no exception");
  } catch (lepton::format_error const& e) {
    CHECK(std::string(e.what()) ==
          "lepton: " + p.string() + ": tensor 'fc1.bias': expected F64 (256), file has F32 (256)");
  }

  // missing and unexpected names
  lepton::tensor<float, 10> extra({10}, 1.0f);
  CHECK_THROWS_WITH(lio::load_safetensors_into(p, {lio::target("fc1.bias", b)}),
                    Catch::Contains("unexpected tensor 'fc1.weight'"));
  CHECK(unchanged());
  CHECK_THROWS_WITH(lio::load_safetensors_into(p,
                                               {lio::target("fc1.bias", b), lio::target("fc2.bias", extra)},
                                               {.allow_unexpected = true}),
                    Catch::Contains("missing tensor 'fc2.bias'"));
  CHECK(unchanged());
  CHECK_THROWS_AS(lio::load_safetensors_into(p, {lio::target("fc1.bias", b), lio::target("fc1.bias", b)},
                                             {.allow_unexpected = true}),
                  lepton::value_error);

  lio::load_safetensors_into(p, {lio::target("fc1.bias", b), lio::target("fc2.bias", extra)},
                             {.allow_missing = true, .allow_unexpected = true});
  CHECK(b(0) == 0.5f);
  CHECK(extra(0) == 1.0f);

  // views and params as targets
  lepton::tensor<float, 784, 255> big;
  lepton::param<float, 256> pb;
  lio::load_safetensors_into(p, {lio::target("fc1.weight", big.view()), lio::target("fc1.bias", pb)});
  CHECK(io_test::same_tensor_bits(big, w_file));
  CHECK(pb.value(255) == 0.5f);

  // a view cannot be resized
  lepton::tensor<float, lepton::dyn, 255> rows(784);
  auto first = rows.rows(0, 3);
  CHECK_THROWS_AS(
      lio::load_safetensors_into(p, {lio::target("fc1.weight", first)}, {.allow_unexpected = true}),
      lepton::format_error);
}

TEST_CASE("safetensors writer: names, metadata, layout", "[io]") {
  namespace lio = lepton::io;
  io_test::scratch_dir dir;
  lepton::tensor<std::int64_t, 3> a({3}, {1, -2, 3});
  lepton::tensor<std::uint8_t, 2> b({2}, {9, 250});
  auto blob = lio::encode_safetensors({lio::ref("z.last", a), lio::ref("0.weight", b)}, {{"epoch", "7"}});
  std::uint64_t n = 0;
  std::memcpy(&n, blob.data(), 8);
  CHECK((8 + n) % 8 == 0);
  std::string header(reinterpret_cast<char const*>(blob.data()) + 8, n);
  // order as given, offsets contiguous, metadata first
  CHECK(header.rfind(
            R"({"__metadata__":{"epoch":"7"},"z.last":{"dtype":"I64","shape":[3],"data_offsets":[0,24]},)"
            R"("0.weight":{"dtype":"U8","shape":[2],"data_offsets":[24,26]}})",
            0) == 0);
  CHECK(blob.size() == 8 + n + 26);

  CHECK_THROWS_AS(lio::encode_safetensors({lio::ref("x", a), lio::ref("x", b)}), lepton::value_error);
  CHECK_THROWS_AS(lio::encode_safetensors({lio::ref("__metadata__", a)}), lepton::value_error);
  CHECK_THROWS_AS(lio::encode_safetensors({lio::ref(std::string("bad\xff"), a)}), lepton::value_error);
  CHECK_THROWS_AS(lio::save_npz(dir / "x.npz", {lio::ref("", a)}), lepton::value_error);
  CHECK_THROWS_AS(lio::save_npz(dir / "x.npz", {lio::ref("a", a), lio::ref("a", b)}), lepton::value_error);
  CHECK(dir.count_files() == 0); // validation happens before anything is created

  // an empty set of tensors is a valid file
  lio::save_safetensors(dir / "empty.safetensors", {});
  CHECK(lio::load_safetensors(dir / "empty.safetensors").empty());
  lio::save_npz(dir / "empty.npz", {});
  CHECK(lio::load_npz(dir / "empty.npz").empty());
}

TEST_CASE("npy reader: fortran order, big-endian, versions 2 and 3, old numpy longs", "[io]") {
  namespace lio = lepton::io;
  auto npy = [](int major, std::string dict, std::vector<unsigned char> const& data) {
    std::string h = "\x93NUMPY";
    h += static_cast<char>(major);
    h += '\0';
    dict += '\n';
    if (major == 1) {
      h += static_cast<char>(dict.size() & 0xff);
      h += static_cast<char>(dict.size() >> 8);
    } else {
      for (int i = 0; i < 4; ++i) h += static_cast<char>((dict.size() >> (8 * i)) & 0xff);
    }
    h += dict;
    h.append(data.begin(), data.end());
    return io_test::to_bytes(h);
  };
  // (2, 3) int32 in Fortran order: memory holds column after column
  std::vector<unsigned char> fdata;
  for (int v : {0, 3, 1, 4, 2, 5}) fdata.insert(fdata.end(), {static_cast<unsigned char>(v), 0, 0, 0});
  auto f = lio::decode_npy(npy(1, "{'descr': '<i4', 'fortran_order': True, 'shape': (2, 3), }", fdata));
  auto ft = f.as<std::int32_t, 2, 3>();
  for (int i = 0; i < 6; ++i) CHECK(ft.flat()[static_cast<std::size_t>(i)] == i);

  // (2, 2, 2) Fortran order
  std::vector<unsigned char> f3;
  for (int k = 0; k < 2; ++k)
    for (int j = 0; j < 2; ++j)
      for (int i = 0; i < 2; ++i) f3.push_back(static_cast<unsigned char>(i * 4 + j * 2 + k));
  auto g = lio::decode_npy(npy(2, "{'descr': '|u1', 'fortran_order': True, 'shape': (2, 2, 2)}", f3))
               .as<std::uint8_t, 2, 2, 2>();
  for (int i = 0; i < 8; ++i) CHECK(g.flat()[static_cast<std::size_t>(i)] == i);

  // big-endian float64 and int64, version 3
  std::vector<unsigned char> be{0x3f, 0xf0, 0, 0, 0, 0, 0, 0, 0xc0, 0, 0, 0, 0, 0, 0, 0};
  auto d = lio::decode_npy(npy(3, "{\"descr\": \">f8\", \"fortran_order\": False, \"shape\": (2L,)}", be));
  CHECK(d.values<double>()[0] == 1.0);
  CHECK(d.values<double>()[1] == -2.0);
  std::vector<unsigned char> bi{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe};
  CHECK(lio::decode_npy(npy(1, "{'descr': '>i8', 'fortran_order': False, 'shape': ()}", bi))
            .values<std::int64_t>()[0] == -2);
}

TEST_CASE("npz reader accepts DEFLATE entries", "[io]") {
  namespace lio = lepton::io;
  // Rewrite a stored archive with one deflated entry, the way zip tools and numpy.savez_compressed do.
  lepton::tensor<double, 50, 4> x;
  for (std::size_t i = 0; i < x.size(); ++i) x.flat()[i] = static_cast<double>(i % 7) * 0.25;
  auto npy = lio::encode_npy(lio::ref("x", x));
  std::vector<unsigned char> comp(compressBound(static_cast<uLong>(npy.size())) + 64);
  z_stream zs{};
  REQUIRE(deflateInit2(&zs, 9, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  zs.next_in = reinterpret_cast<Bytef*>(npy.data());
  zs.avail_in = static_cast<uInt>(npy.size());
  zs.next_out = comp.data();
  zs.avail_out = static_cast<uInt>(comp.size());
  REQUIRE(deflate(&zs, Z_FINISH) == Z_STREAM_END);
  comp.resize(zs.total_out);
  deflateEnd(&zs);
  std::uint32_t crc = static_cast<std::uint32_t>(
      crc32(0, reinterpret_cast<Bytef const*>(npy.data()), static_cast<uInt>(npy.size())));

  std::vector<unsigned char> zip;
  auto u16 = [&](unsigned v) { zip.push_back(v & 0xff), zip.push_back((v >> 8) & 0xff); };
  auto u32 = [&](std::uint32_t v) { u16(v & 0xffff), u16(v >> 16); };
  std::string name = "x.npy";
  u32(0x04034b50), u16(20), u16(0), u16(8), u16(0), u16(0x21), u32(crc),
      u32(static_cast<std::uint32_t>(comp.size())), u32(static_cast<std::uint32_t>(npy.size())), u16(5),
      u16(0);
  zip.insert(zip.end(), name.begin(), name.end());
  zip.insert(zip.end(), comp.begin(), comp.end());
  std::uint32_t cd = static_cast<std::uint32_t>(zip.size());
  u32(0x02014b50), u16(20), u16(20), u16(0), u16(8), u16(0), u16(0x21), u32(crc),
      u32(static_cast<std::uint32_t>(comp.size())), u32(static_cast<std::uint32_t>(npy.size())), u16(5),
      u16(0), u16(0), u16(0), u16(0), u32(0), u32(0);
  zip.insert(zip.end(), name.begin(), name.end());
  std::uint32_t cd_size = static_cast<std::uint32_t>(zip.size()) - cd;
  u32(0x06054b50), u16(0), u16(0), u16(1), u16(1), u32(cd_size), u32(cd), u16(0);
  std::vector<std::byte> blob(zip.size());
  std::memcpy(blob.data(), zip.data(), zip.size());

  auto m = lio::decode_npz(blob, "deflated.npz");
  CHECK(io_test::same_tensor_bits(m.at("x").as<double, 50, 4>(), x));

  // every truncation and every single-byte change of the compressed stream is caught or harmless
  for (std::size_t cut = 0; cut < blob.size(); ++cut)
    CHECK_THROWS_AS(lio::decode_npz(std::span(blob).first(cut), "cut.npz"), lepton::format_error);
  std::size_t const data_begin = 30 + 5;
  for (std::size_t i = data_begin; i < data_begin + comp.size(); ++i) {
    auto bad = blob;
    bad[i] ^= std::byte{0x55};
    try {
      auto mm = lio::decode_npz(bad, "flip.npz");
      CHECK(
          io_test::same_tensor_bits(mm.at("x").as<double, 50, 4>(), x)); // CRC passed: must be the same data
    } catch (lepton::format_error const&) {}
  }
}

TEST_CASE("the example of docs/io.md", "[io]") {
  io_test::scratch_dir dir;
  auto const cwd = std::filesystem::current_path();
  std::filesystem::current_path(dir.path());
  {
    namespace lio = lepton::io;
    lepton::tensor<float, 784, 256> w;
    lepton::tensor<float, 256> b;

    // what the savers take: named, non-owning, read-only references
    lio::save_safetensors("m.safetensors", {lio::ref("fc1.weight", w), lio::ref("fc1.bias", b)},
                          {{"epoch", "3"}});

    // what the loaders return: dyn_tensor (owning, dtype + shape at run time) in a tensor_map (file order)
    lio::tensor_map m = lio::load_safetensors("m.safetensors");
    auto w2 = m.at("fc1.weight").as<float, 784, 256>(); // checks dtype and shape
    std::string epoch = m.metadata.at("epoch");

    // what load_*_into take: named destinations; validated together, then written together
    lio::load_safetensors_into("m.safetensors", {lio::target("fc1.weight", w), lio::target("fc1.bias", b)});
    CHECK(epoch == "3");
    CHECK(w2.size() == 784 * 256);
  }
  std::filesystem::current_path(cwd);
}
