// Fashion-MNIST with the 784-256-128-10 MLP and Adam, data-parallel over MPI ranks: the
// fashion_mnist_mlp example, distributed. Launch with mpirun (see docs/distributed.md):
//
//   mpirun -np 2 distributed_fashion_mnist [--data DIR] [--epochs N] [--batch B] [--threads T]
//          [--seed S] [--lr LR] [--reduce auto|allreduce|ordered|shared_memory] [--bucket-kb K] [--timeout SECONDS]
//          [--checkpoint-dir DIR] [--resume FILE] [--log-csv FILE]
//
// --batch is the global batch (all ranks together): N ranks each train on B/N samples per step
// and their gradients are averaged, so the run follows the single-process run with batch B.
// --threads is lepton's thread count per rank (default: hardware threads / ranks on the node).
// Rank 0 prints one line per epoch, then one JSON line with the results.
#include <lepton/dist.hpp>
#include <lepton/io.hpp>

#include <charconv>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <optional>
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
  std::size_t epochs = 5, batch = 128, threads = 0, bucket_kb = 0;
  std::uint64_t seed = 42;
  double lr = 1e-3, timeout = 0;
  std::string reduce = "auto", checkpoint_dir, resume, log_csv;
};

[[noreturn]] void usage_error(std::string const& msg) {
  if (lp::dist::rank() == 0)
    std::cerr
        << "distributed_fashion_mnist: " << msg << "\n"
        << "usage: mpirun -np N distributed_fashion_mnist [--data DIR] [--epochs N] [--batch B] "
           "[--threads T] "
           "[--seed S] [--lr LR] [--reduce auto|allreduce|ordered|shared_memory] [--bucket-kb K] [--timeout "
           "SECONDS] "
           "[--checkpoint-dir DIR] [--resume FILE] [--log-csv FILE]\n";
  // Every rank parses the same arguments and gets here: end cleanly, nobody waits for anyone.
  MPI_Finalize();
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
    if (a == "--help" || a == "-h") usage_error("trains an MLP on Fashion-MNIST over MPI ranks");
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
    else if (a == "--reduce")
      o.reduce = v;
    else if (a == "--bucket-kb")
      o.bucket_kb = parse_number<std::size_t>(a, v);
    else if (a == "--timeout")
      o.timeout = parse_number<double>(a, v);
    else if (a == "--checkpoint-dir")
      o.checkpoint_dir = v;
    else if (a == "--resume")
      o.resume = v;
    else if (a == "--log-csv")
      o.log_csv = v;
    else
      usage_error("unknown option " + std::string(a));
  }
  if (o.batch == 0) usage_error("--batch must be > 0");
  if (o.reduce != "auto" && o.reduce != "allreduce" && o.reduce != "ordered" && o.reduce != "shared_memory")
    usage_error("--reduce must be auto, allreduce, ordered or shared_memory");
  return o;
}

int main(int argc, char** argv) {
  lp::dist::environment env(argc, argv);
  options o = parse(argc, argv);
  return lp::dist::run_or_abort([&] {
    auto& comm = env.world();
    if (o.timeout > 0) comm.set_timeout(std::chrono::milliseconds(static_cast<long long>(o.timeout * 1000)));
    if (o.threads) lp::set_num_threads(o.threads);
    // Every rank reads the data set (40 MB); each trains on its own shard of every batch.
    lp::data::mnist_options norm{.normalize = true};
    auto train = lp::data::fashion_mnist(o.data, lp::data::split::train, norm);
    auto test = lp::data::fashion_mnist(o.data, lp::data::split::test, norm);

    mlp model;
    lp::nn::init(model, lp::init::kaiming_uniform{}, o.seed); // dist::fit sends rank 0's weights to all
    lp::optim::adam opt{model, {.lr = o.lr}};
    lp::optim::cosine_lr sched{opt, o.epochs};
    std::size_t start_epoch = 0;
    if (!o.resume.empty()) { // rank 0 reads the file and sends it to every rank
      lp::io::train_state st;
      lp::dist::load_checkpoint(comm, o.resume, model, opt, st, sched);
      start_epoch = st.epoch;
      lp::dist::log(comm) << "resumed from " << o.resume << " after epoch " << st.epoch << "\n";
    }
    std::optional<
        lp::io::checkpointer<mlp, lp::optim::adam<float>, lp::optim::cosine_lr<lp::optim::adam<float>>>>
        ckpt;
    if (!o.checkpoint_dir.empty())
      ckpt.emplace(model, opt, sched, lp::io::checkpoint_options{.dir = o.checkpoint_dir}, o.seed);

    auto hist = lp::dist::fit(comm, model, opt, lp::loss::cross_entropy, train, test,
                              {.epochs = o.epochs,
                               .start_epoch = start_epoch,
                               .batch = o.batch,
                               .seed = o.seed,
                               .log_csv = o.log_csv,
                               .on_epoch =
                                   [&](lp::train::epoch_stats const&) {
      sched.step(); // on every rank: the learning rate stays the same everywhere
      return true;
                               },
                               // dist::fit runs this on rank 0 only; a failure there stops every rank.
                               .on_checkpoint =
                                   [&](lp::train::epoch_stats const& st) {
      if (ckpt) (*ckpt)(st);
                               }},
         {.reduce = {.mode = o.reduce == "ordered"         ? lp::dist::reduction::ordered
                             : o.reduce == "shared_memory" ? lp::dist::reduction::shared_memory
                             : o.reduce == "allreduce"     ? lp::dist::reduction::allreduce
                                                           : lp::dist::reduction::automatic,
                     .bucket_bytes = o.bucket_kb * 1024}});
    if (hist.history.empty()) return 0;
    double samples = 0, seconds = 0;
    for (auto const& e : hist.history) {
      samples += e.samples_per_s * e.seconds;
      seconds += e.seconds;
    }
    auto const& last = hist.history.back();
    if (comm.is_root())
      std::printf(
          "{\"test_accuracy\": %.4f, \"test_loss\": %.4f, \"train_samples_per_s\": %.0f, \"epochs\": %zu, "
          "\"batch\": %zu, \"ranks\": %d, \"threads_per_rank\": %zu, \"seed\": %llu, \"reduce\": \"%s\", "
          "\"parameters\": %zu}\n",
          last.val_accuracy, last.val_loss, seconds > 0 ? samples / seconds : 0.0, hist.history.size(),
          o.batch, comm.size(), lp::num_threads(), static_cast<unsigned long long>(o.seed), o.reduce.c_str(),
          lp::nn::parameter_count<mlp>);
    return 0;
  });
}
