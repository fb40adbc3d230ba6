// Misuse: a tensor of rank 7 (lepton::max_rank is 6).
#include <lepton/core/tensor.hpp>

int main() {
  lepton::tensor<float, 1, 1, 1, 1, 1, 1, 1> t;
  (void)t;
}
