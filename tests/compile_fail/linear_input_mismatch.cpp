// Misuse: linear<784, 256> fed a (batch, 100) input. The note names expected and actual: <784, 100>.
#include <lepton/lepton.hpp>

int main() {
  lepton::nn::linear<784, 256> fc;
  lepton::tensor<float, lepton::dyn, 100> x(2);
  auto y = fc(x);
  (void)y;
}
