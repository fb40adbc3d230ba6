// Fashion-MNIST with a 784-256-128-10 MLP trained by Adam: the first thing a lepton user runs.
//
//   fashion_mnist_mlp [--data DIR] [--epochs N] [--batch B] [--threads T] [--seed S] [--lr LR]
//                     [--log-csv FILE]
//
// Prints one line per epoch, then one JSON line with the results.
#include <lepton/lepton.hpp>

#include "../common/args.hpp"

#include <cstdio>
#include <iostream>
#include <string>

namespace lp = lepton;

struct mlp {
  lp::nn::linear<784, 256> fc1;
  lp::nn::linear<256, 128> fc2;
  lp::nn::linear<128, 10> fc3;
  static constexpr std::array<char const*, 3> lepton_names{"fc1", "fc2", "fc3"};

  auto operator()(auto const& x) const { return fc3(lp::relu(fc2(lp::relu(fc1(x))))); }
};

struct options {
  std::string data = "/usr/share/datasets/fashion-mnist";
  std::size_t epochs = 5, batch = 64, threads = 0;
  std::uint64_t seed = 42;
  double lr = 1e-3;
  std::string log_csv;
};

int main(int argc, char** argv) {
  options o;
  lepton_examples::arg_parser args("fashion_mnist_mlp",
                                   "Trains a 784-256-128-10 MLP on Fashion-MNIST with Adam.");
  args.add("--data", o.data, "DIR", "the Fashion-MNIST IDX files");
  args.add("--epochs", o.epochs, "N", "training epochs", 1);
  args.add("--batch", o.batch, "B", "batch size", 1);
  args.add("--threads", o.threads, "T", "lepton threads (0: LEPTON_NUM_THREADS, else all hardware threads)");
  args.add("--seed", o.seed, "S", "seed of the initial weights and the batch order");
  args.add("--lr", o.lr, "LR", "Adam learning rate");
  args.add("--log-csv", o.log_csv, "FILE", "write one CSV line per epoch");
  if (auto rc = args.parse(argc, argv)) return *rc;
  try {
    lp::set_num_threads(o.threads);
    lp::data::mnist_options norm{.normalize = true};
    auto train = lp::data::fashion_mnist(o.data, lp::data::split::train, norm);
    auto test = lp::data::fashion_mnist(o.data, lp::data::split::test, norm);

    mlp model;
    lp::nn::init(model, lp::init::kaiming_uniform{}, o.seed);
    lp::optim::adam opt{model, {.lr = o.lr}};
    // Cosine annealing of the learning rate over the run: the last epochs settle the weights.
    lp::optim::cosine_lr sched{opt, o.epochs};
    auto hist = lp::train::fit(model, opt, lp::loss::cross_entropy, train, test,
                               {.epochs = o.epochs,
                                .batch = o.batch,
                                .seed = o.seed,
                                .log_csv = o.log_csv,
                                .on_epoch = [&](lp::train::epoch_stats const&) {
                                  sched.step();
                                  return true;
                                }});

    double samples = 0, seconds = 0;
    for (auto const& e : hist.history) {
      samples += e.samples_per_s * e.seconds;
      seconds += e.seconds;
    }
    auto const& last = hist.history.back();
    std::printf(
        "{\"test_accuracy\": %.4f, \"test_loss\": %.4f, \"train_samples_per_s\": %.0f, \"epochs\": %zu, "
        "\"batch\": %zu, \"threads\": %zu, \"seed\": %llu, \"parameters\": %zu}\n",
        last.val_accuracy, last.val_loss, seconds > 0 ? samples / seconds : 0.0, hist.history.size(), o.batch,
        lp::num_threads(), static_cast<unsigned long long>(o.seed), lp::nn::parameter_count<mlp>);
    return 0;
  } catch (lp::error const& e) {
    std::cerr << "fashion_mnist_mlp: " << e.what() << "\n";
    return 1;
  }
}
