// fit / evaluate on synthetic data: learning, determinism, logs, early stopping, error paths.
#include <catch2/catch.hpp>
#include <filesystem>
#include <fstream>
#include <lepton/lepton.hpp>
#include <random>
#include <sstream>
#include <support/util.hpp>

namespace lp = lepton;

namespace {
using X = lp::tensor<float, lp::dyn, 4>;
using Y = lp::tensor<std::int32_t, lp::dyn>;

/// Three Gaussian blobs in 4-D, seeded.
lp::data::dataset<X, Y> blobs(std::size_t n, std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::normal_distribution<float> noise(0.0f, 0.6f);
  X x(n);
  Y y(n);
  float const centers[3][4] = {{2, 0, 0, 1}, {-1, 2, 0, -1}, {0, -2, 2, 0}};
  for (std::size_t i = 0; i < n; ++i) {
    int c = int(i % 3);
    y(i) = c;
    for (std::size_t j = 0; j < 4; ++j) x(i, j) = centers[c][j] + noise(rng);
  }
  return {std::move(x), std::move(y)};
}

struct net {
  lp::nn::linear<4, 16> fc1;
  lp::nn::dropout drop{.p = 0.1, .seed = 3};
  lp::nn::linear<16, 3> fc2;
  auto operator()(auto const& x) const { return fc2(drop(lp::tanh(fc1(x)))); }
};

std::vector<float> flat_params(net& m) {
  std::vector<float> v;
  lp::nn::for_each_parameter(
      m, [&](std::string_view, auto& p) { v.insert(v.end(), p.value.flat().begin(), p.value.flat().end()); });
  return v;
}
} // namespace

TEST_CASE("fit learns separable data, evaluate agrees with the last epoch's validation", "[train]") {
  auto train = blobs(600, 1), val = blobs(300, 2);
  net m;
  lp::nn::init(m, lp::init::xavier_uniform{}, 5);
  lp::optim::adam opt{m, {.lr = 0.02}};
  std::ostringstream out;
  auto r = lp::train::fit(
      m, opt, lp::loss::cross_entropy, train, val,
      {.epochs = 8, .batch = 32, .seed = 9, .display = lp::train::progress::lines, .out = &out});
  REQUIRE(r.history.size() == 8);
  REQUIRE(r.history.back().val_accuracy > 0.95);
  REQUIRE(r.history.back().train_loss < r.history.front().train_loss);
  REQUIRE(out.str().find("epoch 8/8") != std::string::npos);
  auto ev = lp::train::evaluate(m, lp::loss::cross_entropy, val, 64);
  REQUIRE(ev.samples == 300);
  REQUIRE(ev.accuracy == Approx(r.history.back().val_accuracy));
  REQUIRE(ev.loss == Approx(r.history.back().val_loss).epsilon(1e-5));
  REQUIRE(m.drop.training); // evaluate restores training mode
}

TEST_CASE("same seed, same thread count: bit-identical parameters", "[train]") {
  auto train = blobs(300, 3);
  auto run = [&](std::size_t threads) {
    lp::set_num_threads(threads);
    net m;
    lp::nn::init(m, lp::init::kaiming_uniform{}, 17);
    lp::optim::sgd opt{m, {.lr = 0.05, .momentum = 0.9}};
    lp::train::fit(m, opt, lp::loss::cross_entropy, train,
                   {.epochs = 3, .batch = 16, .seed = 4, .display = lp::train::progress::none});
    return flat_params(m);
  };
  auto a = run(1), b = run(1), c = run(2);
  lp::set_num_threads(0);
  REQUIRE(a == b);
  REQUIRE(a == c); // this small net is deterministic at any thread count too
}

TEST_CASE("logs, early stopping and the epoch hook", "[train]") {
  auto train = blobs(150, 4);
  net m;
  lp::nn::init(m, lp::init::xavier_uniform{}, 1);
  lp::optim::sgd opt{m, {.lr = 0.0}}; // no learning: the loss never improves
  auto dir = std::filesystem::temp_directory_path() / "lepton_test_fit";
  std::filesystem::create_directories(dir);
  std::size_t hook_calls = 0;
  auto r = lp::train::fit(m, opt, lp::loss::cross_entropy, train,
                          {.epochs = 20,
                           .batch = 50,
                           .display = lp::train::progress::none,
                           .log_csv = (dir / "log.csv").string(),
                           .log_jsonl = (dir / "log.jsonl").string(),
                           .early_stop = lp::train::early_stopping{.patience = 2},
                           .on_epoch = [&](lp::train::epoch_stats const&) { return ++hook_calls < 100; }});
  REQUIRE(r.stopped_early);
  REQUIRE(r.history.size() == 3);
  REQUIRE(hook_calls == 3);
  std::ifstream csv(dir / "log.csv");
  std::string line;
  std::getline(csv, line);
  REQUIRE(line == "epoch,train_loss,train_accuracy,val_loss,val_accuracy,seconds,samples_per_s,lr");
  std::size_t rows = 0;
  while (std::getline(csv, line)) ++rows;
  REQUIRE(rows == 3);
  std::ifstream js(dir / "log.jsonl");
  std::getline(js, line);
  REQUIRE(line.rfind("{\"epoch\":1,\"train_loss\":", 0) == 0);
  REQUIRE(line.find("\"val_loss\":null") != std::string::npos);
  std::filesystem::remove_all(dir);
}

TEST_CASE("fit stops with a clear error on a non-finite loss and on bad options", "[train]") {
  auto train = blobs(60, 5);
  train.features()(7, 2) = std::numeric_limits<float>::quiet_NaN();
  net m;
  lp::nn::init(m, lp::init::xavier_uniform{}, 1);
  lp::optim::sgd opt{m, {.lr = 0.1}};
  REQUIRE_THROWS_WITH(lp::train::fit(m, opt, lp::loss::cross_entropy, train,
                                     {.batch = 60, .shuffle = false, .display = lp::train::progress::none}),
                      Catch::Contains("non-finite loss") && Catch::Contains("epoch 1, batch 1"));
  REQUIRE_THROWS_AS(lp::train::fit(m, opt, lp::loss::cross_entropy, train, {.batch = 0}), lp::value_error);
  REQUIRE_THROWS_AS(
      lp::train::fit(m, opt, lp::loss::cross_entropy, train, {.log_csv = "/nonexistent-dir/x.csv"}),
      lp::io_error);
}
