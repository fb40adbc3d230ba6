// Exact resume through fit: 2 epochs + checkpoint, then fresh objects load it and run epoch 3: the
// parameters (and all other state) are bit-identical to 3 epochs straight. Also the checkpointer
// callback: every N epochs, keep the last K.
#include <catch2/catch.hpp>

#include <filesystem>
#include <fstream>
#include <map>
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

namespace ckpt_resume_test {
/// An old run's checkpoints of epochs 1 .. n in `dir` (today's naming, ckpt-epoch-0003.safetensors),
/// and each file's bytes.
inline std::map<std::uint64_t, std::vector<std::byte>> old_run(std::filesystem::path const& dir,
                                                               std::uint64_t n) {
  net m = make_net(77);
  lp::optim::sgd opt{m, {.lr = 0.05, .momentum = 0.9}};
  std::map<std::uint64_t, std::vector<std::byte>> bytes;
  for (std::uint64_t e = 1; e <= n; ++e) {
    auto const p = lio::checkpoint_path(dir, e);
    std::filesystem::create_directories(dir);
    lio::save_checkpoint(p, m, opt, {.epoch = e, .step = 3 * e, .seed = 77});
    bytes[e] = io_test::read_bytes(p);
  }
  return bytes;
}

/// The message of the lepton::value_error that f throws, else a note saying what happened.
template <class F> std::string value_error_message(F&& f) {
  try {
    f();
  } catch (lepton::value_error const& e) {
    return e.what();
  } catch (std::exception const& e) {
    return std::string("(not a value_error: ") + e.what() + ")";
  }
  return "(no exception)";
}

inline bool unchanged(std::filesystem::path const& dir,
                      std::map<std::uint64_t, std::vector<std::byte>> const& b) {
  for (auto const& [e, bytes] : b) {
    auto const p = lio::checkpoint_path(dir, e);
    if (!std::filesystem::exists(p) || io_test::read_bytes(p) != bytes) return false;
  }
  return true;
}
} // namespace ckpt_resume_test

TEST_CASE("checkpointer: a new run in the directory of an old run is refused before it writes or deletes",
          "[io][checkpoint][train]") {
  using namespace ckpt_resume_test;
  io_test::scratch_dir dir;
  auto const old = old_run(dir.path(), 5);
  auto const train = blobs(96, 3);
  net m = make_net(1);
  lp::optim::sgd opt{m, {.lr = 0.05, .momentum = 0.9}};

  // Before: the new run overwrote the old epoch 1, then pruned 1, 2 and 3 (its own file among them),
  // save() returned a path that did not exist and latest_checkpoint named the old run's epoch 5.
  CHECK_THAT(value_error_message([&] { lio::checkpointer(m, opt, {.dir = dir.path(), .keep_last = 2}, 4); }),
             Catch::Matchers::Contains(dir.path().string() +
                                       " holds checkpoints of another run (ckpt-epoch-0001.safetensors"
                                       " .. ckpt-epoch-0005.safetensors, 5 files)") &&
                 Catch::Matchers::Contains("start_epoch"));
  CHECK(unchanged(dir.path(), old));
  CHECK(lio::list_checkpoints(dir.path()).size() == 5);

  // Kept apart by a prefix, the new run shares the directory: its first save (epoch 1, the lowest)
  // exists, is the latest of its prefix and survives pruning; the old run is untouched.
  lio::checkpointer ckpt(m, opt, {.dir = dir.path(), .keep_last = 2, .prefix = "run2-epoch-"}, 4);
  auto const first = ckpt.save(1);
  CHECK(std::filesystem::exists(first));
  CHECK(lio::latest_checkpoint(dir.path(), "run2-epoch-") == first);
  tr::fit(m, opt, lp::loss::cross_entropy, train,
          {.epochs = 3,
           .start_epoch = 1,
           .batch = 32,
           .seed = 4,
           .display = tr::progress::none,
           .on_checkpoint = ckpt});
  auto const mine = lio::list_checkpoints(dir.path(), "run2-epoch-");
  REQUIRE(mine.size() == 2);
  CHECK(mine[0].first == 2);
  CHECK(mine[1].first == 3);
  CHECK(lio::latest_checkpoint(dir.path(), "run2-epoch-")->filename() == "run2-epoch-0003.safetensors");
  CHECK(unchanged(dir.path(), old));
}

