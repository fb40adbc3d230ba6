// The CUDA memory foundation: streams, the caching allocator (and its Thrust adaptor), device tensors.
// Without a usable device it checks what must hold there (size classes, zero-size tensors without CUDA
// calls, device_error from stream and device_tensor creation) and exits 77 (ctest: skipped).
#include <lepton/cuda.cuh>
#include <lepton/lepton.hpp>

#include <thrust/reduce.h>
#include <thrust/system/cuda/execution_policy.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>

namespace {

namespace lc = lepton::cuda;

int failures = 0;
void expect(bool ok, char const* what) {
  if (!ok) {
    std::fprintf(stderr, "cuda memory: FAILED: %s\n", what);
    ++failures;
  }
}

bool contains(std::string const& s, std::string const& part) { return s.find(part) != std::string::npos; }

// Runs f and reports whether it threw lepton::device_error with a non-empty message.
template <class F> bool throws_device_error(F&& f, char const* what) {
  try {
    f();
  } catch (lepton::device_error const& e) {
    std::printf("cuda memory: %s -> %s\n", what, e.what());
    return std::string(e.what()).size() > std::string("lepton: ").size();
  }
  return false;
}

// Checks that need no device: they also run (and must pass) on a machine without a GPU.
void without_device_calls() {
  using ca = lc::caching_allocator;
  expect(ca::size_class(0) == 0, "size_class(0) == 0");
  expect(ca::size_class(1) == 512, "size_class(1) == 512");
  expect(ca::size_class(512) == 512, "size_class(512) == 512");
  expect(ca::size_class(513) == 1024, "size_class(513) == 1024");
  expect(ca::size_class(std::size_t{1} << 20) == std::size_t{1} << 20, "size_class(1 MiB) == 1 MiB");
  expect(ca::size_class((std::size_t{1} << 20) + 1) == std::size_t{2} << 20,
         "size_class(1 MiB + 1) == 2 MiB");
  expect(ca::size_class(std::size_t{3} << 20) == std::size_t{4} << 20, "size_class(3 MiB) == 4 MiB");
  expect(throws_device_error([] { (void)ca::size_class(~std::size_t{0}); }, "size_class(SIZE_MAX)"),
         "size_class(SIZE_MAX) throws device_error");

  ca alloc;
  expect(alloc.allocate(0) == nullptr, "allocate(0) returns nullptr");
  alloc.deallocate(nullptr);
  auto st = alloc.stats();
  expect(st.bytes_in_use == 0 && st.bytes_cached == 0 && st.cuda_malloc_calls == 0 && st.hits == 0,
         "allocate(0) and deallocate(nullptr) leave the statistics at 0");

  // Zero-size device tensors hold no memory and call no CUDA function.
  lc::device_tensor<float, lepton::dyn> z(0);
  expect(z.size() == 0 && z.bytes() == 0 && z.data() == nullptr && z.shape(0) == 0,
         "zero-size device_tensor");
  lc::device_tensor<double, lepton::dyn, 7> z2;
  expect(z2.shape() == lepton::shape_t<2>{0, 7} && z2.data() == nullptr, "default (0, 7) device_tensor");
  lc::device_tensor<float, 3, lepton::dyn> z3(0);
  auto z4 = std::move(z3);
  expect(z4.shape() == lepton::shape_t<2>{3, 0} && z3.size() == 0, "moving a zero-size device_tensor");
  bool shape_refused = false;
  try {
    lc::device_tensor<float, 3, lepton::dyn> bad(lepton::shape_t<2>{4, 0});
  } catch (lepton::shape_error const& e) {
    shape_refused = contains(e.what(), "(4, 0)") && contains(e.what(), "(3, dyn)");
  }
  expect(shape_refused, "device_tensor refuses a shape that contradicts its static dimensions");
  bool index_refused = false;
  try {
    (void)z.shape(1);
  } catch (lepton::index_error const&) {
    index_refused = true;
  }
  expect(index_refused, "device_tensor::shape(rank) throws index_error");

  // The Thrust adaptor: rebinding keeps the cache, equality compares caches.
  lc::thrust_allocator<char> tc(alloc);
  lc::thrust_allocator<float> tf(tc);
  expect(tf.resource() == &alloc && tc == tf, "thrust_allocator rebinding shares the cache");
  expect(lc::thrust_allocator<char>{} != tc, "thrust_allocator of different caches differ");
  expect(tc.allocate(0) == nullptr, "thrust_allocator::allocate(0) returns nullptr");
  expect(lc::thrust_allocator<int>{}.resource() == &lc::default_allocator(), "default thrust_allocator");
}

template <class T> void round_trip(std::size_t n) {
  lc::stream s;
  lepton::tensor<T, lepton::dyn> host(n); // (n,)
  for (std::size_t i = 0; i < n; ++i)
    host(i) = static_cast<T>(std::sin(static_cast<double>(i) * 0.731) * 1e3 + static_cast<double>(i) * 1e-7);
  auto dev = lc::to_device(host, s);
  expect(dev.shape() == host.shape(), "to_device keeps the shape");
  expect((n == 0) == (dev.data() == nullptr), "only an empty device tensor has no memory");
  lepton::tensor<T, lepton::dyn> back = dev.to_host(s);
  expect(back.shape() == host.shape(), "to_host keeps the shape");
  expect(n == 0 || std::memcmp(back.data(), host.data(), n * sizeof(T)) == 0,
         "host -> device -> host is bit-identical");

  // clone, device-to-device copy_into and host copy_into the same way.
  auto copy = dev.clone(s);
  lc::device_tensor<T, lepton::dyn> dst(n);
  lc::copy_into(copy, dst, s);
  lepton::tensor<T, lepton::dyn> back2(n);
  lc::copy_into(dst, back2, s);
  expect(n == 0 || std::memcmp(back2.data(), host.data(), n * sizeof(T)) == 0,
         "clone + copy_into (device to device, device to host) is bit-identical");
  lc::copy_into(back2, dst, s);
  expect(n == 0 || std::memcmp(dst.to_host(s).data(), host.data(), n * sizeof(T)) == 0,
         "copy_into (host to device) is bit-identical");
}

void shapes_and_mismatches() {
  lc::stream s;
  lepton::tensor<float, lepton::dyn, 3> m({4, 3}); // (4, 3)
  for (std::size_t i = 0; i < 4; ++i)
    for (std::size_t j = 0; j < 3; ++j) m(i, j) = static_cast<float>(10 * i + j);
  auto dm = lc::to_device(m, s);
  expect(dm.shape() == lepton::shape_t<2>{4, 3}, "rank-2 to_device shape");
  auto rows = lc::to_device(m.rows(1, 3), s); // (2, 3)
  auto hr = rows.to_host(s);
  expect(hr.shape() == lepton::shape_t<2>{2, 3} && hr(0, 0) == 10.0f && hr(1, 2) == 22.0f,
         "to_device of a host view");

  lepton::tensor<float, lepton::dyn, 3> wrong(5); // (5, 3)
  auto names_both = [](lepton::shape_error const& e) {
    return contains(e.what(), "(5, 3)") && contains(e.what(), "(4, 3)");
  };
  // Whether f throws a shape_error whose message names both shapes.
  auto refused_naming_both = [&](auto&& f) {
    try {
      f();
    } catch (lepton::shape_error const& e) {
      return names_both(e);
    }
    return false;
  };
  expect(refused_naming_both([&] { lc::copy_into(wrong, dm, s); }),
         "copy_into host to device: shape_error names both shapes");
  expect(refused_naming_both([&] { lc::copy_into(dm, wrong, s); }),
         "copy_into device to host: shape_error names both shapes");
  lc::device_tensor<float, lepton::dyn, 3> dwrong(5);
  expect(refused_naming_both([&] { lc::copy_into(dwrong, dm, s); }),
         "copy_into device to device: shape_error names both shapes");

  auto moved = std::move(dm);
  expect(dm.size() == 0 && dm.data() == nullptr && moved.size() == 12, "moving a device tensor");
  expect(moved.to_host(s)(3, 1) == 31.0f, "the moved-to tensor keeps the values");
}

void allocator_reuse_and_oom() {
  lc::caching_allocator alloc;
  void* a = alloc.allocate(1000);
  auto st = alloc.stats();
  expect(st.cuda_malloc_calls == 1 && st.bytes_in_use == 1024 && st.hits == 0,
         "first allocation: one cudaMalloc");
  alloc.deallocate(a);
  st = alloc.stats();
  expect(st.bytes_in_use == 0 && st.bytes_cached == 1024, "deallocate caches the block");
  void* b = alloc.allocate(700); // same size class (1024)
  st = alloc.stats();
  expect(b == a && st.hits == 1 && st.cuda_malloc_calls == 1, "same size class: a hit, no cudaMalloc");
  void* c = alloc.allocate(700); // the class's free list is empty now
  st = alloc.stats();
  expect(c != b && st.cuda_malloc_calls == 2 && st.bytes_in_use == 2048,
         "a second live block: a new cudaMalloc");
  alloc.deallocate(b);
  alloc.deallocate(c);
  bool refused = false;
  try {
    alloc.deallocate(c);
  } catch (lepton::value_error const&) {
    refused = true;
  }
  expect(refused, "deallocating twice throws value_error");
  alloc.release_cached();
  st = alloc.stats();
  expect(st.bytes_cached == 0 && st.bytes_in_use == 0, "release_cached empties the cache");

  // Device tensors use the allocator they are given.
  {
    lc::device_tensor<float, lepton::dyn> t(lepton::shape_t<1>{300}, alloc); // 1200 B -> 1536
    expect(alloc.stats().bytes_in_use == 1536 && &t.allocator() == &alloc,
           "device_tensor uses its allocator");
  }
  expect(alloc.stats().bytes_cached == 1536, "a destroyed device_tensor returns its block to the cache");

  // Out of memory: cleared, the cache released, retried, then device_error naming the sizes.
  std::size_t const huge = std::size_t{1} << 50;
  bool oom = false;
  try {
    (void)alloc.allocate(huge);
  } catch (lepton::device_error const& e) {
    std::printf("cuda memory: allocate(1 << 50) -> %s\n", e.what());
    oom = contains(e.what(), std::to_string(huge)) && contains(e.what(), "in use") &&
          contains(e.what(), "cached");
  }
  expect(oom, "allocate(1 << 50) throws device_error naming the requested bytes, in use and cached");
  expect(alloc.stats().bytes_cached == 0, "out of memory released the cache before retrying");
  expect(cudaGetLastError() == cudaSuccess, "no CUDA error left behind after out of memory");
  void* small = nullptr;
  try {
    small = alloc.allocate(4096);
  } catch (lepton::device_error const&) {}
  expect(small != nullptr, "a small allocation works after out of memory");
  alloc.deallocate(small);
}

template <class T> void fill_matches_host(std::size_t n, T value) {
  lc::stream s;
  lc::device_tensor<T, lepton::dyn> d(n);
  d.fill(value, s);
  lepton::tensor<T, lepton::dyn> h = d.to_host(s);
  lepton::tensor<T, lepton::dyn> ref(lepton::shape_t<1>{n}, value);
  expect(h.shape() == ref.shape(), "fill: shape");
  expect(n == 0 || std::memcmp(h.data(), ref.data(), n * sizeof(T)) == 0, "fill kernel equals the host fill");
}

void thrust_reduce_uses_the_cache() {
  lc::stream s;
  std::size_t const n = (std::size_t{1} << 20) + 5;
  lepton::tensor<float, lepton::dyn> h(n);
  double ref = 0.0; // float64 reference; the values are small integers, so every sum is exact
  for (std::size_t i = 0; i < n; ++i) {
    h(i) = static_cast<float>(i % 251) - 100.0f;
    ref += static_cast<double>(h(i));
  }
  auto d = lc::to_device(h, s);
  lc::caching_allocator cache;
  lc::thrust_allocator<char> alloc(cache);
  float const* p = d.data();
  double const first = thrust::reduce(thrust::cuda::par(alloc).on(s.get()), p, p + n, 0.0);
  expect(first == ref, "thrust::reduce with thrust_allocator on a stream equals the host sum");
  auto const st1 = cache.stats();
  expect(st1.cuda_malloc_calls >= 1 && st1.bytes_in_use == 0, "Thrust took its temporaries from the cache");
  double const second = thrust::reduce(thrust::cuda::par(alloc).on(s.get()), p, p + n, 0.0);
  auto const st2 = cache.stats();
  expect(second == ref, "second thrust::reduce equals the host sum");
  expect(st2.cuda_malloc_calls == st1.cuda_malloc_calls && st2.hits > st1.hits,
         "a repeated thrust::reduce calls no cudaMalloc (cache hits)");
}

} // namespace

