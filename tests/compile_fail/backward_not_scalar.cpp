// Misuse: backward() of a non-scalar expression (the loss must be reduced first).
#include <lepton/lepton.hpp>

int main() {
  lepton::param<float, 3, 2> w;
  lepton::tensor<float, lepton::dyn, 3> x(2);
  lepton::backward(lepton::matmul(x, w));
}
