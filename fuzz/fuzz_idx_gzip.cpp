// Fuzz target: the gzip path of lepton::data::read_idx, structure-aware. Random bytes rarely form
// a gzip stream whose CRC and size trailer match, so this target compresses the fuzzer's IDX bytes
// itself and then applies one controlled fault: cut the stream, append bytes or a second member,
// change the size trailer or the CRC, or flip a byte of the deflate data.
//
// Input layout: byte 0 = fault (low 3 bits) and compression level (high bits), byte 1 = fault
// parameter, the rest = the IDX content to compress.
#include <cstdint>
#include <cstring>
#include <vector>

#include <zlib.h>

#include <lepton/data/idx.hpp>

#include "fuzz_common.hpp"
#include "idx_checks.hpp"

namespace lepton_fuzz::idx_gzip {

inline std::vector<unsigned char> gzip(unsigned char const* p, std::size_t n, int level) {
  z_stream zs{};
  if (deflateInit2(&zs, level, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
    fuzz_fail("deflateInit2 failed");
  std::vector<unsigned char> out(deflateBound(&zs, static_cast<uLong>(n)) + 32);
  zs.next_in = const_cast<unsigned char*>(p);
  zs.avail_in = static_cast<uInt>(n);
  zs.next_out = out.data();
  zs.avail_out = static_cast<uInt>(out.size());
  int rc = deflate(&zs, Z_FINISH);
  if (rc != Z_STREAM_END) fuzz_fail("deflate did not finish");
  out.resize(zs.total_out);
  deflateEnd(&zs);
  return out;
}

} // namespace lepton_fuzz::idx_gzip

LEPTON_FUZZ_ENTRY(idx_gzip) {
  using namespace lepton_fuzz;
  if (size < 2) return 0;
  unsigned const fault = data[0] & 7u;
  int const level = (data[0] >> 3) % 10;
  unsigned const param = data[1];
  auto gz = idx_gzip::gzip(data + 2, size - 2, level);
  std::size_t const n = gz.size(); // >= 18 (header + empty block + trailer)
  switch (fault) {
  case 1: gz.resize(n * param / 256); break; // cut off
  case 2:                                    // trailing bytes: garbage or a second member
    if (param & 1) {
      auto again = idx_gzip::gzip(data + 2, (size - 2) / 2, level);
      gz.insert(gz.end(), again.begin(), again.end());
    } else {
      gz.insert(gz.end(), param / 2 + 1, static_cast<unsigned char>(param));
    }
    break;
  case 3: gz[n - 4 + param % 4] ^= static_cast<unsigned char>(param | 1); break; // size trailer
  case 4: gz[n - 8 + param % 4] ^= static_cast<unsigned char>(param | 1); break; // CRC
  case 5: gz[10 + (n - 18) * param / 256] ^= 0x55; break;                        // deflate data
  default: break;                                                                // intact
  }
  static mem_file file("lepton-fuzz-idx-gzip");
  file.assign(gz.data(), gz.size());
  lepton::data::idx_file got;
  bool gz_ok = false;
  run_input(file.path(), [&] {
    got = lepton::data::read_idx(file.path(), idx::options);
    gz_ok = true;
    idx::check_idx(got);
  });

  // Oracles. A cut stream, trailing bytes, a wrong size trailer or a wrong CRC: always rejected.
  if (fault >= 1 && fault <= 4) check(!gz_ok, "idx_gzip: a damaged gzip stream was accepted");
  // An intact stream: accepted exactly when the same bytes are a valid raw IDX file, with equal
  // content (unless those bytes are themselves gzip, which the raw read would inflate).
  bool const nested_gzip = size >= 4 && data[2] == 0x1f && data[3] == 0x8b;
  if ((fault == 0 || fault >= 6) && !nested_gzip) {
    static mem_file raw("lepton-fuzz-idx-raw");
    raw.assign(data + 2, size - 2);
    lepton::data::idx_file want;
    bool const raw_ok = accepts(raw.path(), [&] { want = lepton::data::read_idx(raw.path(), idx::options); });
    check(raw_ok == gz_ok, "idx_gzip: gzip and raw readers disagree on accepting the same content");
    if (raw_ok)
      check(got.header.type == want.header.type && got.header.dims == want.header.dims &&
                got.bytes == want.bytes,
            "idx_gzip: gzip and raw readers return different content");
  }
  return 0;
}
