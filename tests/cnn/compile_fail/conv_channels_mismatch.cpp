// Misuse: conv2d<16, ...> fed the 32 channels of the previous conv2d<1, 32, ...>. The note names
// expected and actual: conv_input_channels<16, 32>.
#include <lepton/lepton.hpp>
#include <lepton/nn/layers/conv2d.hpp>

int main() {
  lepton::nn::conv2d<1, 32, 3, 3, 1, 1> conv1;
  lepton::nn::conv2d<16, 64, 3, 3, 1, 1> conv2;
  lepton::tensor<float, lepton::dyn, 1, 28, 28> x(2);
  auto y = conv2(conv1(x));
  (void)y;
}
