// Optimizers against float64 re-implementations of their published update rules; clipping;
// frozen parameters; schedulers.
#include <catch2/catch.hpp>
#include <lepton/lepton.hpp>
#include <support/util.hpp>

namespace lp = lepton;

namespace {
struct two {
  lp::param<double, 3, 2> w;
  lp::param<double, 5> b;
};
void set_grads(two& m, int step) {
  for (std::size_t i = 0; i < m.w.value.size(); ++i)
    m.w.grad.data()[i] = std::sin(double(i + 1) * (step + 1));
  for (std::size_t i = 0; i < m.b.value.size(); ++i)
    m.b.grad.data()[i] = std::cos(double(i + 2) * (step + 3));
}
std::vector<double*> values(two& m) {
  std::vector<double*> v;
  for (auto& x : m.w.value.flat()) v.push_back(&x);
  for (auto& x : m.b.value.flat()) v.push_back(&x);
  return v;
}
std::vector<double> grads(two& m) {
  std::vector<double> g(m.w.grad.flat().begin(), m.w.grad.flat().end());
  g.insert(g.end(), m.b.grad.flat().begin(), m.b.grad.flat().end());
  return g;
}
void init(two& m) {
  lepton_test::fill_uniform(m.w.value, -1, 1, 1);
  lepton_test::fill_uniform(m.b.value, -1, 1, 2);
}
} // namespace

TEST_CASE("sgd with momentum, nesterov and weight decay matches the reference", "[optim]") {
  for (bool nesterov : {false, true}) {
    two m;
    init(m);
    lp::optim::sgd<double> opt{m, {.lr = 0.1, .momentum = 0.9, .weight_decay = 0.01, .nesterov = nesterov}};
    auto p = values(m);
    std::vector<double> ref(p.size()), vel(p.size(), 0);
    for (std::size_t i = 0; i < p.size(); ++i) ref[i] = *p[i];
    for (int step = 0; step < 5; ++step) {
      set_grads(m, step);
      auto g = grads(m);
      opt.step();
      for (std::size_t i = 0; i < p.size(); ++i) {
        double gi = g[i] + 0.01 * ref[i];
        vel[i] = step == 0 ? gi : 0.9 * vel[i] + gi;
        ref[i] -= 0.1 * (nesterov ? gi + 0.9 * vel[i] : vel[i]);
        REQUIRE(*p[i] == Approx(ref[i]).epsilon(1e-12));
      }
    }
  }
}

TEST_CASE("adam and adamw match the reference", "[optim]") {
  for (bool decoupled : {false, true}) {
    two m;
    init(m);
    lp::optim::adam_options o{.lr = 0.01, .beta1 = 0.8, .beta2 = 0.95, .eps = 1e-7, .weight_decay = 0.1};
    auto p = values(m);
    // Direct reference loop (kept simple and explicit):
    std::vector<double> r2(p.size()), m2(p.size(), 0), v2(p.size(), 0);
    for (std::size_t i = 0; i < p.size(); ++i) r2[i] = *p[i];
    auto check = [&](auto& opt) {
      for (int step = 1; step <= 6; ++step) {
        set_grads(m, step);
        auto g = grads(m);
        opt.step();
        for (std::size_t i = 0; i < p.size(); ++i) {
          double gi = g[i];
          if (decoupled)
            r2[i] *= 1 - 0.01 * 0.1;
          else
            gi += 0.1 * r2[i];
          m2[i] = 0.8 * m2[i] + 0.2 * gi;
          v2[i] = 0.95 * v2[i] + 0.05 * gi * gi;
          double bc1 = 1 - std::pow(0.8, step), bc2 = 1 - std::pow(0.95, step);
          r2[i] -= 0.01 / bc1 * m2[i] / (std::sqrt(v2[i]) / std::sqrt(bc2) + 1e-7);
          REQUIRE(*p[i] == Approx(r2[i]).epsilon(1e-12));
        }
      }
    };
    if (decoupled) {
      lp::optim::adamw<double> opt{m, o};
      check(opt);
    } else {
      lp::optim::adam<double> opt{m, o};
      check(opt);
    }
  }
}

