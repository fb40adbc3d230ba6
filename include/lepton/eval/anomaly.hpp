#pragma once
/// @file anomaly.hpp
/// @brief Anomaly detection: an opt-in check that names the first operation producing a NaN or an
///        infinity, in the forward or the backward pass.
///
/// When enabled (`lepton::anomaly_guard`, or `set_anomaly_detection(true)`), every value the
/// evaluator materialises — each fused group's output, each GEMM, reduction, softmax and loss, and
/// each gradient buffer and parameter gradient in the backward pass — is scanned right after it is
/// computed, in evaluation order; the first non-finite one throws lepton::numeric_error naming the
/// pass, the operation (as an expression: `relu(add(matmul(tensor, param), param))`) and the
/// element. It costs one extra read of each buffer, so it is off by default.

#include <atomic>
#include <cmath>
#include <cstddef>
#include <string>
#include <type_traits>

#include "../core/error.hpp"
#include "../core/shape.hpp"
#include "../expr/describe.hpp"

namespace lepton {

namespace detail {
inline std::atomic<bool>& anomaly_flag() {
  static std::atomic<bool> on{false};
  return on;
}

/// Index of the first non-finite element, or n.
template <class T> std::size_t first_nonfinite(T const* p, std::size_t n) {
  if constexpr (std::is_floating_point_v<T>) {
    for (std::size_t i = 0; i < n; ++i)
      if (!std::isfinite(p[i])) return i;
  }
  return n;
}

[[noreturn]] inline void throw_anomaly(char const* pass, std::string const& what, bool nan, std::size_t i,
                                       std::size_t n) {
  throw numeric_error(std::string("anomaly detected in the ") + pass + " pass: " + what + " produced " +
                      (nan ? "NaN" : "an infinity") + " at element " + std::to_string(i) + " of " +
                      std::to_string(n));
}

template <class T>
void check_finite(T const* p, std::size_t n, char const* pass, std::string const& (*what)()) {
  std::size_t i = first_nonfinite(p, n);
  if (i < n) throw_anomaly(pass, what(), std::isnan(static_cast<double>(p[i])), i, n);
}

template <class Node> std::string const& description() {
  static std::string const s = describe<Node>::get();
  return s;
}

/// Scans a freshly computed buffer when anomaly detection is on.
template <class Node, class T> inline void anomaly_check(T const* p, std::size_t n, char const* pass) {
  if (anomaly_flag().load(std::memory_order_relaxed)) check_finite(p, n, pass, &description<Node>);
}
} // namespace detail

/// @brief Turns anomaly detection on or off for every thread (see the file comment).
inline void set_anomaly_detection(bool on) { detail::anomaly_flag().store(on); }
/// @brief Whether anomaly detection is on.
inline bool anomaly_detection() { return detail::anomaly_flag().load(); }

/// @brief Enables anomaly detection for a scope.
/// **Example**: `{ lepton::anomaly_guard g; lepton::backward(loss); } // throws naming the first NaN-producing op`
class anomaly_guard {
public:
  anomaly_guard() : m_prev(anomaly_detection()) { set_anomaly_detection(true); }
  anomaly_guard(anomaly_guard const&) = delete;
  anomaly_guard& operator=(anomaly_guard const&) = delete;
  ~anomaly_guard() { set_anomaly_detection(m_prev); }

private:
  bool m_prev;
};

} // namespace lepton
