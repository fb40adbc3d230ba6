// Misuse: a conv2d layer fed flat (batch, 784) rows instead of NCHW images.
#include <lepton/lepton.hpp>
#include <lepton/nn/layers/conv2d.hpp>

int main() {
  lepton::nn::conv2d<1, 32, 3, 3> conv;
  lepton::tensor<float, lepton::dyn, 784> x(2);
  auto y = conv(x);
  (void)y;
}
