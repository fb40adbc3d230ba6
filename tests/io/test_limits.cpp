// Hostile sizes: headers with very many tensors or dimensions, .npz entries that inflate far beyond
// their compressed size or lie about it. Each must parse in linear-ish time or fail with a typed
// error naming the file, and never allocate more than the file (plus the documented limits) backs.
#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <zlib.h>

#include <lepton/io.hpp>

#include "io_test_util.hpp"

namespace limits_test {
namespace lio = lepton::io;

/// The format_error message of loading `bytes` as safetensors ("no error" if it loads).
inline std::string st_error(std::vector<std::byte> const& bytes) {
  try {
    (void)lio::decode_safetensors(bytes, "many.safetensors");
  } catch (lepton::format_error const& e) {
    return e.what();
  }
  return "no error";
}

/// A header of `n` one-byte U8 tensors, listed in a shuffled name order (so that the duplicate
/// check cannot rely on sorted names) and in offset order; entry i is named `name(i)`.
template <class Name> std::string many_tensors(std::size_t n, Name&& name) {
  std::string h = "{";
  h.reserve(n * 64);
  for (std::size_t i = 0; i < n; ++i) {
    if (i) h += ',';
    h += "\"" + name(i) + "\":{\"dtype\":\"U8\",\"shape\":[1],\"data_offsets\":[" + std::to_string(i) + "," +
         std::to_string(i + 1) + "]}";
  }
  return h + "}";
}

/// Raw deflate of `prefix` followed by `zeros` zero bytes, compressed 64 KiB at a time.
inline std::vector<unsigned char> deflate_zeros(std::vector<std::byte> const& prefix, std::size_t zeros,
                                                std::uint32_t& crc) {
  z_stream zs{};
  REQUIRE(deflateInit2(&zs, 9, Z_DEFLATED, -15, 8, Z_DEFAULT_STRATEGY) == Z_OK);
  std::vector<unsigned char> out;
  std::vector<unsigned char> chunk(1 << 16);
  std::vector<unsigned char> const zero(1 << 16, 0);
  crc = static_cast<std::uint32_t>(
      crc32(0, reinterpret_cast<Bytef const*>(prefix.data()), static_cast<uInt>(prefix.size())));
  auto feed = [&](unsigned char const* p, std::size_t n, int flush) {
    zs.next_in = const_cast<Bytef*>(p);
    zs.avail_in = static_cast<uInt>(n);
    do {
      zs.next_out = chunk.data();
      zs.avail_out = static_cast<uInt>(chunk.size());
      int rc = deflate(&zs, flush);
      REQUIRE(rc != Z_STREAM_ERROR);
      out.insert(out.end(), chunk.data(), chunk.data() + (chunk.size() - zs.avail_out));
    } while (zs.avail_out == 0);
  };
  feed(reinterpret_cast<unsigned char const*>(prefix.data()), prefix.size(), Z_NO_FLUSH);
  for (std::size_t left = zeros; left > 0;) {
    std::size_t k = std::min(left, zero.size());
    crc = static_cast<std::uint32_t>(crc32(crc, zero.data(), static_cast<uInt>(k)));
    feed(zero.data(), k, Z_NO_FLUSH);
    left -= k;
  }
  feed(nullptr, 0, Z_FINISH);
  deflateEnd(&zs);
  return out;
}

/// One zip entry: a name, its stored or deflated bytes, and the sizes and CRC the headers announce.
struct zip_member {
  std::string name;
  std::vector<unsigned char> data;
  std::uint16_t method;
  std::uint32_t usize;
  std::uint32_t crc;
};

/// A zip archive of these members (local headers, data, central directory, end record).
inline std::vector<std::byte> make_zip(std::vector<zip_member> const& ms) {
  std::vector<unsigned char> z, cd;
  auto u16 = [](std::vector<unsigned char>& v, unsigned x) {
    v.push_back(x & 0xff), v.push_back((x >> 8) & 0xff);
  };
  auto u32 = [&](std::vector<unsigned char>& v, std::uint32_t x) { u16(v, x & 0xffff), u16(v, x >> 16); };
  for (auto const& m : ms) {
    auto const offset = static_cast<std::uint32_t>(z.size());
    auto const csize = static_cast<std::uint32_t>(m.data.size());
    auto const nlen = static_cast<unsigned>(m.name.size());
    u32(z, 0x04034b50), u16(z, 20), u16(z, 0), u16(z, m.method), u16(z, 0), u16(z, 0x21), u32(z, m.crc),
        u32(z, csize), u32(z, m.usize), u16(z, nlen), u16(z, 0);
    z.insert(z.end(), m.name.begin(), m.name.end());
    z.insert(z.end(), m.data.begin(), m.data.end());
    u32(cd, 0x02014b50), u16(cd, 20), u16(cd, 20), u16(cd, 0), u16(cd, m.method), u16(cd, 0), u16(cd, 0x21),
        u32(cd, m.crc), u32(cd, csize), u32(cd, m.usize), u16(cd, nlen), u16(cd, 0), u16(cd, 0), u16(cd, 0),
        u16(cd, 0), u32(cd, 0), u32(cd, offset);
    cd.insert(cd.end(), m.name.begin(), m.name.end());
  }
  auto const cd_offset = static_cast<std::uint32_t>(z.size());
  z.insert(z.end(), cd.begin(), cd.end());
  u32(z, 0x06054b50), u16(z, 0), u16(z, 0), u16(z, static_cast<unsigned>(ms.size())),
      u16(z, static_cast<unsigned>(ms.size())), u32(z, static_cast<std::uint32_t>(cd.size())),
      u32(z, cd_offset), u16(z, 0);
  std::vector<std::byte> out(z.size());
  std::memcpy(out.data(), z.data(), z.size());
  return out;
}

/// A deflated .npy entry of `n` zero bytes (U8, shape (n,)) that announces `usize` (0: the true size).
inline zip_member zeros_entry(std::string const& name, std::size_t n, std::uint32_t usize = 0) {
  auto header = lio::detail::npy_header_bytes(lio::dtype::u8, {n});
  std::vector<std::byte> prefix(header.size());
  std::memcpy(prefix.data(), header.data(), header.size());
  zip_member m{name, {}, 8, 0, 0};
  m.data = deflate_zeros(prefix, n, m.crc);
  m.usize = usize ? usize : static_cast<std::uint32_t>(prefix.size() + n);
  return m;
}

inline std::string npz_error(std::vector<std::byte> const& z, lio::load_options opt = {}) {
  try {
    (void)lio::decode_npz(z, "bomb.npz", opt);
  } catch (lepton::format_error const& e) {
    return e.what();
  }
  return "no error";
}

} // namespace limits_test