int main() {
  without_device_calls();

  int const devices = lc::device_count();
  if (devices == 0) {
    expect(throws_device_error([] { lc::stream s; }, "stream without a device"),
           "creating a stream without a device throws device_error with a message");
    expect(throws_device_error([] { lc::device_tensor<float, lepton::dyn> t(17); },
                               "device_tensor without a device"),
           "creating a device_tensor without a device throws device_error with a message");
    expect(lc::default_allocator().stats().bytes_in_use == 0, "a failed device_tensor holds no memory");
    std::printf("cuda memory: no CUDA device -> %s\n", failures == 0 ? "skipped" : "FAILED");
    return failures == 0 ? 77 : 1;
  }

  for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{17}, std::size_t{1} << 20}) {
    round_trip<float>(n);
    round_trip<double>(n);
  }
  shapes_and_mismatches();
  allocator_reuse_and_oom();
  for (std::size_t n : {std::size_t{0}, std::size_t{1}, std::size_t{1000}, (std::size_t{1} << 22) + 3}) {
    fill_matches_host<float>(n, -2.5f);
    fill_matches_host<double>(n, 1.0 / 3.0);
    fill_matches_host<int>(n, -7);
  }
  thrust_reduce_uses_the_cache();
  expect(cudaGetLastError() == cudaSuccess, "no CUDA error left behind");

  std::printf("cuda memory: %d device(s), %s\n", devices, failures == 0 ? "ok" : "FAILED");
  return failures == 0 ? 0 : 1;
}
