// Misuse (issue P12): a model whose second layer's width is wrong, linear<784, 256> then
// linear<255, 10>. The first error line the user reads names both numbers: the layer expects 255
// features, its input has 256.
#include <lepton/lepton.hpp>

struct model {
  lepton::nn::linear<784, 256> fc1;
  lepton::nn::linear<255, 10> fc2;
  auto operator()(auto const& x) const { return fc2(lepton::relu(fc1(x))); }
};

int main() {
  model m;
  lepton::tensor<float, lepton::dyn, 784> x(2);
  auto y = m(x);
  (void)y;
}
