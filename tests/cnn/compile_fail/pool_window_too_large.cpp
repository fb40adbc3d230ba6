// Misuse: a 4x4 max-pooling window on a 3x3 input. The note names input and window: <3, 4>.
#include <lepton/lepton.hpp>
#include <lepton/nn/layers/pooling.hpp>

int main() {
  lepton::nn::max_pool2d<4> pool;
  lepton::tensor<float, lepton::dyn, 8, 3, 3> x(2);
  auto y = pool(x);
  (void)y;
}
