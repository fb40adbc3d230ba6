// Data-parallel throughput: training steps of the 784-256-128-10 MLP with a fixed global batch,
// under `mpirun -np N`. Run it with -np 1 and -np 2 (1 lepton thread per rank) and divide the
// samples/s: the scaling figure of issue P9 (target >= 1.7x for 2 ranks on 2 free cores).
//
//   mpirun -np 2 bench_dist [--batch 128] [--steps 300] [--threads 1] [--mode allreduce|ordered|shared_memory]
//                           [--bucket-kb 0] [--repeat 3]
//
// Each repetition times `steps` steps (after 20 warm-up steps) and splits a step into compute
// (forward + backward + optimizer, this rank) and reduce (pack + all-reduce + unpack, including
// the wait for the slower rank). Prints one line per repetition on rank 0, then one JSON line
// with the best repetition (the least disturbed by other load on the machine).
#include <lepton/dist.hpp>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <string_view>

#include <unistd.h>

namespace lp = lepton;

namespace {

struct mlp {
  lp::nn::linear<784, 256> fc1;
  lp::nn::linear<256, 128> fc2;
  lp::nn::linear<128, 10> fc3;
  auto operator()(auto const& x) const { return fc3(lp::relu(fc2(lp::relu(fc1(x))))); }
};

using X = lp::tensor<float, lp::dyn, 784>;
using Y = lp::tensor<std::int32_t, lp::dyn>;

lp::data::dataset<X, Y> synthetic_data(std::size_t n) {
  std::mt19937_64 rng(1);
  X x({n, 784});
  Y y({n});
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t j = 0; j < 784; ++j) x(i, j) = float(rng() >> 40) * (1.0f / 16777216.0f);
    y(i) = std::int32_t(rng() % 10);
  }
  return {std::move(x), std::move(y)};
}

double load_average() {
  double l[1] = {0};
  return getloadavg(l, 1) == 1 ? l[0] : -1;
}

} // namespace

int main(int argc, char** argv) {
  lp::dist::environment env(argc, argv);
  return lp::dist::run_or_abort([&] {
    auto& c = env.world();
    std::size_t batch = 128, steps = 300, threads = 1, repeat = 3, bucket_kb = 0;
    std::string mode = "allreduce";
    for (int i = 1; i + 1 < argc; i += 2) {
      std::string_view a = argv[i];
      char const* v = argv[i + 1];
      if (a == "--batch")
        batch = std::strtoull(v, nullptr, 10);
      else if (a == "--steps")
        steps = std::strtoull(v, nullptr, 10);
      else if (a == "--threads")
        threads = std::strtoull(v, nullptr, 10);
      else if (a == "--repeat")
        repeat = std::strtoull(v, nullptr, 10);
      else if (a == "--bucket-kb")
        bucket_kb = std::strtoull(v, nullptr, 10);
      else if (a == "--mode")
        mode = v;
      else
        throw lp::value_error("bench_dist: unknown option " + std::string(a));
    }
    lp::set_num_threads(threads);
    auto data = synthetic_data(batch * 50);
    mlp model;
    lp::nn::init(model, lp::init::kaiming_uniform{}, 1);
    lp::dist::broadcast_parameters(c, model);
    lp::optim::adam<float> opt{model, {.lr = 1e-3}};
    lp::dist::grad_reducer<float> red(c, model,
                                      {.mode = mode == "ordered"         ? lp::dist::reduction::ordered
                                               : mode == "shared_memory" ? lp::dist::reduction::shared_memory
                                                                         : lp::dist::reduction::allreduce,
                                       .bucket_bytes = bucket_kb * 1024});
    lp::dist::shard_loader<X, Y> ld(data, {.batch = batch, .seed = 1}, c);

    using clock = std::chrono::steady_clock;
    double best_sps = 0, best_compute = 0, best_reduce = 0;
    std::size_t k = 0, epoch = 0;
    ld.epoch(0);
    auto one_step = [&](double& compute, double& reduce) {
      if (k == ld.batches_per_epoch()) ld.epoch(++epoch), k = 0;
      auto t0 = clock::now();
      auto sh = ld.get_batch(k++);
      if (sh.size()) lp::backward(lp::loss::cross_entropy(model(sh.x), sh.y));
      auto t1 = clock::now();
      red.reduce(sh.weight());
      auto t2 = clock::now();
      opt.step();
      auto t3 = clock::now();
      compute += std::chrono::duration<double>((t1 - t0) + (t3 - t2)).count();
      reduce += std::chrono::duration<double>(t2 - t1).count();
    };
    double warm_c = 0, warm_r = 0;
    for (int i = 0; i < 20; ++i) one_step(warm_c, warm_r);
    for (std::size_t rep = 0; rep < repeat; ++rep) {
      lp::dist::barrier(c);
      double compute = 0, reduce = 0;
      auto t0 = clock::now();
      for (std::size_t s = 0; s < steps; ++s) one_step(compute, reduce);
      double const secs =
          lp::dist::max_over_ranks(c, std::chrono::duration<double>(clock::now() - t0).count());
      double const sps = double(steps * batch) / secs;
      lp::dist::log(c) << "rep " << rep << ": " << sps << " samples/s, " << 1e3 * secs / double(steps)
                       << " ms/step (compute " << 1e3 * compute / double(steps) << " ms, reduce "
                       << 1e3 * reduce / double(steps) << " ms on rank 0), load " << load_average() << "\n";
      if (sps > best_sps)
        best_sps = sps, best_compute = compute / double(steps), best_reduce = reduce / double(steps);
    }
    lp::dist::check_parameters_synchronised(c, model);
    if (c.is_root())
      std::printf(
          "{\"bench\": \"dist_mlp\", \"ranks\": %d, \"threads_per_rank\": %zu, \"global_batch\": %zu, "
          "\"steps\": %zu, "
          "\"mode\": \"%s\", \"bucket_kb\": %zu, \"samples_per_s\": %.0f, \"ms_per_step\": %.3f, "
          "\"compute_ms\": %.3f, \"reduce_ms\": %.3f, \"gradient_bytes\": %zu, \"load_average\": %.2f}\n",
          c.size(), lp::num_threads(), batch, steps, mode.c_str(), bucket_kb, best_sps,
          1e3 * double(batch) / best_sps, 1e3 * best_compute, 1e3 * best_reduce, red.bytes(), load_average());
    return 0;
  });
}
