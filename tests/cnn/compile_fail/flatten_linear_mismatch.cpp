// Misuse: the spatial sizes do not chain: a 3x3 conv without padding shrinks 7x7 to 5x5, so
// flatten gives 64 * 5 * 5 = 1600 features, not the 64 * 7 * 7 = 3136 the linear layer expects.
#include <lepton/lepton.hpp>
#include <lepton/nn/layers/conv2d.hpp>

int main() {
  lepton::nn::conv2d<32, 64, 3, 3> conv; // no padding
  lepton::nn::linear<64 * 7 * 7, 128> fc;
  lepton::tensor<float, lepton::dyn, 32, 7, 7> x(2);
  auto y = fc(lepton::flatten(conv(x)));
  (void)y;
}
