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

private:
  struct block {
    std::byte* data;
    std::size_t size;
  };
  std::vector<block> m_blocks;
  std::size_t m_block = 0;
  std::size_t m_offset = 0;
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

/// The arena used by evaluations on this thread.
inline arena& thread_arena() {
  thread_local arena a;
  return a;
}

} // namespace lepton::detail
