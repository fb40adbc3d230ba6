// CIFAR-10 with a small VGG-style CNN (batch norm, ReLU, max pooling, global average pooling)
// trained by Adam with seeded augmentation (random crop with 4 pixels of padding, horizontal flip).
//
//   cifar10_cnn [--data DIR] [--epochs N] [--batch B] [--threads T] [--seed S] [--lr LR]
//               [--log-csv FILE] [--augment 0|1] [--train-limit N]
//
// DIR holds the CIFAR-10 binary files (data_batch_<k>.bin, test_batch.bin), directly or in a
// cifar-10-batches-bin subdirectory. Prints one line per epoch, then one JSON line with the results.
#include <lepton/data/augment.hpp>
#include <lepton/data/cifar10.hpp>
#include <lepton/lepton.hpp>
#include <lepton/nn/layers/batch_norm.hpp>
#include <lepton/nn/layers/conv2d.hpp>
#include <lepton/nn/layers/pooling.hpp>

#include "../common/args.hpp"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iostream>
#include <string>

namespace lp = lepton;

/// conv 3x3 (no bias: batch norm follows) - batch norm - ReLU.
template <std::size_t In, std::size_t Out> struct conv_bn_relu {
  lp::nn::conv2d<In, Out, 3, 3, 1, 1, 1, false> conv;
  lp::nn::batch_norm<Out> bn;
  static constexpr std::array<char const*, 2> lepton_names{"conv", "bn"};
  auto operator()(auto const& x) const { return lp::relu(bn(conv(x))); }
};

struct cnn {
  conv_bn_relu<3, 32> b1;        // (b, 3, 32, 32) -> (b, 32, 32, 32)
  conv_bn_relu<32, 32> b2;       //                -> (b, 32, 32, 32)
  lp::nn::max_pool2d<2> p1;      //                -> (b, 32, 16, 16)
  conv_bn_relu<32, 64> b3;       //                -> (b, 64, 16, 16)
  conv_bn_relu<64, 64> b4;       //                -> (b, 64, 16, 16)
  lp::nn::max_pool2d<2> p2;      //                -> (b, 64, 8, 8)
  conv_bn_relu<64, 128> b5;      //                -> (b, 128, 8, 8)
  lp::nn::global_avg_pool2d gap; //           -> (b, 128)
  lp::nn::linear<128, 10> fc;    //           -> (b, 10)
  static constexpr std::array<char const*, 9> lepton_names{"b1", "b2", "p1",  "b3", "b4",
                                                           "p2", "b5", "gap", "fc"};

  auto operator()(auto const& x) const { return fc(gap(b5(p2(b4(b3(p1(b2(b1(x))))))))); }
};

struct options {
  std::string data = "/usr/share/datasets/cifar-10-batches-bin";
  std::size_t epochs = 10, batch = 64, threads = 0, train_limit = 0;
  std::uint64_t seed = 42;
  double lr = 2e-3;
  bool augment = true;
  std::string log_csv;
};

