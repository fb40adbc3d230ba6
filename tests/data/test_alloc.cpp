// The loader allocates nothing once constructed, and the readers never allocate what a hostile
// header or a huge line asks for. This file replaces the global operator new/delete with counting
// versions (the only test file of the data tests that does), and, on Linux, the build wraps malloc
// & co. (ld --wrap, see CMakeLists.txt) so that the tensor storage xtensor allocates through xsimd's
// posix_memalign is counted too. Besides the number of allocations it records the largest one.

#include <catch2/catch.hpp>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <new>
#include <string>
#include <vector>

#include <lepton/data/csv.hpp>
#include <lepton/data/dataset.hpp>
#include <lepton/data/idx.hpp>
#include <lepton/data/loader.hpp>

#include "data_test_util.hpp"

namespace {
std::atomic<bool> g_counting{false};
std::atomic<long> g_news{0};
std::atomic<long> g_mallocs{0};
std::atomic<std::size_t> g_largest{0}; ///< bytes of the largest allocation while counting

void note_size(std::size_t n) {
  if (!g_counting.load(std::memory_order_relaxed)) return;
  std::size_t cur = g_largest.load(std::memory_order_relaxed);
  while (n > cur && !g_largest.compare_exchange_weak(cur, n, std::memory_order_relaxed)) {}
}
// With malloc wrapped, operator new's own malloc call is what records the size.
#ifdef LEPTON_TEST_WRAP_MALLOC
void note_new_size(std::size_t) {}
#else
void note_new_size(std::size_t n) { note_size(n); }
#endif

void* counted_new(std::size_t n) {
  if (g_counting.load(std::memory_order_relaxed)) g_news.fetch_add(1, std::memory_order_relaxed);
  note_new_size(n);
  if (void* p = std::malloc(n ? n : 1)) return p;
  throw std::bad_alloc();
}
void* counted_new_aligned(std::size_t n, std::align_val_t al) {
  if (g_counting.load(std::memory_order_relaxed)) g_news.fetch_add(1, std::memory_order_relaxed);
  note_new_size(n);
  auto a = static_cast<std::size_t>(al);
  if (a < sizeof(void*)) a = sizeof(void*);
  void* p = nullptr;
  if (posix_memalign(&p, a, n ? n : 1) == 0) return p;
  throw std::bad_alloc();
}

/// Counts operator new and (where wrapped) malloc calls made while alive.
struct allocation_counter {
  allocation_counter() {
    g_news = 0;
    g_mallocs = 0;
    g_largest = 0;
    g_counting = true;
  }
  ~allocation_counter() { g_counting = false; }
  void stop() { g_counting = false; }
};
} // namespace

