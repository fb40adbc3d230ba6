// Misuse: summing over axis 2 of a rank-2 tensor.
#include <lepton/lepton.hpp>

int main() {
  lepton::tensor<float, lepton::dyn, 3> a(2);
  auto s = lepton::sum(a, lepton::axis<2>);
  (void)s;
}
