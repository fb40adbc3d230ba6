// Misuse: adding a float tensor and a double tensor.
#include <lepton/lepton.hpp>

int main() {
  lepton::tensor<float, 3> a;
  lepton::tensor<double, 3> b;
  auto y = a + b;
  (void)y;
}