TEST_CASE("a safetensors header of 200000 tensors parses and keeps the offset order", "[io]") {
  using namespace limits_test;
  std::size_t const n = 200000;
  // names in a scrambled order: 7919 is prime, so i -> i * 7919 mod n is a permutation
  auto name = [&](std::size_t i) { return "layer." + std::to_string(i * 7919 % n) + ".w"; };
  auto blob = io_test::safetensors_blob(many_tensors(n, name), n);
  lio::tensor_map m = lio::decode_safetensors(blob, "many.safetensors");
  REQUIRE(m.size() == n);
  std::size_t i = 0;
  bool in_order = true;
  for (auto const& [k, t] : m) {
    in_order = in_order && k == name(i) && t.shape() == std::vector<std::size_t>{1} &&
               t.values<std::uint8_t>()[0] == static_cast<std::uint8_t>(i * 37 & 0xff);
    ++i;
  }
  CHECK(in_order);

  // and saving that many is linear too (the writer no longer inserts into an ordered_json object)
  auto again = lio::encode_safetensors(m.refs(), {{"k", "v"}});
  std::uint64_t len = 0;
  std::memcpy(&len, again.data(), 8);
  std::string const text(reinterpret_cast<char const*>(again.data()) + 8, len);
  CHECK(
      text.rfind(R"({"__metadata__":{"k":"v"},"layer.0.w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]},)",
                 0) == 0);
  CHECK(again.size() == 8 + len + n);
}

