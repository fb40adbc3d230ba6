// Exact resume through fit: 2 epochs + checkpoint, then fresh objects load it and run epoch 3: the
// parameters (and all other state) are bit-identical to 3 epochs straight. Also the checkpointer
// callback: every N epochs, keep the last K.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "io_test_util.hpp"
#include "test_checkpoint_util.hpp"

namespace ckpt_resume_test {
using namespace ckpt_test;
namespace tr = lepton::train;

/// One thread for the duration (bit-exact comparisons), then back to the default.
struct single_thread {
  single_thread() { lp::set_num_threads(1); }
  ~single_thread() { lp::set_num_threads(0); }
};

using adam_t = lp::optim::adam<float>;
using sched_t = lp::optim::cosine_lr<adam_t>;

/// Everything a training process owns, built the same way every time (only the init seed varies).
struct run {
  net model;
  adam_t opt;
  sched_t sched;
  explicit run(std::uint64_t init_seed)
      : model(make_net(init_seed)), opt(model, {.lr = 0.02}), sched(opt, 4, 0.001) {}
  run(run const&) = delete;

  tr::fit_result fit(lp::data::dataset<X, Y> const& train, lp::data::dataset<X, Y> const& val,
                     std::size_t epochs, std::size_t start_epoch = 0,
                     std::function<void(tr::epoch_stats const&)> on_checkpoint = {}) {
    return tr::fit(model, opt, lp::loss::cross_entropy, train, val,
                   {.epochs = epochs,
                    .start_epoch = start_epoch,
                    .batch = 16,
                    .seed = 9,
                    .display = tr::progress::none,
                    .on_epoch =
                        [this](tr::epoch_stats const&) {
      sched.step();
      return true;
                    },
                    .on_checkpoint = std::move(on_checkpoint)});
  }
  snapshot state() { return take(model, opt, sched); }
};

} // namespace ckpt_resume_test

TEST_CASE("resume: 2 epochs, checkpoint, fresh objects, 1 more epoch == 3 epochs straight, bit for bit",
          "[io][checkpoint][train]") {
  using namespace ckpt_resume_test;
  single_thread one;
  io_test::scratch_dir dir;
  auto const train = blobs(240, 11), val = blobs(60, 12);

  run straight(1);
  straight.fit(train, val, 3);

  {
    run first(1); // the first process: 2 epochs, a checkpoint after each, keeping the last one
    lio::checkpointer ckpt(first.model, first.opt, first.sched,
                           {.dir = dir.path(), .every = 1, .keep_last = 1}, 9);
    first.fit(train, val, 2, 0, ckpt);
  }
  auto const files = lio::list_checkpoints(dir.path());
  REQUIRE(files.size() == 1);
  CHECK(files[0].first == 2);
  CHECK(files[0].second.filename() == "ckpt-epoch-0002.safetensors");

  run resumed(1234); // the second process: other initial weights, all overwritten by the checkpoint
  lio::train_state st;
  lio::load_checkpoint(*lio::latest_checkpoint(dir.path()), resumed.model, resumed.opt, st, resumed.sched);
  CHECK(st.epoch == 2);
  CHECK(st.seed == 9);
  CHECK(st.step == 2 * 15);
  CHECK(resumed.opt.steps() == 2 * 15);
  auto hist = resumed.fit(train, val, 3, st.epoch);
  REQUIRE(hist.history.size() == 1);
  CHECK(hist.history[0].epoch == 3);
  CHECK(param_bits(resumed.model) == param_bits(straight.model));
  CHECK(resumed.state() == straight.state()); // optimizer moments, step, lr, dropout counter, scheduler

  // and both go on identically (the scheduler's restored lr0 and epoch matter here)
  straight.fit(train, val, 4, 3);
  resumed.fit(train, val, 4, 3);
  CHECK(resumed.state() == straight.state());

  // The comparison would notice a piece of state that is not restored:
  auto const path = dir / "ckpt-epoch-0002.safetensors";
  run ref(1);
  ref.fit(train, val, 3);
  {
    run r(1234);
    lio::load_checkpoint(path, r.model, r.opt, st, r.sched);
    r.model.drop.calls = 0; // the dropout masks would repeat those of epoch 1
    r.fit(train, val, 3, 2);
    CHECK(param_bits(r.model) != param_bits(ref.model));
  }
  {
    run r(1234);
    lio::load_checkpoint(path, r.model, r.opt, st, r.sched);
    r.sched.for_each_state([](std::string_view name, auto& v) { // the scheduler would restart
      if (name == "epoch") v = 0;
    });
    r.fit(train, val, 3, 2);
    CHECK(r.state() != ref.state()); // the lr after epoch 3 differs
  }
  {
    run r(1234);
    lio::load_checkpoint(path, r.model, r.opt, st, r.sched);
    r.opt.set_steps(0); // Adam's bias correction would restart
    r.fit(train, val, 3, 2);
    CHECK(param_bits(r.model) != param_bits(ref.model));
  }
}

