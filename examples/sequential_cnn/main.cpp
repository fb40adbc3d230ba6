// Fashion-MNIST with a CNN written as one sequential whose sizes are all inferred at compile time:
//   input 1x28x28 - conv 3x3 (32) - ReLU - max pool 2 - conv 3x3 (64) - ReLU - max pool 2 - flatten
//   - fc 64 - ReLU - fc 10.
// No layer names its input size: nn::input<1, 28, 28> gives the shape, and each layer with a size
// left to infer (conv2d<OutC, K>, linear<Out>) takes it from the layer before (the flatten gives
// 64 * 5 * 5 = 1600 features). lepton::summary prints the resolved network.
//
//   sequential_cnn [--data DIR] [--epochs N] [--batch B] [--threads T] [--seed S] [--lr LR]
//
// Prints the summary, then (unless --epochs 0) one line per epoch and one JSON line with the results.
#include <lepton/lepton.hpp>

#include "../common/args.hpp"

#include <cstdio>
#include <iostream>
#include <string>

namespace lp = lepton;
namespace nn = lp::nn;

using cnn = nn::sequential<nn::input<1, 28, 28>,                           // (b, 1, 28, 28)
                           nn::conv2d<32, 3>, nn::relu, nn::max_pool2d<2>, // -> (b, 32, 13, 13)
                           nn::conv2d<64, 3>, nn::relu, nn::max_pool2d<2>, // -> (b, 64, 5, 5)
                           nn::flatten, nn::linear<64>, nn::relu,          // -> (b, 64)
                           nn::linear<10>>;                                // -> (b, 10)

// Sizes are types: they can be checked like any constant.
static_assert(std::is_same_v<cnn::layer_type<7>, nn::linear<64 * 5 * 5, 64>>);
static_assert(nn::model_summary<cnn>::total_parameters == nn::parameter_count<cnn>);

struct options {
  std::string data = "/usr/share/datasets/fashion-mnist";
  std::size_t epochs = 3, batch = 64, threads = 0;
  std::uint64_t seed = 42;
  double lr = 1e-3;
};

int main(int argc, char** argv) {
  options o;
  lepton_examples::arg_parser args(
      "sequential_cnn", "Trains a CNN whose layer sizes are inferred at compile time on Fashion-MNIST.");
  args.add("--data", o.data, "DIR", "the Fashion-MNIST IDX files");
  args.add("--epochs", o.epochs, "N", "training epochs (0: print the summary only)", 0);
  args.add("--batch", o.batch, "B", "batch size", 1);
  args.add("--threads", o.threads, "T", "lepton threads (0: LEPTON_NUM_THREADS, else all hardware threads)");
  args.add("--seed", o.seed, "S", "seed of the initial weights and the batch order");
  args.add("--lr", o.lr, "LR", "Adam learning rate");
  if (auto rc = args.parse(argc, argv)) return *rc;
  std::cout << lp::summary<cnn>();
  if (o.epochs == 0) return 0;
  try {
    lp::set_num_threads(o.threads);
    lp::data::mnist_options norm{.normalize = true};
    using lp::data::image_layout;
    auto train = lp::data::fashion_mnist<image_layout::nchw>(o.data, lp::data::split::train, norm);
    auto test = lp::data::fashion_mnist<image_layout::nchw>(o.data, lp::data::split::test, norm);

    cnn model;
    nn::init(model, lp::init::kaiming_uniform{}, o.seed);
    lp::optim::adam opt{model, {.lr = o.lr}};
    auto hist = lp::train::fit(model, opt, lp::loss::cross_entropy, train, test,
                               {.epochs = o.epochs, .batch = o.batch, .seed = o.seed});
    auto const& last = hist.history.back();
    std::printf(
        "{\"test_accuracy\": %.4f, \"test_loss\": %.4f, \"epochs\": %zu, \"batch\": %zu, \"seed\": %llu, "
        "\"parameters\": %zu}\n",
        last.val_accuracy, last.val_loss, hist.history.size(), o.batch,
        static_cast<unsigned long long>(o.seed), nn::parameter_count<cnn>);
    return 0;
  } catch (lp::error const& e) {
    std::cerr << "sequential_cnn: " << e.what() << "\n";
    return 1;
  }
}
