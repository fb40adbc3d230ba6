// One rank fails in a chosen way while the others train; the job must end (non-zero) with a
// clear message within bounded time, never hang. Run under `mpirun -np 2` and checked by
// expect_failure.cmake (exit status, message, elapsed time).
//
//   test_dist_fail throw|hang|exit|terminate|nonfinite|ok [--timeout SECONDS] [--shm]
//
// --shm: the gradients are summed with reduction::shared_memory (flag barriers in a shared
// segment instead of MPI requests), which must detect a failed peer the same way.
#include "dist_util.hpp"

#include <chrono>
#include <cstring>
#include <thread>

using namespace dist_test;

int main(int argc, char** argv) {
  lp::dist::environment env(argc, argv);
  std::string const mode = argc > 1 ? argv[1] : "ok";
  auto& c = env.world();
  bool shm = false;
  for (int i = 2; i < argc; ++i) {
    if (std::strcmp(argv[i], "--timeout") == 0 && i + 1 < argc)
      c.set_timeout(lp::dist::timeout_from_seconds(std::atof(argv[i + 1]))); // 0.0005: 1 ms, not 0
    if (std::strcmp(argv[i], "--shm") == 0) shm = true;
  }
  lp::set_num_threads(1);
  int const victim = c.size() - 1; // the last rank fails
  bool const me = c.rank() == victim && c.size() > 1;

  auto body = [&]() -> int {
    auto data = synthetic(1024, 5);
    mlp m;
    lp::nn::init(m, lp::init::kaiming_uniform{}, 1);
    lp::dist::broadcast_parameters(c, m);
    // A NaN in one rank's copy of the model: its loss is NaN, and the all-reduce carries that loss
    // to every rank, so that all of them stop at the same step with the same error.
    if (mode == "nonfinite" && me) m.fc3.bias.value(0) = std::numeric_limits<float>::quiet_NaN();
    lp::optim::adam<float> opt{m, {.lr = 1e-3}};
    if (mode == "nonfinite") { // the whole loop, including its consistent non-finite check
      lp::dist::fit(c, m, opt, lp::loss::cross_entropy, data,
                    {.epochs = 2, .batch = 64, .display = lp::train::progress::none},
                    {.broadcast_initial = false});
      return 0;
    }
    lp::dist::grad_reducer<float> red(
        c, m, {.mode = shm ? lp::dist::reduction::shared_memory : lp::dist::reduction::allreduce});
    lp::dist::shard_loader<X, Y> ld(data, {.batch = 64, .seed = 1}, c);
    std::size_t step = 0;
    for (std::size_t e = 0; e < 100; ++e) {
      for (auto sh : ld.epoch(e)) {
        if (me && ++step == 20) {
          if (mode == "throw") throw lp::value_error("injected failure on rank " + std::to_string(c.rank()));
          if (mode == "hang") std::this_thread::sleep_for(std::chrono::hours(1));
          if (mode == "exit") return 0; // leaves without the others (environment finalises)
          if (mode == "terminate") {
            struct boom {
              [[noreturn]] static void go() {
                throw std::runtime_error("exception escaping a noexcept function");
              }
            };
            [&]() noexcept { boom::go(); }();
          }
        }
        lp::backward(lp::loss::cross_entropy(m(sh.x), sh.y));
        red.reduce(sh.weight());
        opt.step();
        if (mode == "ok" && e == 1) return 0;
      }
    }
    return 0;
  };
  return lp::dist::run_or_abort(body);
}