TEST_CASE("checkpointer: a resumed run prunes its own earlier files, resuming from an older epoch is refused",
          "[io][checkpoint][train]") {
  using namespace ckpt_resume_test;
  io_test::scratch_dir dir;
  auto const old = old_run(dir.path(), 5);
  auto const train = blobs(96, 3);
  net m = make_net(1);
  lp::optim::sgd opt{m, {.lr = 0.05, .momentum = 0.9}};

  // Resuming from epoch 3 while epochs 4 and 5 exist would mix two continuations.
  CHECK_THAT(
      value_error_message([&] { lio::checkpointer(m, opt, {.dir = dir.path(), .start_epoch = 3}, 77); }),
      Catch::Matchers::Contains("holds checkpoints newer than epoch 3, where this run continues "
                                "(ckpt-epoch-0004.safetensors .. ckpt-epoch-0005.safetensors, 2 files)"));
  CHECK(unchanged(dir.path(), old));

  // Resume from the latest (a file of today's naming), continue to epoch 7 keeping 2 files.
  lio::train_state st;
  lio::load_checkpoint(*lio::latest_checkpoint(dir.path()), m, opt, st);
  REQUIRE(st.epoch == 5);
  lio::checkpointer ckpt(m, opt, {.dir = dir.path(), .keep_last = 2, .start_epoch = st.epoch}, st.seed);
  tr::fit(m, opt, lp::loss::cross_entropy, train,
          {.epochs = 7,
           .start_epoch = st.epoch,
           .batch = 32,
           .seed = st.seed,
           .display = tr::progress::none,
           .on_checkpoint = ckpt});
  auto const files = lio::list_checkpoints(dir.path());
  REQUIRE(files.size() == 2);
  CHECK(files[0].first == 6);
  CHECK(files[1].first == 7);
  CHECK(lio::latest_checkpoint(dir.path())->filename() == "ckpt-epoch-0007.safetensors");
  // fit saved through a copy of ckpt: the copies share the record of the run's files
  auto const again = ckpt.save(7);
  CHECK(std::filesystem::exists(again));
  CHECK(lio::list_checkpoints(dir.path()).size() == 2);
}

TEST_CASE("checkpointer: save refuses a later file or another run's file of its epoch, writing nothing",
          "[io][checkpoint][train]") {
  using namespace ckpt_resume_test;
  io_test::scratch_dir dir;
  net m = make_net(1);
  lp::optim::sgd opt{m, {.lr = 0.05, .momentum = 0.9}};
  lio::checkpointer ckpt(m, opt, {.dir = dir.path(), .keep_last = 2}, 4);
  auto const p1 = ckpt.save(1);

  // Another process saves epoch 4 into the same directory.
  auto const other = old_run(dir / "elsewhere", 4);
  std::filesystem::copy_file(lio::checkpoint_path(dir / "elsewhere", 4), lio::checkpoint_path(dir.path(), 4));
  CHECK_THAT(value_error_message([&] { ckpt.save(2); }),
             Catch::Matchers::Contains("cannot save epoch 2 as ckpt-epoch-0002.safetensors: the directory "
                                       "holds ckpt-epoch-0004.safetensors, which this run did not write"));
  CHECK_THROWS_AS(ckpt.save(4), lepton::value_error); // would overwrite the other run's epoch 4
  CHECK(!std::filesystem::exists(lio::checkpoint_path(dir.path(), 2)));
  CHECK(std::filesystem::exists(p1));
  CHECK(io_test::read_bytes(lio::checkpoint_path(dir.path(), 4)) == other.at(4));

  // Later epochs are fine; the other run's file is never pruned, this run's older ones are.
  ckpt.save(5);
  ckpt.save(6);
  auto const files = lio::list_checkpoints(dir.path());
  REQUIRE(files.size() == 3);
  CHECK(files[0].first == 4);
  CHECK(files[1].first == 5);
  CHECK(files[2].first == 6);
  // Going back in epochs would leave latest_checkpoint naming an older save.
  ckpt.save(7);
  CHECK_THAT(
      value_error_message([&] { ckpt.save(6); }),
      Catch::Matchers::Contains("holds ckpt-epoch-0007.safetensors, a later epoch that this run saved before "
                                "(saves must not go back in epochs"));
  CHECK(lio::list_checkpoints(dir.path()).size() == 3); // 4 (the other run's), 6 and 7
  CHECK(lio::latest_checkpoint(dir.path())->filename() == "ckpt-epoch-0007.safetensors");
}
