// Hostile sizes: headers with very many tensors or dimensions. Each must parse in linear-ish time or
// fail with a typed error naming the file, and never allocate more than the file (plus the documented
// limits) backs.
#include <catch2/catch.hpp>

#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

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

  // load_safetensors_into reads such a header too
  lio::dyn_tensor first(lio::dtype::u8, {1});
  lio::detail::load_safetensors_into_from(lio::detail::byte_source(blob, "many.safetensors"),
                                          std::vector<lio::tensor_target>{lio::target(name(0), first)},
                                          {.allow_unexpected = true}, {});
  CHECK(first.values<std::uint8_t>()[0] == 0);

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