TEST_CASE("rmsprop matches the reference", "[optim]") {
  two m;
  init(m);
  lp::optim::rmsprop<double> opt{
      m, {.lr = 0.01, .alpha = 0.9, .eps = 1e-8, .weight_decay = 0.0, .momentum = 0.5}};
  auto p = values(m);
  std::vector<double> r(p.size()), s(p.size(), 0), b(p.size(), 0);
  for (std::size_t i = 0; i < p.size(); ++i) r[i] = *p[i];
  for (int step = 0; step < 5; ++step) {
    set_grads(m, step);
    auto g = grads(m);
    opt.step();
    for (std::size_t i = 0; i < p.size(); ++i) {
      s[i] = 0.9 * s[i] + 0.1 * g[i] * g[i];
      b[i] = 0.5 * b[i] + g[i] / (std::sqrt(s[i]) + 1e-8);
      r[i] -= 0.01 * b[i];
      REQUIRE(*p[i] == Approx(r[i]).epsilon(1e-12));
    }
  }
}

TEST_CASE("global-norm clipping, frozen parameters and option validation", "[optim]") {
  two m;
  init(m);
  m.b.frozen = true;
  auto b0 = m.b.value;
  lp::optim::sgd<double> opt{m, {.lr = 1.0, .clip_grad_norm = 0.5}};
  set_grads(m, 0);
  auto g = grads(m);
  double norm = 0;
  for (std::size_t i = 0; i < 6; ++i) norm += g[i] * g[i]; // frozen b does not count
  norm = std::sqrt(norm);
  auto w0 = m.w.value;
  opt.step();
  REQUIRE(opt.last_grad_norm() == Approx(norm));
  double moved = 0;
  for (std::size_t i = 0; i < 6; ++i) moved += std::pow(w0.data()[i] - m.w.value.data()[i], 2);
  REQUIRE(std::sqrt(moved) == Approx(0.5).epsilon(1e-5));
  for (std::size_t i = 0; i < 5; ++i) REQUIRE(m.b.value(i) == b0(i));
  REQUIRE_THROWS_AS((lp::optim::adam<double>{m, {.lr = -1}}), lp::value_error);
  REQUIRE_THROWS_AS((lp::optim::adam<double>{m, {.beta1 = 1.0}}), lp::value_error);
  REQUIRE_THROWS_AS((lp::optim::sgd<double>{m, {.nesterov = true}}), lp::value_error);
}

TEST_CASE("learning-rate schedulers", "[optim]") {
  two m;
  lp::optim::sgd<double> opt{m, {.lr = 1.0}};
  lp::optim::step_lr s1{opt, 2, 0.5};
  std::vector<double> lrs;
  for (int i = 0; i < 5; ++i) {
    s1.step();
    lrs.push_back(opt.lr());
  }
  REQUIRE(lrs == std::vector<double>{1.0, 0.5, 0.5, 0.25, 0.25});
  opt.set_lr(1.0);
  lp::optim::cosine_lr s2{opt, 4, 0.0};
  s2.step();
  REQUIRE(opt.lr() == Approx(0.5 * (1 + std::cos(3.141592653589793 / 4))));
  for (int i = 0; i < 3; ++i) s2.step();
  REQUIRE(opt.lr() == Approx(0.0).margin(1e-15));
  opt.set_lr(1.0);
  lp::optim::exponential_lr s3{opt, 0.9};
  s3.step();
  s3.step();
  REQUIRE(opt.lr() == Approx(0.81));
  opt.set_lr(1.0);
  lp::optim::reduce_on_plateau s4{opt, 0.5, 1};
  s4.step(1.0);
  s4.step(1.0);
  REQUIRE(opt.lr() == 1.0);
  s4.step(1.0);
  REQUIRE(opt.lr() == 0.5);
}