TEST_CASE("a duplicate tensor name among many is a format_error naming it", "[io]") {
  using namespace limits_test;
  std::size_t const n = 50000;
  auto name = [&](std::size_t i) {
    return i == 40000 ? std::string("t17") : "t" + std::to_string(i * 7919 % n);
  };
  // 17 * 7919 mod 50000 != 17, so "t17" is some other entry's name as well
  CHECK_THAT(st_error(io_test::safetensors_blob(many_tensors(n, name), n)),
             Catch::Contains("many.safetensors") && Catch::Contains("the key 't17' twice"));
  CHECK_THAT(st_error(io_test::safetensors_blob(R"({"__metadata__":{},"__metadata__":{}})", 0)),
             Catch::Contains("the key '__metadata__' twice"));
  CHECK_THAT(st_error(io_test::safetensors_blob(R"({"__metadata__":{"a":"1","a":"2"}})", 0)),
             Catch::Contains("the key 'a' twice"));
}

TEST_CASE("a safetensors shape over the rank limit is a format_error naming the rank and the limit", "[io]") {
  using namespace limits_test;
  auto shape_of_ones = [](std::size_t rank) {
    std::string s = "[";
    for (std::size_t i = 0; i < rank; ++i) s += i ? ",1" : "1";
    return R"({"x":{"dtype":"U8","shape":)" + s + R"(],"data_offsets":[0,1]}})";
  };
  auto ok = lio::decode_safetensors(io_test::safetensors_blob(shape_of_ones(64), 1), "r64.safetensors");
  CHECK(ok.at("x").rank() == 64);
  CHECK_THAT(
      st_error(io_test::safetensors_blob(shape_of_ones(65), 1)),
      Catch::Contains("many.safetensors: tensor 'x': shape has rank 65, over the limit of 64 dimensions"));
  // a million entries are counted, not stored
  CHECK_THAT(st_error(io_test::safetensors_blob(shape_of_ones(1000000), 1)), Catch::Contains("rank 1000000"));
  // the same limit for .npy
  std::string dict = "{'descr': '|u1', 'fortran_order': False, 'shape': (";
  for (int i = 0; i < 65; ++i) dict += "1, ";
  dict += "), }\n";
  std::string npy = "\x93NUMPY\x01";
  npy += '\0';
  npy += static_cast<char>(dict.size() & 0xff);
  npy += static_cast<char>(dict.size() >> 8);
  npy += dict + '\0';
  CHECK_THROWS_WITH(lio::decode_npy(io_test::to_bytes(npy), "r65.npy"),
                    Catch::Contains("r65.npy") && Catch::Contains("more than 64 dimensions"));
}

TEST_CASE("the header parser keeps JSON strict", "[io]") {
  using namespace limits_test;
  auto blob = [](std::string const& h) { return io_test::safetensors_blob(h, 0); };
  std::string const empty = R"({"dtype":"U8","shape":[0],"data_offsets":[0,0]})";
  // escapes and UTF-8 in names are decoded
  auto m = lio::decode_safetensors(
      blob("{\"a\\u00e9\\n\\ud83d\\ude00\":" + empty + ",\"\xc3\xa9\":" + empty + "}"));
  CHECK(m.names() == std::vector<std::string>{"a\xc3\xa9\n\xf0\x9f\x98\x80", "\xc3\xa9"});
  CHECK(lio::decode_safetensors(blob("{\"__metadata__\":{\"k\":\"\\\"q\\\\\"}}")).metadata.at("k") ==
        "\"q\\");
  // every one of these is not JSON
  for (std::string const& bad : std::vector<std::string>{
           "{\"a\":" + empty + ",}", "{\"a\" " + empty + "}", "{\"a\":" + empty + "} x",
           "{'a':" + empty + "}", "{\"a\\x\":1}", "{\"\\ud800\":1}", "{\"\\udc00\":1}", "{\"a\":01}",
           "{\"a\":1.}", "{\"a\":-}", "{\"a\":1e}", "{\"a\":tru}", "{\"a\":[1,]}", "{\"a\x01\":1}",
           "{\"\xc0\xaf\":1}", "{\"\xed\xa0\x80\":1}", "{\"\xf4\x90\x80\x80\":1}", "{\"a\":\"b}",
           "{\"a\":{\"dtype\":\"U8\",\"shape\":[0]"})
    CHECK_THAT(st_error(blob(bad)), Catch::Contains("is not valid JSON"));
  // a 20-digit shape entry does not fit 64 bits: not a non-negative integer (it was a double to nlohmann)
  CHECK_THAT(st_error(blob(R"({"a":{"dtype":"U8","shape":[18446744073709551616],"data_offsets":[0,0]}})")),
             Catch::Contains("shape entry 0 is 18446744073709551616, not a non-negative integer"));
  CHECK_THAT(st_error(blob(R"({"a":{"dtype":"U8","shape":[true],"data_offsets":[0,0]}})")),
             Catch::Contains("shape entry 0 is true, not a non-negative integer"));
  // the first problem in file order wins, whatever it is
  CHECK_THAT(
      st_error(blob(R"({"a":{"dtype":"X"},"b":{"dtype":"U8","shape":[0],"data_offsets":[0,0],"q":1}})")),
      Catch::Contains("tensor 'a': missing key 'shape'"));
  CHECK_THAT(st_error(blob("{\"a\":" + empty + ",\"b\":7,\"a\":" + empty + "}")),
             Catch::Contains("tensor 'b': entry is not an object"));
  CHECK_THAT(st_error(blob("{\"a\":" + empty + ",\"a\":" + empty + ",\"b\":7}")),
             Catch::Contains("the key 'a' twice"));
  // a JSON error anywhere outranks the content's problems
  CHECK_THAT(st_error(blob(R"({"a":7,"b":[[[1]]]})")), Catch::Contains("nested too deeply"));
}

