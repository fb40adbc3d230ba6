// Loading damaged or hostile files: every failure is a typed exception naming the file and the reason,
// never a crash or a huge allocation, and load_*_into leaves its targets unchanged.
#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <lepton/io.hpp>

#include "io_test_util.hpp"

namespace corruption_test {
namespace lio = lepton::io;
using io_test::safetensors_blob;
using io_test::scratch_dir;

/// A small model: two weights, a bias, an int64 step counter.
struct small_model {
  lepton::tensor<float, 3, 2> w;
  lepton::tensor<double, 2> b;
  lepton::tensor<std::int64_t> step;
  lepton::tensor<std::uint8_t, 3> mask;

  explicit small_model(float base) {
    for (std::size_t i = 0; i < w.size(); ++i) w.flat()[i] = base + static_cast<float>(i);
    b.fill(base * 2);
    step.fill(static_cast<std::int64_t>(base) * 100);
    mask.fill(static_cast<std::uint8_t>(base));
  }
  std::vector<lio::tensor_ref> refs() const {
    return {lio::ref("w", w), lio::ref("b", b), lio::ref("step", step), lio::ref("mask", mask)};
  }
  std::vector<lio::tensor_target> targets() {
    return {lio::target("w", w), lio::target("b", b), lio::target("step", step), lio::target("mask", mask)};
  }
  bool operator==(small_model const& o) const {
    return io_test::same_tensor_bits(w, o.w) && io_test::same_tensor_bits(b, o.b) &&
           io_test::same_tensor_bits(step, o.step) && io_test::same_tensor_bits(mask, o.mask);
  }
};

/// The message of the format_error (or io_error) that loading `bytes` as safetensors raises.
inline std::string st_error(std::vector<std::byte> const& bytes, lio::load_options opt = {}) {
  try {
    (void)lio::decode_safetensors(bytes, "bad.safetensors", opt);
  } catch (lepton::format_error const& e) {
    return e.what();
  }
  return "no error";
}

inline std::string npy_error(std::string const& dict, std::size_t data_bytes, int major = 1) {
  std::string h = "\x93NUMPY";
  h += static_cast<char>(major);
  h += '\0';
  if (major == 1) {
    h += static_cast<char>(dict.size() & 0xff);
    h += static_cast<char>(dict.size() >> 8);
  } else {
    for (int i = 0; i < 4; ++i) h += static_cast<char>((dict.size() >> (8 * i)) & 0xff);
  }
  h += dict;
  h.append(data_bytes, '\0');
  try {
    (void)lio::decode_npy(io_test::to_bytes(h), "bad.npy");
  } catch (lepton::format_error const& e) {
    return e.what();
  }
  return "no error";
}

} // namespace corruption_test

TEST_CASE("truncation at every offset of a safetensors file is a format_error and changes nothing", "[io]") {
  using namespace corruption_test;
  scratch_dir dir;
  small_model saved(1.0f);
  auto p = dir / "m.safetensors";
  lio::save_safetensors(p, saved.refs(), {{"epoch", "1"}});
  auto const full = io_test::read_bytes(p);
  REQUIRE(full.size() > 100);

  small_model model(5.0f);
  small_model const before = model;
  for (std::size_t cut = 0; cut < full.size(); ++cut) {
    auto q = dir / "cut.safetensors";
    io_test::write_bytes(q, std::span(full).first(cut));
    CHECK_THROWS_AS(lio::load_safetensors(q), lepton::format_error);
    try {
      lio::load_safetensors_into(q, model.targets());
      FAIL("loaded a file cut at " << cut);
    } catch (lepton::format_error const& e) {
      CHECK(std::string(e.what()).find(q.string()) != std::string::npos);
    }
    CHECK(model == before);
  }
  lio::load_safetensors_into(p, model.targets());
  CHECK(model == saved);

  // an extra byte at the end is an error too
  auto longer = full;
  longer.push_back(std::byte{0});
  CHECK_THAT(st_error(longer), Catch::Contains("unexpected bytes after the last tensor"));
}