TEST_CASE("checkpointer: every N epochs, keeps the last K files, names them by epoch",
          "[io][checkpoint][train]") {
  using namespace ckpt_resume_test;
  io_test::scratch_dir dir;
  auto const train = blobs(96, 3);
  auto const sub = dir / "ckpt";
  std::filesystem::create_directories(sub);
  std::ofstream(sub / "ckpt-epoch-notes.txt") << "not a checkpoint";
  std::ofstream(sub / "other-0001.safetensors") << "not ours";

  net m = make_net(1);
  lp::optim::sgd opt{m, {.lr = 0.05, .momentum = 0.9}};
  lio::checkpointer ckpt(m, opt, {.dir = sub, .every = 2, .keep_last = 2}, 4);
  tr::fit(m, opt, lp::loss::cross_entropy, train,
          {.epochs = 7, .batch = 32, .seed = 4, .display = tr::progress::none, .on_checkpoint = ckpt});
  auto files = lio::list_checkpoints(sub);
  REQUIRE(files.size() == 2);
  CHECK(files[0].first == 4);
  CHECK(files[1].first == 6);
  CHECK(lio::latest_checkpoint(sub)->filename() == "ckpt-epoch-0006.safetensors");
  CHECK(std::filesystem::exists(sub / "ckpt-epoch-notes.txt"));
  CHECK(std::filesystem::exists(sub / "other-0001.safetensors"));
  CHECK(lio::checkpoint_path("d", 3) == std::filesystem::path("d/ckpt-epoch-0003.safetensors"));
  CHECK(lio::checkpoint_path("d", 12345, "run-").filename() == "run-12345.safetensors");

  net r = make_net(2);
  lp::optim::sgd ro{r, {.lr = 0.05, .momentum = 0.9}};
  lio::train_state st;
  lio::load_checkpoint(*lio::latest_checkpoint(sub), r, ro, st);
  CHECK(st.epoch == 6);
  CHECK(st.step == 6 * 3);
  CHECK(st.seed == 4);

  // keep_last = 0 keeps everything; a checkpoint is written even when on_epoch stops training
  auto all = dir / "all";
  lio::checkpointer keep_all(m, opt, {.dir = all, .every = 1, .keep_last = 0});
  tr::fit(m, opt, lp::loss::cross_entropy, train,
          {.epochs = 9,
           .batch = 32,
           .display = tr::progress::none,
           .on_epoch = [](tr::epoch_stats const& s) { return s.epoch < 3; },
           .on_checkpoint = keep_all});
  CHECK(lio::list_checkpoints(all).size() == 3);
  CHECK(!lio::latest_checkpoint(dir / "none").has_value());
  CHECK_THROWS_AS(lio::checkpointer(m, opt, {.every = 0}), lepton::value_error);
}
