// Optimizers against float64 re-implementations of their published update rules; clipping;
// frozen parameters; schedulers.
#include <cfloat>
#include <cstring>

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

namespace {
// A float model large enough for the threaded update (more than 65536 elements, several blocks,
// sizes that are not multiples of the block or of the SIMD width).
struct wide {
  lp::param<float, 70001> w;
  lp::param<float, 3, 37> b;
};
void init(wide& m) {
  lepton_test::fill_uniform(m.w.value, -1, 1, 11);
  lepton_test::fill_uniform(m.b.value, -1, 1, 12);
}
void set_grads(wide& m, int step) {
  float* g = m.w.grad.data();
  for (std::size_t i = 0; i < m.w.value.size(); ++i) g[i] = float(std::sin(0.37 * double(i) + step));
  g = m.b.grad.data();
  for (std::size_t i = 0; i < m.b.value.size(); ++i) g[i] = float(std::cos(0.11 * double(i) - step));
}
std::vector<float> flat_values(wide& m) {
  std::vector<float> v(m.w.value.data(), m.w.value.data() + m.w.value.size());
  v.insert(v.end(), m.b.value.data(), m.b.value.data() + m.b.value.size());
  return v;
}
std::vector<float> flat_grads(wide& m) {
  std::vector<float> v(m.w.grad.data(), m.w.grad.data() + m.w.grad.size());
  v.insert(v.end(), m.b.grad.data(), m.b.grad.data() + m.b.grad.size());
  return v;
}

// Float64 re-implementations of the update rules, fed the same float gradients.
struct ref_state {
  std::vector<double> p, s1, s2;
  explicit ref_state(std::vector<float> const& v) : p(v.begin(), v.end()), s1(v.size(), 0), s2(v.size(), 0) {}
};
void ref_adam(ref_state& r, std::vector<float> const& g, int t, bool decoupled, double lr, double wd) {
  double const b1 = 0.9, b2 = 0.999, eps = 1e-8;
  for (std::size_t i = 0; i < r.p.size(); ++i) {
    double gi = g[i];
    if (decoupled)
      r.p[i] *= 1 - lr * wd;
    else
      gi += wd * r.p[i];
    r.s1[i] = b1 * r.s1[i] + (1 - b1) * gi;
    r.s2[i] = b2 * r.s2[i] + (1 - b2) * gi * gi;
    double const mhat = r.s1[i] / (1 - std::pow(b1, t)), vhat = r.s2[i] / (1 - std::pow(b2, t));
    r.p[i] -= lr * mhat / (std::sqrt(vhat) + eps);
  }
}
void ref_sgd(ref_state& r, std::vector<float> const& g, int t) {
  double const lr = 0.05, mu = 0.9, wd = 1e-3;
  for (std::size_t i = 0; i < r.p.size(); ++i) {
    double gi = g[i] + wd * r.p[i];
    r.s1[i] = t == 1 ? gi : mu * r.s1[i] + gi;
    r.p[i] -= lr * (gi + mu * r.s1[i]); // nesterov
  }
}
void ref_rmsprop(ref_state& r, std::vector<float> const& g) {
  double const lr = 1e-3, a = 0.99, eps = 1e-8, mu = 0.5;
  for (std::size_t i = 0; i < r.p.size(); ++i) {
    double const gi = g[i];
    r.s1[i] = a * r.s1[i] + (1 - a) * gi * gi;
    r.s2[i] = mu * r.s2[i] + gi / (std::sqrt(r.s1[i]) + eps);
    r.p[i] -= lr * r.s2[i];
  }
}

// Runs `steps` steps of the optimizer `make(model)` builds, at `threads` threads; returns the values.
template <class Make> std::vector<float> run_steps(Make make, std::size_t threads, int steps) {
  lp::set_num_threads(threads, lp::oversubscribe::yes);
  wide m;
  init(m);
  auto opt = make(m);
  for (int t = 1; t <= steps; ++t) {
    set_grads(m, t);
    opt.step();
  }
  return flat_values(m);
}

struct thread_count_guard {
  std::size_t saved = lp::num_threads();
  ~thread_count_guard() { lp::set_num_threads(saved, lp::oversubscribe::yes); }
};
} // namespace

TEST_CASE("float optimizers match a float64 reference within float32 rounding", "[optim]") {
  int const steps = 5;
  // |float - float64| per element: a few float32 roundings of the value per step, relative to the
  // value's magnitude (the float step's own rounding errors are far smaller than the value's ulp).
  auto check = [&](std::vector<float> const& got, ref_state const& r) {
    std::size_t bad = 0;
    for (std::size_t i = 0; i < got.size(); ++i) {
      double const tol = 4.0 * steps * FLT_EPSILON * std::max(1.0, std::abs(r.p[i]));
      if (!(std::abs(double(got[i]) - r.p[i]) <= tol)) ++bad;
    }
    REQUIRE(bad == 0);
  };
  for (bool decoupled : {false, true}) {
    wide m;
    init(m);
    ref_state r(flat_values(m));
    double const lr = 1e-2, wd = decoupled ? 0.05 : 1e-3;
    auto run = [&](auto& opt) {
      for (int t = 1; t <= steps; ++t) {
        set_grads(m, t);
        auto g = flat_grads(m);
        opt.step();
        ref_adam(r, g, t, decoupled, lr, wd);
        check(flat_values(m), r);
      }
    };
    if (decoupled) {
      lp::optim::adamw opt{m, {.lr = lr, .weight_decay = wd}};
      run(opt);
    } else {
      lp::optim::adam opt{m, {.lr = lr, .weight_decay = wd}};
      run(opt);
    }
  }
  {
    wide m;
    init(m);
    ref_state r(flat_values(m));
    lp::optim::sgd opt{m, {.lr = 0.05, .momentum = 0.9, .weight_decay = 1e-3, .nesterov = true}};
    for (int t = 1; t <= steps; ++t) {
      set_grads(m, t);
      auto g = flat_grads(m);
      opt.step();
      ref_sgd(r, g, t);
      check(flat_values(m), r);
    }
  }
  {
    wide m;
    init(m);
    ref_state r(flat_values(m));
    lp::optim::rmsprop opt{m, {.lr = 1e-3, .alpha = 0.99, .eps = 1e-8, .momentum = 0.5}};
    for (int t = 1; t <= steps; ++t) {
      set_grads(m, t);
      auto g = flat_grads(m);
      opt.step();
      ref_rmsprop(r, g);
      check(flat_values(m), r);
    }
  }
}

TEST_CASE("an optimizer step is bit-identical at 1 and 2 threads", "[optim]") {
  thread_count_guard guard;
  auto same = [](auto make) {
    auto const one = run_steps(make, 1, 4);
    auto const two = run_steps(make, 2, 4);
    REQUIRE(one.size() == two.size());
    REQUIRE(std::memcmp(one.data(), two.data(), one.size() * sizeof(float)) == 0);
  };
  // clipping on: the gradient norm is a reduction, summed per block in a fixed order
  same([](wide& m) { return lp::optim::adam{m, {.lr = 1e-2, .clip_grad_norm = 10.0}}; });
  same([](wide& m) { return lp::optim::adamw{m, {.lr = 1e-2}}; });
  same([](wide& m) { return lp::optim::sgd{m, {.lr = 0.05, .momentum = 0.9, .clip_grad_norm = 50.0}}; });
  same([](wide& m) { return lp::optim::rmsprop{m, {.lr = 1e-3, .momentum = 0.5, .clip_grad_norm = 5.0}}; });
}
