// Misuse: a 5x5 kernel on a 4x4 input without padding. The note names padded input and kernel: <4, 5>.
#include <lepton/lepton.hpp>
#include <lepton/nn/layers/conv2d.hpp>

int main() {
  lepton::nn::conv2d<8, 16, 5, 5> conv;
  lepton::tensor<float, lepton::dyn, 8, 4, 4> x(2);
  auto y = conv(x);
  (void)y;
}
