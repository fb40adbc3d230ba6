// Misuse: (batch, 10) + (9): trailing dimensions 10 and 9 neither match nor are 1.
#include <lepton/lepton.hpp>

int main() {
  lepton::tensor<float, lepton::dyn, 10> x(4);
  lepton::tensor<float, 9> b;
  auto y = x + b;
  (void)y;
}
