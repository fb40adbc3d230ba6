// Misuse: batch_norm<32> after a conv2d with 64 output channels. The note names <32, 64>.
#include <lepton/lepton.hpp>
#include <lepton/nn/layers/batch_norm.hpp>
#include <lepton/nn/layers/conv2d.hpp>

int main() {
  lepton::nn::conv2d<1, 64, 3, 3, 1, 1> conv;
  lepton::nn::batch_norm<32> bn;
  lepton::tensor<float, lepton::dyn, 1, 28, 28> x(2);
  auto y = bn(conv(x));
  (void)y;
}
