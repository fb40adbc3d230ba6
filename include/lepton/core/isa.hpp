#pragma once
/// @file isa.hpp
/// @brief Runtime choice of the CPU instruction set the hot kernels run with (runtime ISA dispatch).
///
/// lepton compiles its hot CPU kernels (the GEMM micro-kernels and packing, the direct convolution
/// kernels; with GCC also the fused elementwise loops, reductions, softmax row kernels and optimizer
/// passes, eval/isa_loops.hpp) several times inside the user's own translation unit: once for the instruction set the
/// build targets (its "baseline": SSE2 for a plain x86-64 build) and once for every higher level
/// lepton knows (AVX2 + FMA, AVX-512), each in a `#pragma GCC target` region. The first kernel call
/// of a process reads CPUID (and XGETBV: whether the OS saves the wider registers) and picks the
/// highest level both compiled and supported. A `-march=native` build compiles only the machine's
/// own level and has nothing to choose.
///
/// `LEPTON_ISA=sse2|avx2|avx512` in the environment forces one level (`portable` or `baseline`: the
/// lowest compiled level, which is sse2 in a plain build; `auto`: the default choice); set_active_isa() does the
/// same from code. Forcing a level the CPU lacks, or one this build did not compile, is an error
/// (lepton::value_error), never an illegal instruction.
///
/// Results do not depend on the level beyond float rounding: the AVX2 and AVX-512 GEMM compute every
/// element as the same FMA chain (bitwise equal results); the baseline SSE2 GEMM multiplies and adds
/// separately (two roundings per step). docs/performance.md lists which ops are bitwise stable.
///
/// **Example**:
/// @code
/// std::printf("kernels: %s (CPU best: %s)\n", lepton::to_string(lepton::active_isa()),
///             lepton::to_string(lepton::cpu_isa()));
/// lepton::set_active_isa(lepton::isa::avx2); // e.g. to compare levels in a benchmark
/// @endcode

#include <atomic>
#include <cstdlib>
#include <string>
#include <string_view>

#include "error.hpp"

#if (defined(__x86_64__) || defined(__i386__)) && (defined(__GNUC__) || defined(__clang__))
#include <cpuid.h>
/// 1 where lepton compiles per-ISA kernels in `#pragma GCC target` regions (x86 with GCC or clang).
#define LEPTON_ISA_X86 1
#else
#define LEPTON_ISA_X86 0
#endif

// The level the build itself targets (its compile flags): the lowest level compiled.
#if LEPTON_ISA_X86 && defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__) &&              \
    defined(__AVX512VL__) && defined(__FMA__)
#define LEPTON_ISA_BUILD_LEVEL 2
#elif LEPTON_ISA_X86 && defined(__AVX2__) && defined(__FMA__)
#define LEPTON_ISA_BUILD_LEVEL 1
#else
#define LEPTON_ISA_BUILD_LEVEL 0
#endif

// Target regions (backend/cpu/isa_kernels.hpp, eval/isa_loops.hpp): `#pragma GCC target` does not
// expand macros; _Pragma does, one level down.
#define LEPTON_ISA_DO_PRAGMA(x) _Pragma(#x)
#define LEPTON_ISA_GCC_TARGET(t) LEPTON_ISA_DO_PRAGMA(GCC target(t))
#define LEPTON_ISA_CLANG_TARGET(t)                                                                           \
  LEPTON_ISA_DO_PRAGMA(clang attribute push(__attribute__((target(t))), apply_to = function))
/// The target features of the AVX2 and AVX-512 levels (what detail::detect_cpu_isa() checks).
#define LEPTON_ISA_TARGET_AVX2 "avx,avx2,fma,bmi,bmi2,f16c,popcnt,lzcnt"
#define LEPTON_ISA_TARGET_AVX512                                                                             \
  "avx,avx2,fma,bmi,bmi2,f16c,popcnt,lzcnt,avx512f,avx512bw,avx512dq,avx512vl,avx512cd"

