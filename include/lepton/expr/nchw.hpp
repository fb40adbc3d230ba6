#pragma once
/// @file nchw.hpp
/// @brief What the 2-D window ops on NCHW tensors (conv2d in conv.hpp, pooling in pool.hpp) share:
///        the check that an input is NCHW and the output-extent arithmetic of a window along one
///        axis, at compile time (static sizes, `dyn` stays `dyn`) and at run time (throws).

#include <cstddef>
#include <string>

#include "../core/error.hpp"
#include "../core/shape.hpp"

namespace lepton {

// Each check is a class template whose arguments are the dimensions involved, so the compiler's
// note under `static assertion failed: lepton: ...` names them (see core/constraints.hpp).

/// @brief A 4-D (batch, channels, height, width) input is required; the argument is the rank given.
template <std::size_t Rank> struct nchw_input_rank {
  static constexpr bool value = Rank == 4;
};

namespace detail {

/// Output extent of a convolution or pooling window along one axis (dyn stays dyn).
constexpr std::size_t window_out(std::size_t in, std::size_t k, std::size_t s, std::size_t p, std::size_t d) {
  if (in == dyn || k == dyn) return dyn;
  std::size_t const ext = d * (k - 1) + 1;
  if (in + 2 * p < ext) return 0; // reported by a static_assert
  return (in + 2 * p - ext) / s + 1;
}
constexpr std::size_t kernel_extent(std::size_t k, std::size_t d) { return k == dyn ? dyn : d * (k - 1) + 1; }
constexpr std::size_t padded(std::size_t in, std::size_t p) { return in == dyn ? dyn : in + 2 * p; }

/// window_out at run time: throws lepton::shape_error, naming `op` and `axis`, when the window does
/// not fit the padded input.
inline std::size_t window_out_rt(std::size_t in, std::size_t k, std::size_t s, std::size_t p, std::size_t d,
                                 char const* op, char const* axis) {
  std::size_t const ext = d * (k - 1) + 1;
  if (k == 0 || in + 2 * p < ext)
    throw shape_error(std::string(op) + ": the " + axis + " extent " + std::to_string(in) +
                      " (+ 2 x padding " + std::to_string(p) + ") is smaller than the window extent " +
                      std::to_string(ext));
  return (in + 2 * p - ext) / s + 1;
}

} // namespace detail

} // namespace lepton
