// Fashion-MNIST with a 784-256-128-10 MLP trained by Adam: the first thing a lepton user runs.
//
//   fashion_mnist_mlp [--data DIR] [--epochs N] [--batch B] [--threads T] [--seed S] [--lr LR]
//                     [--log-csv FILE]
//
// Prints one line per epoch, then one JSON line with the results.
#include <lepton/lepton.hpp>

#include <charconv>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <string>
#include <string_view>

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

[[noreturn]] void usage_error(std::string const& msg) {
  std::cerr
      << "fashion_mnist_mlp: " << msg << "\n"
      << "usage: fashion_mnist_mlp [--data DIR] [--epochs N] [--batch B] [--threads T] [--seed S] [--lr LR] "
         "[--log-csv FILE]\n";
  std::exit(2);
}

template <class T> T parse_number(std::string_view flag, char const* text) {
  T v{};
  std::string_view s(text);
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size())
    usage_error(std::string(flag) + ": not a number: '" + text + "'");
  return v;
}

options parse(int argc, char** argv) {
  options o;
  for (int i = 1; i < argc; ++i) {
    std::string_view a = argv[i];
    if (a == "--help" || a == "-h") usage_error("trains an MLP on Fashion-MNIST");
    if (i + 1 >= argc) usage_error("missing value after " + std::string(a));
    char const* v = argv[++i];
    if (a == "--data")
      o.data = v;
    else if (a == "--epochs")
      o.epochs = parse_number<std::size_t>(a, v);
    else if (a == "--batch")
      o.batch = parse_number<std::size_t>(a, v);
    else if (a == "--threads")
      o.threads = parse_number<std::size_t>(a, v);
    else if (a == "--seed")
      o.seed = parse_number<std::uint64_t>(a, v);
    else if (a == "--lr")
      o.lr = parse_number<double>(a, v);
    else if (a == "--log-csv")
      o.log_csv = v;
    else
      usage_error("unknown option " + std::string(a));
  }
  if (o.batch == 0) usage_error("--batch must be > 0");
  return o;
}

int main(int argc, char** argv) {
  options o = parse(argc, argv);
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
