// Misuse (issue P12): a sequential that declares its input, 1 x 28 x 28, then an explicit
// conv2d<3, ...> that expects 3 channels. Resolving the sizes fails at that layer with its usual
// first error line, naming both numbers: the layer expects 3 channels, its input has 1.
#include <lepton/lepton.hpp>

namespace nn = lepton::nn;

int main() {
  nn::sequential<nn::input<1, 28, 28>, nn::conv2d<3, 8, 3, 3>, nn::relu, nn::flatten, nn::linear<10>> model;
  (void)model;
}