TEST_CASE("an .npz entry over max_decompressed_bytes is a format_error before it is inflated", "[io]") {
  using namespace limits_test;
  std::size_t const mib = std::size_t{1} << 20;
  auto const bomb = make_zip({zeros_entry("x.npy", 8 * mib)}); // ~8 KiB inflating to 8 MiB
  REQUIRE(bomb.size() < 64 * 1024);
  // the default limit (1 GiB) lets it load
  auto m = lio::decode_npz(bomb, "bomb.npz");
  CHECK(m.at("x").shape() == std::vector<std::size_t>{8 * mib});
  CHECK(m.at("x").values<std::uint8_t>()[8 * mib - 1] == 0);
  // 1 MiB does not
  lio::load_options const small{.max_decompressed_bytes = mib};
  CHECK_THAT(npz_error(bomb, small),
             Catch::Contains("bomb.npz: entry 'x.npy': announces 8388736 inflated bytes") &&
                 Catch::Contains("over the limit of 1048576 bytes") &&
                 Catch::Contains("max_decompressed_bytes"));
  // the limit counts all entries together: two of 600 KiB are over 1 MiB
  auto const two = make_zip({zeros_entry("a.npy", 600 * 1024), zeros_entry("b.npy", 600 * 1024)});
  CHECK_THAT(npz_error(two, small),
             Catch::Contains("entry 'b.npy'") && Catch::Contains("with the entries before it"));
  CHECK(npz_error(two, {.max_decompressed_bytes = 2 * mib}) == "no error");
  // from a file too, and load_npz_into leaves its target alone
  io_test::scratch_dir dir;
  io_test::write_bytes(dir / "bomb.npz", bomb);
  CHECK_THROWS_AS(lio::load_npz(dir / "bomb.npz", small), lepton::format_error);
  lepton::tensor<std::uint8_t, lepton::dyn> x(lepton::shape_t<1>{3}, std::uint8_t{7});
  CHECK_THROWS_WITH(lio::load_npz_into(dir / "bomb.npz", {lio::target("x", x)}, {}, small),
                    Catch::Contains((dir / "bomb.npz").string()) &&
                        Catch::Contains("max_decompressed_bytes"));
  CHECK(x.size() == 3);
  CHECK(x(0) == 7);
}

