#pragma once
/// @file gradcheck.hpp
/// @brief `lepton::gradcheck`: compares the gradients lepton derives with central finite differences.

#include <cmath>
#include <sstream>
#include <string>
#include <tuple>

#include "grad.hpp"

namespace lepton {

/// @brief Tolerances of gradcheck: an element passes when |analytic - numeric| <= atol + rtol |numeric|.
struct gradcheck_options {
  double eps = 1e-6;  ///< finite-difference step
  double atol = 1e-5; ///< absolute tolerance
  double rtol = 1e-3; ///< relative tolerance
};

/// @brief The outcome of gradcheck; converts to bool. `message` names the first failing element.
struct gradcheck_result {
  bool ok = true;
  double max_abs_error = 0;
  double max_rel_error = 0;
  std::size_t checked = 0; ///< number of elements compared
  std::string message;
  explicit operator bool() const noexcept { return ok; }
};

namespace detail {
template <class W> auto& gc_values(W& w) {
  if constexpr (parameter<W>)
    return w.value;
  else
    return w;
}
} // namespace detail

/// @brief Checks the gradient of the scalar expression returned by `f()` with respect to each of
///        `inputs` (float64 tensors or parameters that `f` reads) against central differences.
///
/// `f` is called again for every perturbed element, so it must build its expression from the
/// inputs by reference. Use double precision: float32 differences are too noisy for the default
/// tolerances. **Example**:
/// ```
/// lepton::tensor<double, 3, 4> x = ...;  lepton::tensor<double, 4> b = ...;
/// auto r = lepton::gradcheck([&] { return lepton::sum(lepton::tanh(x + b)); }, x, b);
/// if (!r) std::cerr << r.message;
/// ```
template <class F, class... W> gradcheck_result gradcheck(gradcheck_options const& opt, F&& f, W&... inputs) {
  gradcheck_result res;
  auto analytic = grad(f(), inputs...);
  std::size_t input_index = 0;
  auto check_one = [&](auto& w, auto const& g) {
    auto& t = detail::gc_values(w);
    using T = typename std::remove_cvref_t<decltype(t)>::value_type;
    for (std::size_t i = 0; i < t.size(); ++i) {
      T const orig = t.data()[i];
      t.data()[i] = orig + static_cast<T>(opt.eps);
      double const up = static_cast<double>(value(f()));
      t.data()[i] = orig - static_cast<T>(opt.eps);
      double const down = static_cast<double>(value(f()));
      t.data()[i] = orig;
      double const num = (up - down) / (2 * opt.eps);
      double const ana = static_cast<double>(g.data()[i]);
      double const err = std::abs(ana - num);
      double const rel = err / std::max(std::abs(num), 1e-300);
      ++res.checked;
      res.max_abs_error = std::max(res.max_abs_error, err);
      if (std::abs(num) > opt.atol) res.max_rel_error = std::max(res.max_rel_error, rel);
      if (!(err <= opt.atol + opt.rtol * std::abs(num)) && res.ok) {
        res.ok = false;
        std::ostringstream os;
        os << "lepton: gradcheck: input " << input_index << ", element " << i << ": analytic " << ana
           << ", numeric " << num << " (abs error " << err << ")";
        res.message = os.str();
      }
    }
    ++input_index;
  };
  std::apply([&](auto const&... g) { (check_one(inputs, g), ...); }, analytic);
  return res;
}

/// @brief gradcheck with default tolerances (eps 1e-6, atol 1e-5, rtol 1e-3).
template <class F, class... W>
  requires(!std::is_same_v<std::remove_cvref_t<F>, gradcheck_options>)
gradcheck_result gradcheck(F&& f, W&... inputs) {
  return gradcheck(gradcheck_options{}, std::forward<F>(f), inputs...);
}

} // namespace lepton
