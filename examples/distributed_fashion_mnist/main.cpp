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
// --checkpoint-dir must not hold another run's checkpoints: continue that run with --resume.
// Rank 0 prints one line per epoch, then one JSON line with the results.
#include <lepton/dist.hpp>
#include <lepton/io.hpp>

#include "../common/args.hpp"

#include <cstdio>
#include <iostream>
#include <optional>
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
  std::size_t epochs = 5, batch = 128, threads = 0, bucket_kb = 0;
  std::uint64_t seed = 42;
  double lr = 1e-3, timeout = 0;
  std::string reduce = "auto", checkpoint_dir, resume, log_csv;
};

int main(int argc, char** argv) {
  lp::dist::environment env(argc, argv);
  options o;
  lepton_examples::arg_parser args(
      "distributed_fashion_mnist",
      "Trains the 784-256-128-10 MLP on Fashion-MNIST, data-parallel over MPI ranks "
      "(launch with mpirun -np N).");
  args.add("--data", o.data, "DIR", "the Fashion-MNIST IDX files");
  args.add("--epochs", o.epochs, "N", "training epochs (the total, also when resuming)", 1);
  args.add("--batch", o.batch, "B", "global batch size (all ranks together)", 1);
  args.add("--threads", o.threads, "T", "lepton threads per rank (0: hardware threads / ranks on the node)");
  args.add("--seed", o.seed, "S", "seed of the initial weights and the batch order");
  args.add("--lr", o.lr, "LR", "Adam learning rate");
  args.add_choice("--reduce", o.reduce, {"auto", "allreduce", "ordered", "shared_memory"},
                  "how the gradients are summed");
  args.add("--bucket-kb", o.bucket_kb, "K", "all-reduce bucket size in KiB (0: lepton's default)");
  args.add("--timeout", o.timeout, "SECONDS",
           "abort the job when a collective waits longer, rounded up to whole ms (default: "
           "LEPTON_DIST_TIMEOUT, else 300)");
  args.add("--checkpoint-dir", o.checkpoint_dir, "DIR", "save a checkpoint after every epoch (rank 0)");
  args.add("--resume", o.resume, "FILE", "continue the run of this checkpoint");
  args.add("--log-csv", o.log_csv, "FILE", "write one CSV line per epoch (rank 0)");
  args.set_print(env.rank() == 0);                  // every rank parses the same arguments; one reports
  if (auto rc = args.parse(argc, argv)) return *rc; // every rank returns: MPI_Finalize, nobody waits
  return lp::dist::run_or_abort([&] {
    auto& comm = env.world();
    if (o.timeout > 0) comm.set_timeout(lp::dist::timeout_from_seconds(o.timeout)); // 0.0005 s: 1 ms
    if (o.threads) lp::set_num_threads(o.threads);

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
    // Rank 0 writes the checkpoints. The checkpointer refuses a directory that holds another run's
    // files (a new run without --resume, or one resumed from an older epoch), before any training.
    std::optional<
        lp::io::checkpointer<mlp, lp::optim::adam<float>, lp::optim::cosine_lr<lp::optim::adam<float>>>>
        ckpt;
    if (!o.checkpoint_dir.empty() && comm.is_root())
      ckpt.emplace(model, opt, sched,
                   lp::io::checkpoint_options{.dir = o.checkpoint_dir, .start_epoch = start_epoch}, o.seed);
    // Every rank reads the data set (40 MB); each trains on its own shard of every batch.
    lp::data::mnist_options norm{.normalize = true};
    auto train = lp::data::fashion_mnist(o.data, lp::data::split::train, norm);
    auto test = lp::data::fashion_mnist(o.data, lp::data::split::test, norm);

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
