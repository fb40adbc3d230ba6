// dist::fit's options under `mpirun -np N` (N = 1, 2, ...): what differs from train::fit, option by
// option (see the file comment of <lepton/dist/fit.hpp>): progress and logs on rank 0 only, the
// statistics reduced before anyone sees them (the same history on every rank), the collective stop
// of on_epoch, on_checkpoint on rank 0 with its failure raised on every rank; and, with 1 rank, the
// same statistics and text as train::fit. A small model, so that it runs in seconds.
// Exits non-zero (on every rank) on a failure.
//
//   mpirun -np 2 test_dist_fit [--tmp DIR]
#include "dist_util.hpp"

#include <bit>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>

using namespace dist_test;

namespace {

struct small {
  lp::nn::linear<784, 10> fc;
  auto operator()(auto const& x) const { return fc(x); }
};

std::string slurp(std::filesystem::path const& p) {
  std::ifstream f(p);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

/// Every rank holds the same bits as rank 0.
bool same_on_every_rank(lp::dist::communicator const& c, double v) {
  std::uint64_t const mine = std::bit_cast<std::uint64_t>(v);
  return lp::dist::all_ranks(c, lp::dist::broadcast_value(c, mine) == mine);
}

/// The epoch lines without their timing part ("  0.01 s  12345 samples/s"), which differs between
/// runs.
std::string without_timing(std::string const& s) {
  return std::regex_replace(s, std::regex("  [0-9.]+ s  [0-9]+ samples/s"), "  T s  S samples/s");
}

} // namespace

int main(int argc, char** argv) {
  lp::dist::environment env(argc, argv);
  return lp::dist::run_or_abort([&]() -> int {
    auto& c = env.world();
    // A rank that leaves the loop alone (on_epoch not collective) leaves the others waiting: fail
    // within seconds, not at the 300 s default.
    c.set_timeout(lp::dist::timeout_from_seconds(20));
    lp::set_num_threads(1);
    std::filesystem::path tmp = std::filesystem::temp_directory_path();
    for (int i = 1; i + 1 < argc; ++i)
      if (std::strcmp(argv[i], "--tmp") == 0) tmp = argv[i + 1];
    int const N = c.size(), me = c.rank();
    std::string const ranks_note = "  (" + std::to_string(N) + " ranks)";
    auto const dir =
        tmp / ("lepton_dist_fit_" +
               std::to_string(lp::dist::broadcast_value<std::uint64_t>(
                   c, std::uint64_t(std::chrono::steady_clock::now().time_since_epoch().count()))));
    lp::dist::on_root(c, [&] { std::filesystem::create_directories(dir); });
    lp::dist::barrier(c);
    auto const train = synthetic(640, 21), val = synthetic(200, 22);
    auto make = [](small& m) { return lp::optim::sgd<float>{m, {.lr = 0.05}}; };

    // ---- Progress and logs: rank 0 only; each rank names its own files, only rank 0's appear.
    {
      small m;
      lp::nn::init(m, lp::init::kaiming_uniform{}, 3 + std::uint64_t(me)); // rank 0's weights win
      auto opt = make(m);
      std::ostringstream out;
      auto const csv = dir / ("log" + std::to_string(me) + ".csv");
      auto const jsonl = dir / ("log" + std::to_string(me) + ".jsonl");
      std::size_t epochs_seen = 0;
      auto h = lp::dist::fit(c, m, opt, lp::loss::cross_entropy, train, val,
                             {.epochs = 3,
                              .batch = 64,
                              .seed = 5,
                              .display = lp::train::progress::lines,
                              .out = &out,
                              .log_csv = csv.string(),
                              .log_jsonl = jsonl.string(),
                              .on_epoch = [&](lp::train::epoch_stats const&) { return ++epochs_seen > 0; }});
      DIST_CHECK(h.history.size() == 3 && epochs_seen == 3, "history %zu, on_epoch %zu", h.history.size(),
                 epochs_seen);
      for (auto const& st : h.history) {
        DIST_CHECK(same_on_every_rank(c, st.train_loss) && same_on_every_rank(c, st.train_accuracy) &&
                       same_on_every_rank(c, st.val_loss) && same_on_every_rank(c, st.val_accuracy) &&
                       same_on_every_rank(c, st.seconds) && same_on_every_rank(c, st.samples_per_s),
                   "epoch %zu: the statistics differ between ranks", st.epoch);
        DIST_CHECK(std::isfinite(st.train_loss) && std::isfinite(st.val_accuracy), "epoch %zu: not finite",
                   st.epoch);
      }
      std::string const text = out.str();
      if (me == 0) {
        std::size_t lines = 0;
        for (std::size_t p = 0; (p = text.find(ranks_note + "\n", p)) != std::string::npos; ++p) ++lines;
        DIST_CHECK(lines == 3, "rank 0 printed %zu epoch lines ending in '%s':\n%s", lines,
                   ranks_note.c_str(), text.c_str());
        DIST_CHECK(text.find("epoch 3/3  loss ") != std::string::npos &&
                       text.find("val_acc") != std::string::npos,
                   "rank 0's progress:\n%s", text.c_str());
        std::string const c0 = slurp(csv), j0 = slurp(jsonl);
        DIST_CHECK(c0.starts_with("epoch,train_loss,train_accuracy,val_loss,val_accuracy,seconds,"
                                  "samples_per_s,lr\n1,"),
                   "CSV log:\n%s", c0.c_str());
        DIST_CHECK(std::count(c0.begin(), c0.end(), '\n') == 4, "CSV log lines:\n%s", c0.c_str());
        std::string const tail = ",\"ranks\":" + std::to_string(N) + "}\n";
        std::size_t entries = 0;
        for (std::size_t p = 0; (p = j0.find(tail, p)) != std::string::npos; ++p) ++entries;
        DIST_CHECK(entries == 3 && j0.starts_with("{\"epoch\":1,\"train_loss\":"), "JSONL log:\n%s",
                   j0.c_str());
      } else {
        DIST_CHECK(text.empty(), "rank %d printed:\n%s", me, text.c_str());
        DIST_CHECK(!std::filesystem::exists(csv) && !std::filesystem::exists(jsonl), "rank %d wrote its logs",
                   me);
      }

      // 1 rank: the statistics of train::fit bit for bit, and the same text plus the rank count.
      if (N == 1) {
        small s;
        lp::nn::init(s, lp::init::kaiming_uniform{}, 3);
        auto sopt = make(s);
        std::ostringstream sout;
        auto sh = lp::train::fit(
            s, sopt, lp::loss::cross_entropy, train, val,
            {.epochs = 3, .batch = 64, .seed = 5, .display = lp::train::progress::lines, .out = &sout});
        DIST_CHECK(sh.history.size() == 3, "train::fit history");
        for (std::size_t e = 0; e < 3 && e < sh.history.size(); ++e) {
          auto const &a = h.history[e], &b = sh.history[e];
          DIST_CHECK(a.train_loss == b.train_loss && a.train_accuracy == b.train_accuracy &&
                         a.val_loss == b.val_loss && a.val_accuracy == b.val_accuracy && a.lr == b.lr,
                     "epoch %zu: dist %.17g %.17g %.17g %.17g, train %.17g %.17g %.17g %.17g", e,
                     a.train_loss, a.train_accuracy, a.val_loss, a.val_accuracy, b.train_loss,
                     b.train_accuracy, b.val_loss, b.val_accuracy);
        }
        std::string expect = without_timing(sout.str());
        for (std::size_t p = 0; (p = expect.find(" samples/s\n", p)) != std::string::npos;
             p += ranks_note.size() + 11)
          expect.insert(p + 10, ranks_note);
        DIST_CHECK(without_timing(text) == expect, "dist::fit printed\n%s\ntrain::fit (+ rank count)\n%s",
                   text.c_str(), expect.c_str());
      }
    }

    // ---- on_epoch: false on the last rank only, in epoch 2: every rank stops after epoch 2 (the
    //      checkpoint of that epoch is still written). on_checkpoint runs on rank 0 only.
    {
      small m;
      lp::nn::init(m, lp::init::kaiming_uniform{}, 4);
      auto opt = make(m);
      std::size_t calls = 0, checkpoints = 0;
      auto h = lp::dist::fit(c, m, opt, lp::loss::cross_entropy, train,
                             {.epochs = 5,
                              .batch = 64,
                              .display = lp::train::progress::none,
                              .on_epoch =
                                  [&](lp::train::epoch_stats const& st) {
        ++calls;
        return !(me == N - 1 && st.epoch == 2);
                              },
                              .on_checkpoint = [&](lp::train::epoch_stats const&) { ++checkpoints; }});
      DIST_CHECK(h.history.size() == 2 && !h.stopped_early, "history %zu", h.history.size());
      DIST_CHECK(calls == 2, "on_epoch ran %zu times", calls);
      DIST_CHECK(checkpoints == (me == 0 ? 2u : 0u), "on_checkpoint ran %zu times on rank %d", checkpoints,
                 me);
    }

    // ---- Early stopping decides the same on every rank (the monitored loss is reduced).
    {
      small m;
      lp::nn::init(m, lp::init::kaiming_uniform{}, 4);
      auto opt = make(m);
      auto h = lp::dist::fit(c, m, opt, lp::loss::cross_entropy, train,
                             {.epochs = 6,
                              .batch = 64,
                              .display = lp::train::progress::none,
                              .early_stop = lp::train::early_stopping{.patience = 2, .min_delta = 1e9}});
      DIST_CHECK(h.stopped_early && h.history.size() == 3, "stopped_early %d after %zu epochs",
                 int(h.stopped_early), h.history.size());
    }

    // ---- A failing on_checkpoint (on rank 0) is raised on every rank, after the first epoch.
    {
      small m;
      lp::nn::init(m, lp::init::kaiming_uniform{}, 4);
      auto opt = make(m);
      std::string msg;
      try {
        lp::dist::fit(c, m, opt, lp::loss::cross_entropy, train,
                      {.epochs = 3,
                       .batch = 64,
                       .display = lp::train::progress::none,
                       .on_checkpoint = [&](lp::train::epoch_stats const& st) {
                         throw lp::io_error("disk full in epoch " + std::to_string(st.epoch));
                       }});
      } catch (lp::error const& e) {
        msg = e.what();
      }
      DIST_CHECK(msg.find("disk full in epoch 1") != std::string::npos, "rank %d: '%s'", me, msg.c_str());
      DIST_CHECK(me == 0 || msg.find("on_checkpoint failed on rank 0") != std::string::npos, "rank %d: '%s'",
                 me, msg.c_str());
      DIST_CHECK(opt.steps() == 10, "%llu steps before the failure", (unsigned long long)opt.steps());
    }

    // ---- A log file rank 0 cannot open is an error on every rank, before any training (it used to
    //      throw on rank 0 only, and the others waited in the next collective until the timeout).
    {
      small m;
      auto opt = make(m);
      std::string msg;
      try {
        lp::dist::fit(c, m, opt, lp::loss::cross_entropy, train,
                      {.epochs = 1,
                       .batch = 64,
                       .display = lp::train::progress::none,
                       .log_csv = "/nonexistent-dir/lepton/log.csv"});
      } catch (lp::error const& e) {
        msg = e.what();
      }
      DIST_CHECK(msg.find("cannot open the CSV log") != std::string::npos, "rank %d: '%s'", me, msg.c_str());
      DIST_CHECK(me == 0 || msg.find("opening the training logs failed on rank 0") != std::string::npos,
                 "rank %d: '%s'", me, msg.c_str());
      DIST_CHECK(opt.steps() == 0, "%llu steps despite the failure", (unsigned long long)opt.steps());
    }

    // ---- Bad options: dist::fit's own message, before any collective.
    {
      small m;
      auto opt = make(m);
      std::string msg;
      try {
        lp::dist::fit(c, m, opt, lp::loss::cross_entropy, train, {.batch = 0});
      } catch (lp::value_error const& e) {
        msg = e.what();
      }
      DIST_CHECK(msg.find("dist::fit: batch must be > 0") != std::string::npos, "'%s'", msg.c_str());
    }

    lp::dist::barrier(c);
    lp::dist::on_root(c, [&] { std::filesystem::remove_all(dir); });
    bool const ok = lp::dist::all_ranks(c, dist_test::failures == 0);
    lp::dist::log(c) << (ok ? "test_dist_fit: all checks passed\n" : "test_dist_fit: FAILED\n");
    return ok ? 0 : 1;
  });
}
