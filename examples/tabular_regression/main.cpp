// Regression on tabular data: a small MLP trained with the mean squared error on the diabetes data
// set (examples/data/diabetes.csv; 442 patients, 10 variables, target: disease progression).
//
//   tabular_regression [--csv FILE] [--epochs N] [--batch B] [--seed S] [--lr LR]
//
// Prints one line per epoch, then a JSON line with the held-out RMSE and R^2.
#include <lepton/lepton.hpp>

#include "../common/args.hpp"

#include <cmath>
#include <cstdio>
#include <iostream>
#include <string>

namespace lp = lepton;

struct regressor {
  lp::nn::linear<10, 16> fc1;
  lp::nn::linear<16, 1> fc2;
  auto operator()(auto const& x) const { return lp::reshape<lp::dyn>(fc2(lp::tanh(fc1(x)))); }
};

int main(int argc, char** argv) {
  std::string csv = LEPTON_EXAMPLE_DATA_DIR "/diabetes.csv";
  std::size_t epochs = 60, batch = 32;
  std::uint64_t seed = 3;
  double lr = 3e-3;
  lepton_examples::arg_parser args(
      "tabular_regression", "Trains a small MLP regressor on the diabetes data set (mean squared error).");
  args.add("--csv", csv, "FILE", "the data set");
  args.add("--epochs", epochs, "N", "training epochs", 1);
  args.add("--batch", batch, "B", "batch size", 1);
  args.add("--seed", seed, "S", "seed of the split, the initial weights and the batch order");
  args.add("--lr", lr, "LR", "AdamW learning rate");
  if (auto rc = args.parse(argc, argv)) return *rc;
  try {
    auto table = lp::data::read_csv(csv, {.target_name = "progression"});
    // Standardise the target too (the loss is then in units of its variance); undo it for the RMSE.
    double mean = 0, sd = 0;
    for (float v : table.target.flat()) mean += v;
    mean /= double(table.target.size());
    for (float v : table.target.flat()) sd += (v - mean) * (v - mean);
    sd = std::sqrt(sd / double(table.target.size()));
    for (float& v : table.target.flat()) v = float((v - mean) / sd);
    lp::data::dataset all(lp::data::to_static<10>(table.features), std::move(table.target));
    auto [train, test] = all.split(0.8, seed);
    auto stats = lp::data::compute_feature_stats(train.features());
    lp::data::standardize(train.features(), stats);
    lp::data::standardize(test.features(), stats);

    regressor model;
    lp::nn::init(model, lp::init::xavier_uniform{}, seed);
    lp::optim::adamw opt{model, {.lr = lr, .weight_decay = 0.05}};
    lp::optim::cosine_lr sched{opt, epochs};
    lp::train::fit(model, opt, lp::loss::mse, train, test,
                   {.epochs = epochs,
                    .batch = batch,
                    .seed = seed,
                    .display = lp::train::progress::none,
                    .on_epoch = [&](lp::train::epoch_stats const& e) {
                      sched.step();
                      if (e.epoch % 10 == 0)
                        std::printf("epoch %zu  train_mse %.4f  test_mse %.4f\n", e.epoch, e.train_loss,
                                    e.val_loss);
                      return true;
                    }});
    lp::tensor<float, lp::dyn> pred = model(test.features());
    double se = 0, tot = 0, tmean = 0;
    for (float v : test.targets().flat()) tmean += v;
    tmean /= double(test.size());
    for (std::size_t i = 0; i < test.size(); ++i) {
      se += std::pow(double(pred(i)) - test.targets()(i), 2);
      tot += std::pow(double(test.targets()(i)) - tmean, 2);
    }
    std::printf(
        "{\"test_rmse\": %.2f, \"test_r2\": %.4f, \"test_samples\": %zu, \"epochs\": %zu, \"batch\": %zu}\n",
        std::sqrt(se / double(test.size())) * sd, 1 - se / tot, test.size(), epochs, batch);
  } catch (std::exception const& e) { // a lepton::error (its message names the file), or bad_alloc
    std::cerr << "tabular_regression: " << e.what() << "\n";
    return 1;
  }
}