int main(int argc, char** argv) {
  options o;
  lepton_examples::arg_parser args("cifar10_cnn",
                                   "Trains a small VGG-style CNN on CIFAR-10 with Adam and augmentation.");
  args.add("--data", o.data, "DIR", "the CIFAR-10 binary files");
  args.add("--epochs", o.epochs, "N", "training epochs", 1);
  args.add("--batch", o.batch, "B", "batch size (at least 2: batch norm needs two samples)", 2);
  args.add("--threads", o.threads, "T", "lepton threads (0: LEPTON_NUM_THREADS, else all hardware threads)");
  args.add("--seed", o.seed, "S", "seed of the initial weights and the batch order");
  args.add("--lr", o.lr, "LR", "Adam learning rate");
  args.add("--log-csv", o.log_csv, "FILE", "write one CSV line per epoch");
  unsigned augment = o.augment ? 1 : 0;
  args.add("--augment", augment, "0|1", "random crops and flips", 0, 1);
  args.add("--train-limit", o.train_limit, "N", "train on the first N images (0: all)");
  if (auto rc = args.parse(argc, argv)) return *rc;
  o.augment = augment != 0;
  try {
    lp::set_num_threads(o.threads);
    lp::data::cifar10_options norm{.normalize = true, .max_samples = o.train_limit};
    auto train = lp::data::cifar10(o.data, lp::data::split::train, norm);
    auto test = lp::data::cifar10(o.data, lp::data::split::test, {.normalize = true});

    cnn model;
    lp::nn::init(model, lp::init::kaiming_uniform{}, o.seed);
    lp::optim::adam opt{model, {.lr = o.lr}};
    lp::optim::cosine_lr sched{opt, o.epochs};
    // Images are standardised, so padding with 0 pads with the mean colour.
    lp::data::augmenter aug(
        {.crop_padding = o.augment ? 4u : 0u, .horizontal_flip = o.augment, .seed = o.seed});
    // drop_last: a last batch of one sample would leave batch norm a single value per channel.
    lp::data::loader ld(train, {.batch = o.batch, .shuffle = true, .seed = o.seed, .drop_last = true});
    if (ld.batches_per_epoch() == 0) {
      std::cerr << "cifar10_cnn: --batch: " << o.batch << " is more than the " << train.size()
                << " training samples (see --train-limit)\n";
      return 2;
    }

    std::ofstream csv;
    if (!o.log_csv.empty()) {
      csv.open(o.log_csv, std::ios::trunc);
      if (!csv) throw lp::io_error(o.log_csv + ": cannot open the CSV log for writing");
      csv << "epoch,train_loss,train_accuracy,val_loss,val_accuracy,seconds,samples_per_s,lr\n";
    }
    double total_samples = 0, total_seconds = 0;
    lp::train::eval_result last{};
    for (std::size_t e = 0; e < o.epochs; ++e) {
      lp::nn::set_training(model, true);
      auto t0 = std::chrono::steady_clock::now();
      double loss_sum = 0;
      std::size_t seen = 0, correct = 0;
      for (auto [x, y] : ld.epoch(e)) {
        aug(x); // in place, in the loader's batch buffer
        float l = lp::backward(lp::loss::cross_entropy(model(x), y), {.correct = &correct});
        if (!std::isfinite(l)) throw lp::numeric_error("non-finite loss at epoch " + std::to_string(e + 1));
        opt.step();
        loss_sum += double(l) * double(x.shape()[0]);
        seen += x.shape()[0];
      }
      double const secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      total_samples += double(seen);
      total_seconds += secs;
      double const lr = opt.lr();
      last = lp::train::evaluate(model, lp::loss::cross_entropy, test, 256);
      std::printf("epoch %zu/%zu  loss %.4f  acc %.4f  val_loss %.4f  val_acc %.4f  %.2f s  %.0f samples/s\n",
                  e + 1, o.epochs, loss_sum / double(seen), double(correct) / double(seen), last.loss,
                  last.accuracy, secs, double(seen) / secs);
      std::fflush(stdout);
      if (csv)
        csv << e + 1 << ',' << loss_sum / double(seen) << ',' << double(correct) / double(seen) << ','
            << last.loss << ',' << last.accuracy << ',' << secs << ',' << double(seen) / secs << ',' << lr
            << '\n'
            << std::flush;
      sched.step();
    }
    std::printf(
        "{\"test_accuracy\": %.4f, \"test_loss\": %.4f, \"train_samples_per_s\": %.0f, \"epochs\": %zu, "
        "\"batch\": %zu, \"threads\": %zu, \"seed\": %llu, \"parameters\": %zu}\n",
        last.accuracy, last.loss, total_seconds > 0 ? total_samples / total_seconds : 0.0, o.epochs, o.batch,
        lp::num_threads(), static_cast<unsigned long long>(o.seed), lp::nn::parameter_count<cnn>);
    return 0;
  } catch (lp::error const& e) {
    std::cerr << "cifar10_cnn: " << e.what() << "\n";
    return 1;
  }
}