void* operator new(std::size_t n) { return counted_new(n); }
void* operator new[](std::size_t n) { return counted_new(n); }
void* operator new(std::size_t n, std::align_val_t al) { return counted_new_aligned(n, al); }
void* operator new[](std::size_t n, std::align_val_t al) { return counted_new_aligned(n, al); }
// The nothrow forms too: a sanitizer runtime would otherwise supply them, mismatched with our delete.
void* operator new(std::size_t n, std::nothrow_t const&) noexcept {
  try {
    return counted_new(n);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, std::nothrow_t const& t) noexcept { return operator new(n, t); }
void* operator new(std::size_t n, std::align_val_t al, std::nothrow_t const&) noexcept {
  try {
    return counted_new_aligned(n, al);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](std::size_t n, std::align_val_t al, std::nothrow_t const& t) noexcept {
  return operator new(n, al, t);
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, std::nothrow_t const&) noexcept { std::free(p); }
void operator delete[](void* p, std::nothrow_t const&) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t, std::nothrow_t const&) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t, std::nothrow_t const&) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::align_val_t) noexcept { std::free(p); }
void operator delete(void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept { std::free(p); }

#ifdef LEPTON_TEST_WRAP_MALLOC
extern "C" {
void* __real_malloc(std::size_t);
void* __real_calloc(std::size_t, std::size_t);
void* __real_realloc(void*, std::size_t);
void* __real_aligned_alloc(std::size_t, std::size_t);
int __real_posix_memalign(void**, std::size_t, std::size_t);

static void count_malloc() {
  if (g_counting.load(std::memory_order_relaxed)) g_mallocs.fetch_add(1, std::memory_order_relaxed);
}
void* __wrap_malloc(std::size_t n) {
  count_malloc();
  note_size(n);
  return __real_malloc(n);
}
void* __wrap_calloc(std::size_t n, std::size_t s) {
  count_malloc();
  note_size(n * s);
  return __real_calloc(n, s);
}
void* __wrap_realloc(void* p, std::size_t n) {
  count_malloc();
  note_size(n);
  return __real_realloc(p, n);
}
void* __wrap_aligned_alloc(std::size_t a, std::size_t n) {
  count_malloc();
  note_size(n);
  return __real_aligned_alloc(a, n);
}
int __wrap_posix_memalign(void** p, std::size_t a, std::size_t n) {
  count_malloc();
  note_size(n);
  return __real_posix_memalign(p, a, n);
}
}
#endif

TEST_CASE("the allocation counters see operator new and tensor storage", "[data][loader][alloc]") {
  long news = 0, mallocs = 0;
  {
    allocation_counter c;
    auto* p = new int(3);
    asm volatile("" : : "g"(p) : "memory"); // keep the optimiser from eliding the new/delete pair
    delete p;
    lepton::tensor<float, lepton::dyn, 784> t(4);
    c.stop();
    news = g_news;
    mallocs = g_mallocs;
    CHECK(t.size() == 4 * 784);
  }
  CHECK(news >= 1);
  {
    allocation_counter c;
    std::vector<char> v(123456);
    asm volatile("" : : "g"(v.data()) : "memory");
    c.stop();
    CHECK(g_largest.load() >= 123456u);
  }
#ifdef LEPTON_TEST_WRAP_MALLOC
  CHECK(mallocs >= 2); // operator new's malloc and the tensor's posix_memalign
#else
  WARN("malloc is not wrapped on this platform: only operator new is counted");
  (void)mallocs;
#endif
}

TEST_CASE("iterating loader epochs performs zero heap allocations", "[data][loader][alloc]") {
  using xs = lepton::tensor<float, lepton::dyn, 784>;
  using ys = lepton::tensor<std::int32_t, lepton::dyn>;
  xs x(1000);
  ys y(1000);
  for (std::size_t i = 0; i < 1000; ++i) {
    x(i, 0) = float(i);
    y(i) = static_cast<std::int32_t>(i);
  }
  lepton::data::dataset ds(std::move(x), std::move(y));

  for (bool drop_last : {false, true}) {
    lepton::data::loader ld(ds, {.batch = 64, .shuffle = true, .seed = 42, .drop_last = drop_last});
    double checksum = 0;
    std::size_t samples = 0;
    long news = 0, mallocs = 0;
    {
      allocation_counter c;
      for (std::size_t epoch = 0; epoch < 4; ++epoch)
        for (auto [bx, by] : ld.epoch(epoch)) {
          for (std::size_t k = 0; k < bx.shape()[0]; ++k) checksum += bx(k, 0) - float(by(k));
          samples += by.shape()[0];
        }
      c.stop();
      news = g_news;
      mallocs = g_mallocs;
    }
    INFO("drop_last " << drop_last);
    CHECK(news == 0);
    CHECK(mallocs == 0);
    CHECK(checksum == 0.0);
    CHECK(samples == (drop_last ? 4 * 960u : 4 * 1000u));
  }
}

// --- The readers allocate what the data holds, not what a header or a line claims (issue P10) ---

namespace ldt = lepton_data_test;

TEST_CASE("read_idx: a gzip header claiming more than the stream holds allocates what inflates",
          "[data][idx][alloc]") {
  ldt::temp_dir dir;
  auto p = dir / "liar-idx.gz";
  // The header claims 16384 x 16384 = 256 MiB; the stream holds 300000 bytes, stored uncompressed
  // so that the compressed size allows the claim, and the size trailer is forged to match it.
  ldt::write_gz(p, ldt::idx_u8({16384, 16384}, ldt::bytes(300000, 7)), "wb0");
  ldt::bytes gz = ldt::read_file(p);
  ldt::forge_isize(gz, static_cast<std::uint32_t>(std::uint64_t{16384} * 16384 + 12));
  ldt::write_file(p, gz);
  std::size_t largest = 0;
  {
    allocation_counter c;
    LEPTON_CHECK_THROWS_NAMING(lepton::data::read_idx(p), lepton::format_error, p.string(), "gzip");
    c.stop();
    largest = g_largest;
  }
  CHECK(largest <= (std::size_t{2} << 20)); // the 1 MiB first chunk, not 256 MiB
}

TEST_CASE("read_idx: a 65536x65536 gzip header is refused by the default decompressed-size cap",
          "[data][idx][alloc]") {
  ldt::temp_dir dir;
  auto p = dir / "huge-idx.gz";
  // 4 GiB + 12 bytes claimed (= 12 mod 2^32, the forged trailer), 4.3 MB stored: the compressed
  // size allows the claim (deflate expands up to ~1032:1), max_bytes (4 GiB) does too.
  ldt::write_gz(p, ldt::idx_u8({65536, 65536}, ldt::bytes(4300000)), "wb0");
  ldt::bytes gz = ldt::read_file(p);
  ldt::forge_isize(gz, 12);
  ldt::write_file(p, gz);
  std::size_t largest = 0;
  {
    allocation_counter c;
    LEPTON_CHECK_THROWS_NAMING(lepton::data::read_idx(p), lepton::format_error, p.string(),
                               "more than idx_options::max_decompressed_bytes = 1073741824");
    c.stop();
    largest = g_largest;
  }
  CHECK(largest <= (std::size_t{1} << 20));
}

TEST_CASE("read_csv: a huge line is refused after max_line_bytes, without reading the file into memory",
          "[data][csv][alloc]") {
  ldt::temp_dir dir;
  auto p = dir / "long-line.csv";
  std::string const big(std::size_t{16} << 20, '1');
  std::string many;
  many.reserve(big.size());
  while (many.size() + 2 < big.size()) many += "0,";
  many += '0';
  for (std::string const* line : {static_cast<std::string const*>(&many), &big}) {
    ldt::write_text(p, "x,y\n1,2\n" + *line + "\n");
    std::size_t largest = 0;
    {
      allocation_counter c;
      LEPTON_CHECK_THROWS_NAMING(lepton::data::read_csv(p), lepton::format_error, p.string() + ": line 3",
                                 "longer than csv_options::max_line_bytes = 1048576");
      c.stop();
      largest = g_largest;
    }
    INFO((line == &big ? "one 16 MiB field" : "8 Mi fields"));
    CHECK(largest <= (std::size_t{4} << 20)); // about the cap, not the 16 MiB line
  }
}

TEST_CASE("parse_csv: a wide ragged row costs no string per field", "[data][csv][alloc]") {
  // 500000 fields "0" on one 1 MB line (under the default 1 MiB cap): the old lexer kept one 32-byte
  // std::string per field (a 16 MB vector), which is why a 100 MB line cost gigabytes.
  std::string text = "x,y\n";
  for (int i = 0; i < 500000; ++i) text += i ? ",0" : "0";
  text += '\n';
  std::size_t largest = 0;
  {
    allocation_counter c;
    LEPTON_CHECK_THROWS_NAMING(lepton::data::parse_csv(text, {}, "wide.csv"), lepton::format_error,
                               "wide.csv: line 2", "500000 fields, expected 2");
    c.stop();
    largest = g_largest;
  }
  CHECK(largest <= (std::size_t{64} << 10));
}