TEST_CASE("truncation at every offset of .npy and .npz files is a format_error", "[io]") {
  using namespace corruption_test;
  small_model saved(2.0f);
  auto npy = lio::encode_npy(lio::ref("w", saved.w));
  for (std::size_t cut = 0; cut < npy.size(); ++cut)
    CHECK_THROWS_AS(lio::decode_npy(std::span(npy).first(cut), "cut.npy"), lepton::format_error);
  auto npz = lio::encode_npz(saved.refs());
  for (std::size_t cut = 0; cut < npz.size(); ++cut)
    CHECK_THROWS_AS(lio::decode_npz(std::span(npz).first(cut), "cut.npz"), lepton::format_error);

  scratch_dir dir;
  io_test::write_bytes(dir / "cut.npy", std::span(npy).first(npy.size() - 1));
  lepton::tensor<float, 3, 2> w({3, 2}, 9.0f);
  CHECK_THROWS_WITH(lio::load_npy_into(dir / "cut.npy", lio::target("w", w)), Catch::Contains("truncated"));
  CHECK(w(2, 1) == 9.0f);
  io_test::write_bytes(dir / "cut.npz", std::span(npz).first(npz.size() - 1));
  small_model model(5.0f);
  small_model const before = model;
  CHECK_THROWS_AS(lio::load_npz_into(dir / "cut.npz", model.targets()), lepton::format_error);
  CHECK(model == before);
}

TEST_CASE("single-bit flips in a header give a typed exception or a consistent load", "[io]") {
  using namespace corruption_test;
  small_model saved(3.0f);

  SECTION("safetensors: every bit of the length and the JSON header") {
    scratch_dir dir;
    auto q = dir / "flip.safetensors";
    auto blob = lio::encode_safetensors(saved.refs(), {{"k", "v"}});
    std::uint64_t n = 0;
    std::memcpy(&n, blob.data(), 8);
    std::size_t loaded = 0, rejected = 0;
    for (std::size_t bit = 0; bit < (8 + n) * 8; ++bit) {
      auto bad = blob;
      bad[bit / 8] ^= std::byte(1u << (bit % 8));
      try {
        auto m = lio::decode_safetensors(bad, "flip.safetensors");
        ++loaded; // e.g. a flip inside a name or the metadata: still a consistent file
        std::size_t total = 0;
        for (auto const& [name, t] : m) total += t.nbytes();
        CHECK(total == blob.size() - 8 - n);
      } catch (lepton::format_error const&) {
        ++rejected;
      }
      io_test::write_bytes(q, bad);
      small_model model(7.0f);
      small_model const before = model;
      try {
        lio::load_safetensors_into(q, model.targets());
        CHECK(model == saved); // only a flip outside names, dtypes, shapes and offsets can get here
      } catch (lepton::format_error const&) {
        CHECK(model == before);
      }
    }
    CHECK(rejected > loaded);
    CHECK(loaded > 0);
  }
  SECTION(".npy: every bit of the header") {
    auto blob = lio::encode_npy(lio::ref("w", saved.w));
    std::size_t header = blob.size() - saved.w.size() * sizeof(float);
    for (std::size_t bit = 0; bit < header * 8; ++bit) {
      auto bad = blob;
      bad[bit / 8] ^= std::byte(1u << (bit % 8));
      try {
        auto d = lio::decode_npy(bad, "flip.npy");
        CHECK(d.nbytes() == saved.w.size() * sizeof(float)); // e.g. a flip in the padding
      } catch (lepton::format_error const&) {}
    }
  }
  SECTION(".npz: every bit of the archive") {
    auto blob = lio::encode_npz({lio::ref("b", saved.b), lio::ref("step", saved.step)});
    for (std::size_t bit = 0; bit < blob.size() * 8; ++bit) {
      auto bad = blob;
      bad[bit / 8] ^= std::byte(1u << (bit % 8));
      try {
        auto m = lio::decode_npz(bad, "flip.npz");
        for (auto const& [name, t] : m) CHECK(t.nbytes() <= blob.size());
      } catch (lepton::format_error const&) {}
    }
  }
}

