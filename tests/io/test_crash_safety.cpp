// Crash safety: a child process saves checkpoints in a loop (alternating two contents) and is SIGKILLed
// at random times. After every kill the checkpoint must load and equal one of the two contents, and
// the temporary files left by killed writers stay bounded (later saves remove them).
#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <csignal>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include <sys/wait.h>
#include <unistd.h>

#include <lepton/io.hpp>

#include "io_test_util.hpp"

TEST_CASE("a checkpoint writer SIGKILLed at random points never damages the checkpoint", "[io][crash]") {
  namespace lio = lepton::io;
  using clock = std::chrono::steady_clock;
  io_test::scratch_dir dir;
  auto const p = dir / "ckpt.safetensors";
  std::string const prefix = lio::temp_prefix(p);

  // two checkpoints of ~260 KB that differ in every tensor
  lepton::tensor<float, 256, 256> wa({256, 256}, 1.0f), wb({256, 256}, 2.0f);
  lepton::tensor<std::int64_t> step_a({}, 100), step_b({}, 200);
  std::vector<lio::tensor_ref> const a{lio::ref("w", wa), lio::ref("step", step_a)};
  std::vector<lio::tensor_ref> const b{lio::ref("w", wb), lio::ref("step", step_b)};
  auto is = [](lio::tensor_map const& m, lepton::tensor<float, 256, 256> const& w,
               lepton::tensor<std::int64_t> const& s) {
    return m.size() == 2 && io_test::same_bits(w, m.at("w")) && io_test::same_bits(s, m.at("step"));
  };

  // time one durable save, so that the kill times cover every phase of a save on this disk
  auto t0 = clock::now();
  lio::save_safetensors(p, a);
  auto save_us = std::chrono::duration_cast<std::chrono::microseconds>(clock::now() - t0).count();
  int const max_delay_us = static_cast<int>(std::clamp<long long>(3 * save_us, 500, 20000));

  std::mt19937 rng(20240607);
  std::uniform_int_distribution<int> delay(0, max_delay_us);
  int trials = 0, saw_a = 0, saw_b = 0;
  std::size_t max_temps = 0;
  auto const start = clock::now();
  while (trials < 100 || (trials < 200 && clock::now() - start < std::chrono::seconds(6))) {
    ++trials;
    pid_t pid = ::fork();
    REQUIRE(pid >= 0);
    if (pid == 0) {
      try {
        for (unsigned i = 1;; ++i) lio::save_safetensors(p, i % 2 ? b : a);
      } catch (...) {
        ::_exit(3);
      }
    }
    ::usleep(static_cast<useconds_t>(delay(rng)));
    ::kill(pid, SIGKILL);
    int status = 0;
    REQUIRE(::waitpid(pid, &status, 0) == pid);
    REQUIRE(WIFSIGNALED(status)); // the writer did not fail on its own
    auto m = lio::load_safetensors(p);
    bool const ok_a = is(m, wa, step_a), ok_b = is(m, wb, step_b);
    CHECK((ok_a || ok_b));
    saw_a += ok_a;
    saw_b += ok_b;
    max_temps = std::max(max_temps, dir.count_prefix(prefix));
    if (clock::now() - start > std::chrono::seconds(18)) break;
  }
  INFO("trials " << trials << ", one save takes " << save_us << " us, kills within " << max_delay_us
                 << " us; A seen " << saw_a << ", B seen " << saw_b << ", at most " << max_temps
                 << " temporaries");
  CHECK(trials >= 100);
  CHECK(saw_b > 0); // some saves completed, so kills hit every phase
  // One temporary per killed writer until the next writer's first save removes it; a run of writers
  // killed before they start saving could leave a few more.
  CHECK(max_temps <= 8);
  CHECK(dir.count_files() <= 1 + max_temps);
  lio::save_safetensors(p, a); // a later save removes what dead writers left
  CHECK(dir.count_prefix(prefix) == 0);
  CHECK(dir.count_files() == 1);
  CHECK(is(lio::load_safetensors(p), wa, step_a));
}
