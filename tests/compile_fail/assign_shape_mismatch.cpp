// Misuse: storing a (batch, 10) expression into a (batch, 12) tensor.
#include <lepton/lepton.hpp>

int main() {
  lepton::tensor<float, lepton::dyn, 10> x(2);
  lepton::tensor<float, lepton::dyn, 12> y = lepton::relu(x);
  (void)y;
}
