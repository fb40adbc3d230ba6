// Misuse: a trainable parameter with a run-time (dyn) dimension.
#include <lepton/core/param.hpp>

int main() {
  lepton::param<float, lepton::dyn, 3> p;
  (void)p;
}
