#pragma once
/// @file fpenv.hpp
/// @brief Flushing denormal floats to zero during lepton's computations.
///
/// Training drives many values (Adam's second moments, saturated activations' gradients) into the
/// denormal range, where x86 arithmetic is 10-100x slower: a training step was measured 5x slower
/// after a few hundred steps without it. lepton therefore sets FTZ and DAZ (flush-to-zero,
/// denormals-are-zero) for the duration of each of its computations (evaluation, backward, an
/// optimizer step), restoring the caller's floating-point mode afterwards; its worker threads use
/// the caller's mode. Values below ~1.2e-38 (float) / 2.2e-308 (double) become 0. Turn it off with
/// `lepton::set_flush_denormals(false)` for bit-exact IEEE denormal behaviour.

#include <atomic>

#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#define LEPTON_HAS_MXCSR 1
#else
#define LEPTON_HAS_MXCSR 0
#endif

namespace lepton {

namespace detail {
inline std::atomic<bool>& flush_denormals_flag() {
  static std::atomic<bool> on{true};
  return on;
}

/// Sets FTZ/DAZ for its lifetime (when enabled), then restores the previous mode.
class fp_scope {
public:
  fp_scope() {
#if LEPTON_HAS_MXCSR
    m_saved = _mm_getcsr();
    if (flush_denormals_flag().load(std::memory_order_relaxed)) _mm_setcsr(m_saved | 0x8040u);
#endif
  }
  fp_scope(fp_scope const&) = delete;
  fp_scope& operator=(fp_scope const&) = delete;
  ~fp_scope() {
#if LEPTON_HAS_MXCSR
    _mm_setcsr(m_saved);
#endif
  }

private:
  unsigned m_saved = 0;
};

/// The current floating-point control word (to hand to worker threads), and setting it.
inline unsigned fp_mode() {
#if LEPTON_HAS_MXCSR
  return _mm_getcsr();
#else
  return 0;
#endif
}
inline void set_fp_mode([[maybe_unused]] unsigned mode) {
#if LEPTON_HAS_MXCSR
  _mm_setcsr(mode);
#endif
}
} // namespace detail

/// @brief Whether lepton flushes denormals to zero during its computations (default: true).
/// **Example**: `lepton::set_flush_denormals(false); // IEEE denormals, slower`
inline void set_flush_denormals(bool on) { detail::flush_denormals_flag().store(on); }
/// @brief See set_flush_denormals.
inline bool flush_denormals() { return detail::flush_denormals_flag().load(); }

} // namespace lepton
