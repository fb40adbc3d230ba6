// Misuse: an expression evaluated with only the backend-neutral headers (core/, expr/): no backend's
// evaluators are included. This must be a compile error naming what to include, not a link error.
#include <lepton/core/tensor.hpp>
#include <lepton/expr/elementwise.hpp>

int main() {
  lepton::tensor<float, 4> a, b;
  lepton::tensor<float, 4> c = a + b;
  (void)c;
}
