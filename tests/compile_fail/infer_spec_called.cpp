// Misuse (issue P12): a layer spec with a size to infer, linear<10>, called on its own: it holds no
// weights, only a sequential that starts with nn::input<...> resolves it.
#include <lepton/lepton.hpp>

int main() {
  lepton::nn::linear<10> fc;
  lepton::tensor<float, lepton::dyn, 5> x(2);
  auto y = fc(x);
  (void)y;
}