TEST_CASE("safetensors header validation", "[io]") {
  using namespace corruption_test;
  auto entry = [](std::string const& name, std::string const& body) { return "\"" + name + "\":" + body; };
  auto f32 = [](std::string const& shape, std::string const& offs) {
    return R"({"dtype":"F32","shape":)" + shape + R"(,"data_offsets":)" + offs + "}";
  };

  // a header claiming 2^40 elements: rejected before any allocation
  CHECK_THAT(
      st_error(safetensors_blob("{" + entry("big", f32("[1099511627776]", "[0,4398046511104]")) + "}", 16)),
      Catch::Contains("truncated: the tensors need 4398046511104 bytes of data but the file has 16"));
  CHECK_THAT(st_error(safetensors_blob("{" + entry("big", f32("[1099511627776]", "[0,16]")) + "}", 16)),
             Catch::Contains("span 16 bytes but F32 (1099511627776) needs 4398046511104"));
  // element count overflow
  CHECK_THAT(
      st_error(safetensors_blob("{" + entry("o", f32("[4294967296,4294967296,16]", "[0,0]")) + "}", 0)),
      Catch::Contains("too many elements"));
  // overlapping, gapped, and uncovered data
  CHECK_THAT(st_error(safetensors_blob(
                 "{" + entry("a", f32("[2]", "[0,8]")) + "," + entry("b", f32("[2]", "[4,12]")) + "}", 12)),
             Catch::Contains("tensor 'b' (data_offsets [4, 12]) overlaps tensor 'a'"));
  CHECK_THAT(st_error(safetensors_blob(
                 "{" + entry("a", f32("[2]", "[0,8]")) + "," + entry("b", f32("[2]", "[0,8]")) + "}", 8)),
             Catch::Contains("overlaps"));
  CHECK_THAT(st_error(safetensors_blob("{" + entry("a", f32("[2]", "[4,12]")) + "}", 12)),
             Catch::Contains("gap of 4 bytes"));
  CHECK_THAT(st_error(safetensors_blob("{" + entry("a", f32("[2]", "[0,8]")) + "}", 9)),
             Catch::Contains("1 unexpected bytes after the last tensor"));
  CHECK_THAT(st_error(safetensors_blob("{" + entry("a", f32("[2]", "[8,0]")) + "}", 8)),
             Catch::Contains("end before begin"));
  CHECK_THAT(st_error(safetensors_blob("{" + entry("a", f32("[2]", "[0,8,16]")) + "}", 8)),
             Catch::Contains("[begin, end]"));
  // dtypes
  CHECK_THAT(st_error(safetensors_blob(R"({"a":{"dtype":"BF16","shape":[2],"data_offsets":[0,4]}})", 4)),
             Catch::Contains("tensor 'a': unsupported dtype 'BF16'"));
  CHECK_THAT(st_error(safetensors_blob(R"({"a":{"dtype":"Q7","shape":[2],"data_offsets":[0,4]}})", 4)),
             Catch::Contains("unsupported dtype 'Q7'"));
  CHECK_THAT(st_error(safetensors_blob(R"({"a":{"dtype":5,"shape":[2],"data_offsets":[0,4]}})", 4)),
             Catch::Contains("dtype is not a string"));
  // shapes
  CHECK_THAT(st_error(safetensors_blob("{" + entry("a", f32("[-2]", "[0,8]")) + "}", 8)),
             Catch::Contains("shape entry 0 is -2, not a non-negative integer"));
  CHECK_THAT(st_error(safetensors_blob("{" + entry("a", f32("[2.0]", "[0,8]")) + "}", 8)),
             Catch::Contains("not a non-negative integer"));
  CHECK_THAT(st_error(safetensors_blob("{" + entry("a", f32("[\"2\"]", "[0,8]")) + "}", 8)),
             Catch::Contains("not a non-negative integer"));
  CHECK_THAT(st_error(safetensors_blob("{" + entry("a", f32("[1e30]", "[0,8]")) + "}", 8)),
             Catch::Contains("not a non-negative integer"));
  CHECK_THAT(st_error(safetensors_blob("{" + entry("a", f32("2", "[0,8]")) + "}", 8)),
             Catch::Contains("shape is not an array"));
  CHECK_THAT(st_error(safetensors_blob("{" + entry("a", f32("[2]", "[0,-8]")) + "}", 8)),
             Catch::Contains("data_offsets end is -8"));
  // entry structure
  CHECK_THAT(st_error(safetensors_blob(R"({"a":[1,2]})", 0)),
             Catch::Contains("tensor 'a': entry is not an object"));
  CHECK_THAT(st_error(safetensors_blob(R"({"a":{"dtype":"F32","shape":[2]}})", 8)),
             Catch::Contains("tensor 'a': missing key 'data_offsets'"));
  CHECK_THAT(st_error(safetensors_blob(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8],"x":1}})", 8)),
             Catch::Contains("tensor 'a': unknown key 'x'"));
  CHECK_THAT(st_error(safetensors_blob(
                 R"({"a":{"dtype":"F32","dtype":"F32","shape":[2],"data_offsets":[0,8]}})", 8)),
             Catch::Contains("the key 'dtype' twice"));
  CHECK_THAT(st_error(safetensors_blob(
                 "{" + entry("a", f32("[2]", "[0,8]")) + "," + entry("a", f32("[2]", "[8,16]")) + "}", 16)),
             Catch::Contains("the key 'a' twice"));
  CHECK_THAT(st_error(safetensors_blob(R"({"__metadata__":{"k":1}})", 0)),
             Catch::Contains("is not a string"));
  CHECK_THAT(st_error(safetensors_blob(R"({"__metadata__":[1]})", 0)),
             Catch::Contains("__metadata__ is not an object"));
  // JSON itself
  CHECK_THAT(st_error(safetensors_blob(R"([1, 2])", 0)), Catch::Contains("does not start with '{'"));
  CHECK_THAT(st_error(safetensors_blob(R"({"a":)", 0)), Catch::Contains("is not valid JSON"));
  CHECK_THAT(st_error(safetensors_blob("{\"a\xff\":1}", 0)), Catch::Contains("is not valid JSON"));
  CHECK_THAT(st_error(safetensors_blob(R"({"a":{"b":{"c":{"d":1}}}})", 0)),
             Catch::Contains("nested too deeply"));
  CHECK_THAT(st_error(safetensors_blob("{\"a\":" + std::string(100000, '[') + "}", 0)),
             Catch::Contains("nested too deeply"));
  // lengths
  CHECK_THAT(st_error(io_test::to_bytes("abc")), Catch::Contains("3 bytes is too short"));
  CHECK_THAT(st_error(safetensors_blob("{}", 0, 1000)),
             Catch::Contains("truncated: header length 1000 but only 2 bytes"));
  CHECK_THAT(st_error(safetensors_blob("{}", 0, std::uint64_t{1} << 62)),
             Catch::Contains("exceeds the limit"));
  CHECK_THAT(st_error(safetensors_blob("{}    ", 0), {.max_header_bytes = 4}),
             Catch::Contains("exceeds the limit of 4"));
  CHECK_THAT(st_error(safetensors_blob("", 0)), Catch::Contains("too short for a JSON object"));
  // padding with spaces is fine; a well-formed file with metadata only loads
  CHECK(lio::decode_safetensors(safetensors_blob("{\"__metadata__\":{\"a\":\"b\"}}      ", 0))
            .metadata.at("a") == "b");
  CHECK(lio::decode_safetensors(safetensors_blob("{" + entry("a", f32("[2]", "[0,8]")) + "}  ", 8))
            .at("a")
            .size() == 2);
}

