// Misuse: (batch, 784) x (783, 256): the inner dimensions differ. The note names both: <784, 783>.
#include <lepton/lepton.hpp>

int main() {
  lepton::tensor<float, lepton::dyn, 784> x(4);
  lepton::tensor<float, 783, 256> w;
  auto y = lepton::matmul(x, w);
  (void)y;
}