TEST_CASE("an .npz entry that inflates to other than its declared size is a format_error", "[io]") {
  using namespace limits_test;
  std::size_t const mib = std::size_t{1} << 20;
  // declares 64 KiB, inflates to 8 MiB: inflating stops at 64 KiB + 1
  auto small_claim = zeros_entry("x.npy", 8 * mib, 64 * 1024);
  CHECK_THAT(npz_error(make_zip({small_claim})),
             Catch::Contains("entry 'x.npy': inflates to more than the announced 65536 bytes"));
  // declares 2000 bytes (within deflate's 1032:1), inflates to 1128
  auto big_claim = zeros_entry("x.npy", 1000, 2000);
  CHECK_THAT(npz_error(make_zip({big_claim})),
             Catch::Contains("entry 'x.npy': inflates to 1128 bytes, not the announced 2000"));
  // declares more than its compressed bytes can possibly inflate to: rejected before inflating
  auto impossible = zeros_entry("x.npy", 1000, 0xfffffff0u);
  CHECK_THAT(npz_error(make_zip({impossible}), {.max_decompressed_bytes = ~std::size_t{0}}),
             Catch::Contains("entry 'x.npy': announces 4294967280 bytes, more than its") &&
                 Catch::Contains("1032:1"));
  // a .npy header inside that declares more data than the entry holds: rejected before allocating
  auto header = lio::detail::npy_header_bytes(lio::dtype::f64, {std::size_t{1} << 40});
  zip_member stored{"y.npy", std::vector<unsigned char>(header.begin(), header.end()), 0,
                    static_cast<std::uint32_t>(header.size()), 0};
  stored.crc =
      static_cast<std::uint32_t>(crc32(0, stored.data.data(), static_cast<uInt>(stored.data.size())));
  CHECK_THAT(npz_error(make_zip({stored})),
             Catch::Contains("entry 'y.npy': truncated: F64 (1099511627776) needs 8796093022208 bytes"));
  std::vector<std::byte> prefix(header.size());
  std::memcpy(prefix.data(), header.data(), header.size());
  zip_member deflated{"y.npy", {}, 8, static_cast<std::uint32_t>(header.size()), 0};
  deflated.data = deflate_zeros(prefix, 0, deflated.crc);
  CHECK_THAT(npz_error(make_zip({deflated})),
             Catch::Contains("entry 'y.npy': truncated: F64 (1099511627776)"));
  // a damaged entry is reported as such, even when its .npy header is what got damaged
  auto bad_crc = zeros_entry("x.npy", 1000);
  bad_crc.crc ^= 1;
  CHECK_THAT(npz_error(make_zip({bad_crc})), Catch::Contains("entry 'x.npy': CRC-32 mismatch"));
  auto cut = zeros_entry("x.npy", 1000);
  cut.data.resize(cut.data.size() - 2);
  CHECK_THAT(npz_error(make_zip({cut})), Catch::Contains("entry 'x.npy': corrupt or truncated deflate data"));
  auto trailing = zeros_entry("x.npy", 1000);
  trailing.data.push_back(0);
  CHECK_THAT(npz_error(make_zip({trailing})), Catch::Contains("1 bytes after the end of the deflate data"));
  // deflate data that zlib refuses (block type 3 does not exist): zlib's reason, from io/zlib.hpp (P12)
  zip_member bad_block{"x.npy", {0x07, 0, 0, 0}, 8, 100, 0};
  CHECK_THAT(npz_error(make_zip({bad_block})),
             Catch::Contains("bomb.npz: entry 'x.npy': corrupt deflate data: invalid block type"));
}

TEST_CASE("a .npy header declaring more data than the file holds is rejected before allocating", "[io]") {
  namespace lio = lepton::io;
  // 2^61 bytes of F64 in a 128-byte file: an allocation attempt would throw bad_alloc (or abort
  // under ASan), not the format_error expected here
  auto header = lio::detail::npy_header_bytes(lio::dtype::f64, {std::size_t{1} << 58});
  CHECK_THROWS_WITH(
      lio::decode_npy(io_test::to_bytes(header), "huge.npy"),
      Catch::Contains("huge.npy: truncated: F64 (288230376151711744) needs 2305843009213693952 bytes"));
  io_test::scratch_dir dir;
  io_test::write_text(dir / "huge.npy", header);
  CHECK_THROWS_AS(lio::load_npy(dir / "huge.npy"), lepton::format_error);
}