TEST_CASE("directories and missing paths are io_errors", "[io]") {
  using namespace corruption_test;
  scratch_dir dir;
  for (auto load : {+[](std::filesystem::path const& p) { (void)lio::load_safetensors(p); },
                    +[](std::filesystem::path const& p) { (void)lio::load_npy(p); },
                    +[](std::filesystem::path const& p) { (void)lio::load_npz(p); }}) {
    CHECK_THROWS_WITH(load(dir.path()),
                      Catch::Contains(dir.path().string()) && Catch::Contains("is a directory"));
    CHECK_THROWS_WITH(load(dir / "missing"),
                      Catch::Contains("missing") && Catch::Contains("No such file or directory"));
    CHECK_THROWS_AS(load(dir / "missing"), lepton::io_error);
  }
  small_model model(1.0f);
  small_model const before = model;
  CHECK_THROWS_AS(lio::load_safetensors_into(dir.path(), model.targets()), lepton::io_error);
  CHECK(model == before);
}

TEST_CASE(".npy header validation", "[io]") {
  using namespace corruption_test;
  std::string const ok = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }\n";
  CHECK(npy_error(ok, 8) == "no error");
  CHECK_THAT(npy_error(ok, 4),
             Catch::Contains("truncated: F32 (2) needs 8 bytes of data but the file has 4"));
  CHECK_THAT(npy_error(ok, 12), Catch::Contains("4 unexpected bytes after the data"));
  CHECK_THAT(npy_error("{'descr': '|O', 'fortran_order': False, 'shape': (2,), }", 16),
             Catch::Contains("object arrays ('|O', pickled Python objects) are not supported"));
  CHECK_THAT(npy_error("{'descr': '<f2', 'fortran_order': False, 'shape': (2,), }", 4),
             Catch::Contains("unsupported dtype '<f2'"));
  CHECK_THAT(npy_error("{'descr': '|f4', 'fortran_order': False, 'shape': (2,), }", 8),
             Catch::Contains("unsupported dtype"));
  CHECK_THAT(npy_error("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", 8),
             Catch::Contains("structured dtypes"));
  CHECK_THAT(npy_error("{'descr': '<f4', 'shape': (2,), }", 8), Catch::Contains("no 'fortran_order'"));
  CHECK_THAT(npy_error("{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'x': 1}", 8),
             Catch::Contains("unknown key 'x'"));
  CHECK_THAT(npy_error("{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,)}", 8),
             Catch::Contains("'descr' appears twice"));
  CHECK_THAT(npy_error("{'descr': '<f4', 'fortran_order': False, 'shape': (2)}", 8),
             Catch::Contains("trailing comma"));
  CHECK_THAT(npy_error("{'descr': '<f4', 'fortran_order': False, 'shape': (-2,)}", 8),
             Catch::Contains("not a non-negative integer"));
  CHECK_THAT(npy_error("{'descr': '<f4', 'fortran_order': 0, 'shape': (2,)}", 8),
             Catch::Contains("not True or False"));
  CHECK_THAT(npy_error("{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999999,)}", 8),
             Catch::Contains("too large"));
  CHECK_THAT(npy_error("{'descr': '<f8', 'fortran_order': False, 'shape': (1099511627776,)}", 8),
             Catch::Contains("needs 8796093022208 bytes of data but the file has 8"));
  CHECK_THAT(npy_error("{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4)}", 8),
             Catch::Contains("too many elements"));
  CHECK_THAT(npy_error("{'descr': '<f4', 'fortran_order': False, 'shape': (2,)} junk", 8),
             Catch::Contains("after the header dict"));
  CHECK_THAT(npy_error("{'descr': '<f4', 'fortran_order': False, 'shape': (2,)", 8),
             Catch::Contains("ends early"));
  CHECK_THAT(npy_error("__import__('os').system('true')", 8), Catch::Contains("expected '{'"));
  CHECK(npy_error(ok, 8, 2) == "no error");
  CHECK_THAT(npy_error(ok, 8, 4), Catch::Contains("unsupported .npy version 4.0"));

  auto blob = lio::encode_npy(lio::ref("x", lepton::tensor<float, 2>()));
  auto bad = blob;
  bad[1] = std::byte{'X'};
  CHECK_THROWS_WITH(lio::decode_npy(bad, "x.npy"), Catch::Contains("x.npy: not a .npy file"));
  // header length over the cap (v2 allows 4 GiB headers)
  std::string big = "\x93NUMPY\x02";
  big += '\0';
  big += std::string("\x00\x00\x00\x40", 4);
  CHECK_THROWS_WITH(lio::decode_npy(io_test::to_bytes(big), "big.npy"), Catch::Contains("exceeds the limit"));
}

