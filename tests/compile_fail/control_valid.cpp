// Positive control for the compile-fail harness: correct use of lepton, must compile.
#include <lepton/lepton.hpp>

int main() {
  lepton::tensor<float, 1, 1, 1, 1, 1, 1> t; // rank 6 == lepton::max_rank: allowed
  lepton::param<float, 3> p;
  return static_cast<int>(t.size() + p.value.size()) - 4;
}
