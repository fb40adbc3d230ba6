// Binary classification on tabular data: a small MLP with a sigmoid + binary cross-entropy loss
// (fused, from logits) on the Breast Cancer Wisconsin data set (examples/data/breast_cancer.csv).
//
//   tabular_binary [--csv FILE] [--epochs N] [--batch B] [--seed S] [--lr LR]
//
// Prints one line per epoch, then a JSON line with the held-out accuracy.
#include <lepton/lepton.hpp>

#include "../common/args.hpp"

#include <cstdio>
#include <iostream>
#include <string>

namespace lp = lepton;

struct classifier {
  lp::nn::linear<30, 32> fc1;
  lp::nn::linear<32, 1> fc2;
  // One logit per sample, as a (batch) vector to match the (batch) targets.
  auto operator()(auto const& x) const { return lp::reshape<lp::dyn>(fc2(lp::relu(fc1(x)))); }
};

int main(int argc, char** argv) {
  std::string csv = LEPTON_EXAMPLE_DATA_DIR "/breast_cancer.csv";
  std::size_t epochs = 30, batch = 32;
  std::uint64_t seed = 7;
  double lr = 3e-3;
  lepton_examples::arg_parser args("tabular_binary", "Trains a small MLP classifier on the Breast Cancer "
                                                     "Wisconsin data set (sigmoid + binary cross-entropy).");
  args.add("--csv", csv, "FILE", "the data set");
  args.add("--epochs", epochs, "N", "training epochs", 1);
  args.add("--batch", batch, "B", "batch size", 1);
  args.add("--seed", seed, "S", "seed of the split, the initial weights and the batch order");
  args.add("--lr", lr, "LR", "AdamW learning rate");
  if (auto rc = args.parse(argc, argv)) return *rc;
  try {
    auto table = lp::data::read_csv(csv, {.target_name = "benign"});
    lp::data::dataset all(lp::data::to_static<30>(table.features), std::move(table.target));
    auto [train, test] = all.split(0.8, seed);
    auto stats = lp::data::compute_feature_stats(train.features()); // standardise with training statistics
    lp::data::standardize(train.features(), stats);
    lp::data::standardize(test.features(), stats);

    classifier model;
    lp::nn::init(model, lp::init::kaiming_uniform{}, seed);
    lp::optim::adamw opt{model, {.lr = lr, .weight_decay = 1e-3}};
    lp::train::fit(model, opt, lp::loss::bce_with_logits, train, test,
                   {.epochs = epochs, .batch = batch, .seed = seed, .display = lp::train::progress::lines});

    // Held-out accuracy: predict benign when the logit is positive.
    lp::tensor<float, lp::dyn> logits = model(test.features());
    std::size_t correct = 0;
    for (std::size_t i = 0; i < test.size(); ++i) correct += (logits(i) > 0) == (test.targets()(i) > 0.5f);
    std::printf("{\"test_accuracy\": %.4f, \"test_samples\": %zu, \"epochs\": %zu, \"batch\": %zu}\n",
                double(correct) / double(test.size()), test.size(), epochs, batch);
  } catch (std::exception const& e) { // a lepton::error (its message names the file), or bad_alloc
    std::cerr << "tabular_binary: " << e.what() << "\n";
    return 1;
  }
}