namespace lepton {

/// @brief The instruction-set levels of lepton's CPU kernels, lowest first.
enum class isa : int {
  portable = 0, ///< the build's own flags: SSE2 on a plain x86-64 build, NEON/... elsewhere
  avx2 = 1,     ///< AVX2 + FMA (x86-64-v3): 8 floats per vector, 16 registers
  avx512 = 2    ///< AVX-512 F/BW/DQ/VL (x86-64-v4): 16 floats per vector, 32 registers, masks
};

/// @brief The name of an ISA level, as LEPTON_ISA spells it: "sse2" (or "portable" off x86),
///        "avx2", "avx512".
inline char const* to_string(isa level) noexcept {
  switch (level) {
  case isa::portable: return LEPTON_ISA_X86 ? "sse2" : "portable";
  case isa::avx2: return "avx2";
  case isa::avx512: return "avx512";
  }
  return "?";
}

/// @brief Whether this build compiled the kernels of `level` (the build's own level and the ones above
///        it on x86; only `portable` elsewhere). A -march=native build compiles only its own level.
constexpr bool isa_compiled(isa level) noexcept {
  int const l = static_cast<int>(level);
  if (!LEPTON_ISA_X86) return l == 0;
  return l >= LEPTON_ISA_BUILD_LEVEL && l <= 2;
}

/// @brief The lowest level this build compiled (what `LEPTON_ISA=sse2` / `portable` selects).
constexpr isa lowest_compiled_isa() noexcept { return static_cast<isa>(LEPTON_ISA_BUILD_LEVEL); }

namespace detail {

#if LEPTON_ISA_X86
/// XCR0: which register states the OS saves on a context switch (XGETBV, when OSXSAVE is set).
inline unsigned long long read_xcr0() noexcept {
  unsigned eax = 0, edx = 0;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return (static_cast<unsigned long long>(edx) << 32) | eax;
}
#endif

/// The best level the CPU and the OS support, from CPUID and XCR0 (computed once per call).
inline isa detect_cpu_isa() noexcept {
#if LEPTON_ISA_X86
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return isa::portable;
  bool const fma = (c >> 12) & 1, osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
  if (!osxsave || !avx || !fma) return isa::portable;
  unsigned long long const xcr0 = read_xcr0();
  if ((xcr0 & 0x6) != 0x6) return isa::portable; // XMM and YMM state
  if (__get_cpuid_max(0, nullptr) < 7) return isa::portable;
  __cpuid_count(7, 0, a, b, c, d);
  bool const avx2 = (b >> 5) & 1, bmi2 = (b >> 8) & 1;
  if (!avx2 || !bmi2) return isa::portable;
  bool const f = (b >> 16) & 1, dq = (b >> 17) & 1, bw = (b >> 30) & 1, vl = (b >> 31) & 1;
  bool const zmm_state = (xcr0 & 0xE0) == 0xE0; // opmask, upper halves of zmm0-15, zmm16-31
  if (f && dq && bw && vl && zmm_state) return isa::avx512;
  return isa::avx2;
#else
  return isa::portable;
#endif
}

/// Parses a LEPTON_ISA value; throws value_error naming the variable and the accepted values.
inline isa parse_isa(std::string_view v, isa automatic) {
  if (v.empty() || v == "auto" || v == "native") return automatic;
  if (v == "sse2") return isa::portable;
  if (v == "portable" || v == "baseline") return lowest_compiled_isa();
  if (v == "avx2") return isa::avx2;
  if (v == "avx512") return isa::avx512;
  throw value_error("lepton: LEPTON_ISA='" + std::string(v) +
                    "' is not an ISA level; use sse2 (or portable), avx2, avx512 or auto");
}

/// Checks that `level` can run here; throws value_error saying why not.
inline void check_isa_usable(isa level, char const* where) {
  if (!isa_compiled(level))
    throw value_error(std::string("lepton: ") + where + ": ISA '" + to_string(level) +
                      "' was not compiled into this build (compiled: " + to_string(lowest_compiled_isa()) +
                      " and above" + (LEPTON_ISA_X86 ? "" : "; no x86 targets off x86") + ")");
  if (static_cast<int>(level) > static_cast<int>(detect_cpu_isa()))
    throw value_error(std::string("lepton: ") + where + ": this CPU does not support ISA '" +
                      to_string(level) + "' (best supported: " + to_string(detect_cpu_isa()) + ")");
}

/// The level the kernels use, -1 until the first call of active_isa().
inline std::atomic<int>& active_isa_slot() noexcept {
  static std::atomic<int> slot{-1};
  return slot;
}

/// The default choice: the best level both compiled and supported.
inline isa default_isa() noexcept {
  int best = static_cast<int>(detect_cpu_isa());
  if (best < LEPTON_ISA_BUILD_LEVEL) best = LEPTON_ISA_BUILD_LEVEL; // the build's flags promise it
  if (!LEPTON_ISA_X86) best = 0;
  return static_cast<isa>(best);
}

} // namespace detail

/// @brief The best ISA level this CPU (and its OS) supports, whatever this build compiled.
inline isa cpu_isa() noexcept { return detail::detect_cpu_isa(); }

/// @brief The ISA level lepton's dispatched CPU kernels run with in this process.
///
/// Chosen on the first call: `LEPTON_ISA` from the environment if set, else the highest level both
/// compiled (isa_compiled()) and supported by the CPU (cpu_isa()). Later calls return the same level
/// until set_active_isa() changes it.
/// @throws lepton::value_error if LEPTON_ISA names an unknown level, a level the CPU does not
///         support, or one this build did not compile (the next call checks again).
inline isa active_isa() {
  int l = detail::active_isa_slot().load(std::memory_order_relaxed);
  if (l >= 0) return static_cast<isa>(l);
  isa chosen = detail::default_isa();
  if (char const* env = std::getenv("LEPTON_ISA")) {
    chosen = detail::parse_isa(env, chosen);
    detail::check_isa_usable(chosen, "LEPTON_ISA");
  }
  detail::active_isa_slot().store(static_cast<int>(chosen), std::memory_order_relaxed);
  return chosen;
}

/// @brief Makes the dispatched kernels use `level` from now on (tests and benchmarks compare
///        levels this way). Call it between computations, not while another thread runs kernels.
/// @throws lepton::value_error if the CPU does not support `level` or this build did not compile it.
inline void set_active_isa(isa level) {
  detail::check_isa_usable(level, "set_active_isa");
  detail::active_isa_slot().store(static_cast<int>(level), std::memory_order_relaxed);
}

} // namespace lepton