TEST_CASE(".npz archive validation", "[io]") {
  using namespace corruption_test;
  lepton::tensor<float, 2> a({2}, {1.0f, 2.0f});
  lepton::tensor<std::int32_t, 3> b({3}, {1, 2, 3});
  auto const blob = lio::encode_npz({lio::ref("a", a), lio::ref("b", b)});
  auto err = [](std::vector<std::byte> const& z) -> std::string {
    try {
      (void)lio::decode_npz(z, "bad.npz");
    } catch (lepton::format_error const& e) {
      return e.what();
    }
    return "no error";
  };
  auto put16 = [](std::vector<std::byte>& z, std::size_t at, unsigned v) {
    z[at] = std::byte(v & 0xff);
    z[at + 1] = std::byte((v >> 8) & 0xff);
  };
  CHECK(err(blob) == "no error");
  std::size_t const eocd = blob.size() - 22;
  std::uint32_t cd = 0;
  std::memcpy(&cd, blob.data() + eocd + 16, 4);

  auto z = blob;
  std::size_t data_a = 30 + 5 + 128; // local header, "a.npy", .npy header
  z[data_a] ^= std::byte{1};
  CHECK_THAT(err(z), Catch::Contains("entry 'a.npy': CRC-32 mismatch"));
  z = blob;
  put16(z, 8, 12); // local method: bzip2
  CHECK_THAT(err(z), Catch::Contains("local and central headers disagree"));
  z = blob;
  put16(z, cd + 10, 12); // central method
  CHECK_THAT(err(z), Catch::Contains("compression method 12 is not supported"));
  z = blob;
  put16(z, cd + 8, 1); // encrypted
  CHECK_THAT(err(z), Catch::Contains("encrypted"));
  z = blob;
  z[cd + 46 + 2] = std::byte{'x'}; // "a.xpy"
  CHECK_THAT(err(z), Catch::Contains("not a .npy entry"));
  z = blob;
  z[cd + 46] = std::byte{'b'}; // two entries named b.npy
  CHECK_THAT(err(z), Catch::Contains("appears twice"));
  z = blob;
  put16(z, eocd + 10, 0xffff);
  CHECK_THAT(err(z), Catch::Contains("zip64 archives are not supported"));
  z = blob;
  put16(z, eocd + 8, 1); // entries on this disk != total
  CHECK_THAT(err(z), Catch::Contains("multi-disk"));
  z = blob;
  z.insert(z.begin(), std::byte{0}); // data before the archive: offsets no longer match
  CHECK(err(z) != "no error");
  z = blob;
  z.push_back(std::byte{0}); // a byte after the end record (not announced as a comment)
  CHECK_THAT(err(z), Catch::Contains("no end of central directory record"));
  CHECK_THAT(err(io_test::to_bytes(std::string(100, 'x'))), Catch::Contains("not a zip archive"));

  // overlapping entries: point the second central entry at the first local header
  z = blob;
  std::size_t cd2 = cd + 46 + 5;
  std::memcpy(z.data() + cd2 + 42, "\0\0\0\0", 4);
  CHECK(err(z) != "no error");
}
