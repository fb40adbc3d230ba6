#pragma once
/// @file init.hpp
/// @brief Seeded parameter initialisation: kaiming/xavier (uniform and normal), zeros, constants.
///
/// Deterministic on every platform: values come from `std::mt19937_64` through lepton's own
/// uniform and Box-Muller transforms (the standard distributions are implementation-defined).
/// **Fan-in and fan-out come from the layer**: a layer declares them for each weight with a member
/// `lepton_fans(declare)` calling `declare(param, fan_in, fan_out)` (linear: In, Out; conv2d: InC
/// and OutC times the kernel area), so a rank-2 table that is not an (in, out) matrix (an
/// embedding) is initialised by its own rule, not by its rank. A parameter no layer declares (a
/// raw `lepton::param` member of a user's struct) follows the convention of lepton's layouts: rank
/// 2 is (in, out), rank 3 or more is (out, in, kernel...). Rank-1 parameters nobody declares
/// (biases) are set to zero by every scheme except `constant`.

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include "../core/error.hpp"
#include "layer.hpp"
#include "model_view.hpp"

namespace lepton::init {

/// @brief Kaiming (He) uniform: U(-b, b), b = gain * sqrt(3 / fan_in), gain = sqrt(2) (ReLU).
struct kaiming_uniform {
  double gain = 1.4142135623730951;
};
/// @brief Kaiming (He) normal: N(0, gain^2 / fan_in).
struct kaiming_normal {
  double gain = 1.4142135623730951;
};
/// @brief Xavier (Glorot) uniform: U(-b, b), b = gain * sqrt(6 / (fan_in + fan_out)).
struct xavier_uniform {
  double gain = 1.0;
};
/// @brief Xavier (Glorot) normal: N(0, gain^2 * 2 / (fan_in + fan_out)).
struct xavier_normal {
  double gain = 1.0;
};
/// @brief All parameters zero.
struct zeros {};
/// @brief Every parameter (biases too) set to `value`.
struct constant {
  double value = 0.0;
};

namespace detail {
inline double uniform01(std::mt19937_64& rng) { return double(rng() >> 11) * 0x1.0p-53; }
inline double standard_normal(std::mt19937_64& rng) {
  double u1 = uniform01(rng), u2 = uniform01(rng);
  if (u1 < 1e-300) u1 = 1e-300;
  return std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2);
}
/// A weight's fans as a layer declared them (nn::model_view collects them).
struct declared_fans {
  double in, out;
};
/// The convention for a parameter no layer declares (see the file comment), from its shape.
inline void fans(std::vector<std::size_t> const& d, double& fan_in, double& fan_out) {
  if (d.size() == 2) {
    fan_in = double(d[0]);
    fan_out = double(d[1]);
  } else if (d.size() >= 3) {
    double receptive = 1;
    for (std::size_t i = 2; i < d.size(); ++i) receptive *= double(d[i]);
    fan_in = double(d[1]) * receptive;
    fan_out = double(d[0]) * receptive;
  } else {
    double n = 1;
    for (auto x : d) n *= double(x);
    fan_in = fan_out = n;
  }
}

/// Fills n values of one tensor of shape `shape` with a scheme (the whole rule set of `apply`).
template <class Scheme, class T> void fill(Scheme const& s, T* v, std::vector<std::size_t> const& shape,
                                           std::size_t n, std::mt19937_64& rng,
                                           declared_fans const* declared) {
  if constexpr (std::is_same_v<Scheme, constant>) {
    for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<T>(s.value);
    return;
  } else {
    if ((shape.size() < 2 && !declared) || std::is_same_v<Scheme, zeros>) {
      for (std::size_t i = 0; i < n; ++i) v[i] = T(0);
      return;
    }
    double fi, fo;
    if (declared) {
      fi = declared->in;
      fo = declared->out;
    } else {
      fans(shape, fi, fo);
    }
    if (!(fi > 0) || !(fo > 0))
      throw value_error("init: a parameter of " + std::to_string(n) + " elements has fan-in " +
                        std::to_string(fi) + " and fan-out " + std::to_string(fo) + "; both must be > 0");
    if constexpr (std::is_same_v<Scheme, kaiming_uniform> || std::is_same_v<Scheme, xavier_uniform>) {
      double b = std::is_same_v<Scheme, kaiming_uniform> ? s.gain * std::sqrt(3.0 / fi)
                                                         : s.gain * std::sqrt(6.0 / (fi + fo));
      for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<T>((2 * uniform01(rng) - 1) * b);
    } else if constexpr (std::is_same_v<Scheme, kaiming_normal> || std::is_same_v<Scheme, xavier_normal>) {
      double sd = std::is_same_v<Scheme, kaiming_normal> ? s.gain / std::sqrt(fi)
                                                         : s.gain * std::sqrt(2.0 / (fi + fo));
      for (std::size_t i = 0; i < n; ++i) v[i] = static_cast<T>(standard_normal(rng) * sd);
    }
  }
}
} // namespace detail

/// @brief Initialises one parameter with a scheme and an RNG. `declared` (optional) holds the
///        fan-in and fan-out its layer declared; without it, the layout convention of the file
///        comment applies.
template <class Scheme, class P>
  requires parameter<P>
void apply(Scheme const& s, P& p, std::mt19937_64& rng, detail::declared_fans const* declared = nullptr) {
  auto sh = p.value.shape();
  detail::fill(s, p.value.data(), std::vector<std::size_t>(sh.begin(), sh.end()), p.value.size(), rng,
               declared);
}

/// @brief Initialises one parameter of a model_view with a scheme and an RNG, using the fans its
///        layer declared (else the layout convention). Throws value_error for a parameter that is
///        not float or double.
template <class Scheme> void apply(Scheme const& s, nn::model_tensor const& p, std::mt19937_64& rng) {
  detail::declared_fans const d{p.fan_in, p.fan_out};
  detail::declared_fans const* declared = p.has_fans ? &d : nullptr;
  if (p.type == dtype::f32)
    detail::fill(s, p.values<float>(), p.shape, p.size, rng, declared);
  else if (p.type == dtype::f64)
    detail::fill(s, p.values<double>(), p.shape, p.size, rng, declared);
  else
    throw value_error("init: parameter '" + p.name + "' has element type " + std::string(to_string(p.type)) +
                      "; only F32 and F64 parameters are initialised");
}

} // namespace lepton::init

namespace lepton::nn {

/// @brief Initialises every parameter of `model` with `scheme`, deterministically from `seed`.
///
/// Each parameter draws from its own generator seeded by (seed, its position), so adding a layer
/// at the end does not change the values of the others. Layers that define their own initial
/// state (a member `lepton_reset_parameters()`, e.g. batch_norm: gamma 1, beta 0, fresh running
/// statistics) are then reset to it instead of keeping the scheme's values.
/// **Example**: `lepton::nn::init(model, lepton::init::kaiming_uniform{}, 42);`
template <class Model, class Scheme> void init(Model& model, Scheme const& scheme, std::uint64_t seed) {
  model_view const view(model);
  std::uint64_t index = 0;
  for (auto const& p : view.parameters()) {
    std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + (++index) * 0xBF58476D1CE4E5B9ull);
    init::apply(scheme, p, rng);
  }
  for_each_object(model, [](auto& obj) {
    if constexpr (requires { obj.lepton_reset_parameters(); }) obj.lepton_reset_parameters();
  });
}

} // namespace lepton::nn
