// Misuse: iterating the parameters of a temporary model_view (the list would dangle).
#include <lepton/nn/layers/linear.hpp>
#include <lepton/nn/model_view.hpp>

int main() {
  lepton::nn::linear<3, 2> fc;
  std::size_t n = 0;
  for (auto const& p : lepton::nn::model_view(fc).parameters()) n += p.size;
  return int(n);
}
