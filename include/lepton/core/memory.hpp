#pragma once
/// @file memory.hpp
/// @brief Aligned buffers and the evaluation arena that makes a training step allocation-free.
///
/// Every value an evaluation materialises (a GEMM output, a reduction, a gradient) lives in an
/// `arena`: a bump allocator whose memory is kept between evaluations. The first evaluation of a
/// given expression and batch size grows the arena; when it is released to empty and holds several
/// blocks, they are merged into one block of the total size. From then on the same evaluation
/// performs no heap allocation at all.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <new>
#include <type_traits>
#include <vector>

#include "config.hpp"

namespace lepton::detail {

inline void* aligned_alloc_bytes(std::size_t bytes) {
  return ::operator new(bytes == 0 ? buffer_alignment : bytes, std::align_val_t{buffer_alignment});
}
inline void aligned_free_bytes(void* p) noexcept { ::operator delete(p, std::align_val_t{buffer_alignment}); }

inline std::size_t round_up(std::size_t n, std::size_t a) { return (n + a - 1) / a * a; }

/// A stack-ordered allocator of 64-byte aligned memory. Not thread-safe: use one per thread.
class arena {
public:
  /// A position to come back to with release().
  struct mark {
    std::size_t block = 0;
    std::size_t offset = 0;
  };

  arena() { m_blocks.reserve(64); }
  arena(arena const&) = delete;
  arena& operator=(arena const&) = delete;
  ~arena() {
    for (auto& b : m_blocks) aligned_free_bytes(b.data);
  }

  /// Returns `bytes` bytes aligned to `buffer_alignment`; valid until release() passes below them.
  void* allocate(std::size_t bytes) {
    bytes = round_up(bytes == 0 ? 1 : bytes, buffer_alignment);
    while (m_block < m_blocks.size()) {
      auto& b = m_blocks[m_block];
      if (m_offset + bytes <= b.size) {
        void* p = b.data + m_offset;
        m_offset += bytes;
        note_use();
        return p;
      }
      ++m_block;
      m_offset = 0;
    }
    std::size_t last = m_blocks.empty() ? 0 : m_blocks.back().size;
    std::size_t size = std::max<std::size_t>({bytes, 2 * last, std::size_t{1} << 16});
    m_blocks.push_back({static_cast<std::byte*>(aligned_alloc_bytes(size)), size});
    m_block = m_blocks.size() - 1;
    m_offset = bytes;
    note_use();
    return m_blocks.back().data;
  }

  /// Typed allocation of n objects of trivially destructible type T (left uninitialised).
  template <class T> T* allocate_n(std::size_t n) {
    static_assert(std::is_trivially_destructible_v<T>, "lepton: arena holds trivial types only");
    return static_cast<T*>(allocate(n * sizeof(T)));
  }

  mark get_mark() const noexcept { return {m_block, m_offset}; }

  /// Frees everything allocated after `m`. Releasing to empty merges blocks (see file comment).
  void release(mark m) {
    m_block = m.block;
    m_offset = m.offset;
    if (m_block == 0 && m_offset == 0 && m_blocks.size() > 1) {
      std::size_t total = 0;
      for (auto& b : m_blocks) {
        total += b.size;
        aligned_free_bytes(b.data);
      }
      m_blocks.clear();
      m_blocks.push_back({static_cast<std::byte*>(aligned_alloc_bytes(total)), total});
    }
  }

  /// Bytes reserved from the system (for diagnostics and tests).
  std::size_t capacity() const noexcept {
    std::size_t t = 0;
    for (auto& b : m_blocks) t += b.size;
    return t;
  }

  /// Bytes in use now: the blocks below the current one (whole) plus the current offset.
  std::size_t used() const noexcept {
    std::size_t t = m_offset;
    for (std::size_t i = 0; i < m_block && i < m_blocks.size(); ++i) t += m_blocks[i].size;
    return t;
  }
  /// The largest used() since the last reset_high_water() (for tests of workspace planning).
  std::size_t high_water() const noexcept { return m_high; }
  void reset_high_water() noexcept { m_high = used(); }

private:
  void note_use() noexcept { m_high = std::max(m_high, used()); }
  struct block {
    std::byte* data;
    std::size_t size;
  };
  std::vector<block> m_blocks;
  std::size_t m_block = 0;
  std::size_t m_offset = 0;
  std::size_t m_high = 0; // high-water mark of used()
};

/// RAII: releases the arena to the mark taken at construction.
class arena_scope {
public:
  explicit arena_scope(arena& a) : m_arena(a), m_mark(a.get_mark()) {}
  arena_scope(arena_scope const&) = delete;
  arena_scope& operator=(arena_scope const&) = delete;
  ~arena_scope() { m_arena.release(m_mark); }

private:
  arena& m_arena;
  arena::mark m_mark;
};

/// Buffers that live longer than a stack discipline allows: the gradients summed at an evaluation's
/// DAG entries (eval/dag.hpp) are acquired when the first contribution arrives and released when
/// the entry's backward rule has consumed them, in an order unrelated to their allocation. A
/// released buffer is handed to the next request it fits (the smallest free one that is large
/// enough), so the live gradients of a backward pass, not all of them, bound its memory. Blocks are
/// kept across evaluations: a repeated training step allocates nothing after the first. Not
/// thread-safe: use one per thread.
class buffer_pool {
public:
  buffer_pool() = default;
  buffer_pool(buffer_pool const&) = delete;
  buffer_pool& operator=(buffer_pool const&) = delete;
  ~buffer_pool() {
    for (auto& b : m_blocks) aligned_free_bytes(b.data);
  }

  /// A buffer of at least `bytes` bytes aligned to `buffer_alignment`, until release().
  void* acquire(std::size_t bytes) {
    bytes = round_up(bytes == 0 ? 1 : bytes, buffer_alignment);
    std::size_t best = m_blocks.size();
    for (std::size_t i = 0; i < m_blocks.size(); ++i)
      if (!m_blocks[i].used && m_blocks[i].size >= bytes &&
          (best == m_blocks.size() || m_blocks[i].size < m_blocks[best].size))
        best = i;
    if (best == m_blocks.size()) {
      m_blocks.push_back({static_cast<std::byte*>(aligned_alloc_bytes(bytes)), bytes, false});
      m_capacity += bytes;
    }
    m_blocks[best].used = true;
    m_in_use += m_blocks[best].size;
    m_peak = std::max(m_peak, m_in_use);
    return m_blocks[best].data;
  }
  /// Hands back a buffer from acquire(); null is ignored.
  void release(void const* p) noexcept {
    if (!p) return;
    for (auto& b : m_blocks)
      if (b.data == p && b.used) {
        b.used = false;
        m_in_use -= b.size;
        return;
      }
  }

  std::size_t in_use() const noexcept { return m_in_use; }     ///< bytes acquired and not released
  std::size_t capacity() const noexcept { return m_capacity; } ///< bytes reserved from the system
  /// The largest in_use() since the last reset_peak() (for tests of workspace planning).
  std::size_t peak() const noexcept { return m_peak; }
  void reset_peak() noexcept { m_peak = m_in_use; }

private:
  struct block {
    std::byte* data;
    std::size_t size;
    bool used;
  };
  std::vector<block> m_blocks;
  std::size_t m_in_use = 0, m_capacity = 0, m_peak = 0;
};

/// The buffer pool used by evaluations on this thread.
inline buffer_pool& thread_buffer_pool() {
  thread_local buffer_pool p;
  return p;
}

/// The arena used by evaluations on this thread.
inline arena& thread_arena() {
  thread_local arena a;
  return a;
}

} // namespace lepton::detail
