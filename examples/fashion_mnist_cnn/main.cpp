// Fashion-MNIST with a small CNN trained by Adam:
//   conv 3x3 (32) - ReLU - max pool 2 - conv 3x3 (64) - ReLU - max pool 2 - fc 128 - ReLU - fc 10.
//
//   fashion_mnist_cnn [--data DIR] [--epochs N] [--batch B] [--threads T] [--seed S] [--lr LR]
//                     [--log-csv FILE]
//
// Prints one line per epoch, then one JSON line with the results.
#include <lepton/lepton.hpp>
#include <lepton/nn/layers/conv2d.hpp>
#include <lepton/nn/layers/pooling.hpp>

#include "../common/args.hpp"

#include <cstdio>
#include <iostream>
#include <string>

namespace lp = lepton;

struct cnn {
  lp::nn::conv2d<1, 32, 3, 3, 1, 1> conv1;  // (b, 1, 28, 28) -> (b, 32, 28, 28)
  lp::nn::max_pool2d<2> pool1;              //                -> (b, 32, 14, 14)
  lp::nn::conv2d<32, 64, 3, 3, 1, 1> conv2; //                -> (b, 64, 14, 14)
  lp::nn::max_pool2d<2> pool2;              //                -> (b, 64, 7, 7)
  lp::nn::linear<64 * 7 * 7, 128> fc1;      // flattened      -> (b, 128)
  lp::nn::linear<128, 10> fc2;              //                -> (b, 10)
  static constexpr std::array<char const*, 6> lepton_names{"conv1", "pool1", "conv2", "pool2", "fc1", "fc2"};

  auto operator()(auto const& x) const {
    auto h = pool2(lp::relu(conv2(pool1(lp::relu(conv1(x))))));
    return fc2(lp::relu(fc1(lp::flatten(h))));
  }
};

struct options {
  std::string data = "/usr/share/datasets/fashion-mnist";
  std::size_t epochs = 10, batch = 64, threads = 0;
  std::uint64_t seed = 42;
  double lr = 1e-3;
  std::string log_csv;
};

int main(int argc, char** argv) {
  options o;
  lepton_examples::arg_parser args("fashion_mnist_cnn", "Trains a small CNN on Fashion-MNIST with Adam.");
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
    using lp::data::image_layout;
    auto train = lp::data::fashion_mnist<image_layout::nchw>(o.data, lp::data::split::train, norm);
    auto test = lp::data::fashion_mnist<image_layout::nchw>(o.data, lp::data::split::test, norm);

    cnn model;
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
        lp::num_threads(), static_cast<unsigned long long>(o.seed), lp::nn::parameter_count<cnn>);
    return 0;
  } catch (lp::error const& e) {
    std::cerr << "fashion_mnist_cnn: " << e.what() << "\n";
    return 1;
  }
}
