// Misuse (issue P12): a model whose sizes were inferred for 1 x 28 x 28 inputs, called on
// 1 x 32 x 32 ones. The first error line names both shapes (not a later layer's inferred width).
#include <lepton/lepton.hpp>

namespace nn = lepton::nn;

int main() {
  nn::sequential<nn::input<1, 28, 28>, nn::conv2d<8, 3>, nn::relu, nn::flatten, nn::linear<10>> model;
  lepton::tensor<float, lepton::dyn, 1, 32, 32> x(2);
  auto y = model(x);
  (void)y;
}
