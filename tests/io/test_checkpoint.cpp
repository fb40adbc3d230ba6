// Models and checkpoints: save_model/load_model, save_checkpoint/load_checkpoint for every optimizer,
// and their validation (truncation, bit flips, other architectures, missing tensors, bad values):
// every failure is a typed exception and leaves model, optimizer and train state unchanged.
#include <catch2/catch.hpp>

#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "io_test_util.hpp"
#include "test_checkpoint_util.hpp"

namespace ckpt_test {

/// A model with the same names but other shapes (another architecture).
struct wide_net {
  lp::nn::linear<4, 8> fc1;
  lp::nn::dropout drop{.p = 0.25, .seed = 3};
  lp::nn::linear<8, 3> fc2;
  static constexpr std::array<char const*, 3> lepton_names{"fc1", "drop", "fc2"};
  auto operator()(auto const& x) const { return fc2(drop(lp::tanh(fc1(x)))); }
};

/// A model with a buffer (a tensor member that is not a parameter, like batch_norm's running statistics)
/// and an array of layers.
struct buffered {
  lp::nn::linear<4, 3> fc;
  lp::tensor<float, 3> running_mean{};
  std::array<lp::nn::linear<3, 3>, 2> blocks;
  static constexpr std::array<char const*, 3> lepton_names{"fc", "running_mean", "blocks"};
};

/// A copy of `m` without the tensor `drop`, with `replace` swapped in (or appended) under its name.
inline lio::tensor_map edited(lio::tensor_map const& m, std::string const& drop, std::string const& name = {},
                              lio::dyn_tensor const* replace = nullptr) {
  lio::tensor_map out;
  out.metadata = m.metadata;
  bool replaced = false;
  for (auto const& [n, t] : m) {
    if (n == drop) continue;
    if (replace && n == name) {
      out.insert(n, *replace);
      replaced = true;
    } else {
      out.insert(n, t);
    }
  }
  if (replace && !replaced) out.insert(name, *replace);
  return out;
}

} // namespace ckpt_test

TEST_CASE("save_model / load_model: reflected names, bit-identical round trip, checkpoints load too",
          "[io][checkpoint]") {
  using namespace ckpt_test;
  io_test::scratch_dir dir;
  net a = make_net(1), b = make_net(2);
  lio::save_model(dir / "m.safetensors", a, {{"note", "hello"}});
  auto map = lio::load_safetensors(dir / "m.safetensors");
  CHECK(map.names() == std::vector<std::string>{"fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"});
  CHECK(map.at("fc1.weight").shape() == std::vector<std::size_t>{4, 16}); // (in, out)
  CHECK(map.at("fc2.bias").shape() == std::vector<std::size_t>{3});
  CHECK(map.metadata.at("note") == "hello");
  REQUIRE(param_bits(a) != param_bits(b));
  lio::load_model(dir / "m.safetensors", b);
  CHECK(param_bits(a) == param_bits(b));

  // positional names for a sequential, like PyTorch's Sequential
  lp::nn::sequential<lp::nn::linear<4, 3>, lp::nn::relu, lp::nn::linear<3, 2>> seq;
  lio::save_model(dir / "seq.safetensors", seq);
  CHECK(lio::load_safetensors(dir / "seq.safetensors").names() ==
        std::vector<std::string>{"0.weight", "0.bias", "2.weight", "2.bias"});

  // load_model reads the parameters of a checkpoint and ignores its optimizer/training entries
  auto data = blobs(96, 7);
  lp::optim::adam opt{a, {.lr = 0.01}};
  train_steps(a, opt, data, 3);
  lio::save_checkpoint(dir / "c.safetensors", a, opt, {.epoch = 1, .step = 3});
  net c = make_net(3);
  lio::load_model(dir / "c.safetensors", c);
  CHECK(param_bits(c) == param_bits(a));
}

TEST_CASE("models and checkpoints hold buffers (tensor members that are not parameters)",
          "[io][checkpoint]") {
  using namespace ckpt_test;
  io_test::scratch_dir dir;
  buffered a, b;
  lp::nn::init(a, lp::init::xavier_uniform{}, 1);
  lp::nn::init(b, lp::init::xavier_uniform{}, 2);
  for (std::size_t i = 0; i < 3; ++i) a.running_mean.data()[i] = 0.5f + float(i);
  lio::save_model(dir / "m.safetensors", a);
  CHECK(lio::load_safetensors(dir / "m.safetensors").names() ==
        std::vector<std::string>{"fc.weight", "fc.bias", "blocks.0.weight", "blocks.0.bias",
                                 "blocks.1.weight", "blocks.1.bias", "running_mean"});
  lio::load_model(dir / "m.safetensors", b);
  CHECK(b.running_mean.data()[2] == 2.5f);
  CHECK(b.blocks[1].weight.value.data()[4] == a.blocks[1].weight.value.data()[4]);

  lp::optim::sgd oa{a, {.lr = 0.1, .momentum = 0.9}}, ob{b, {.lr = 0.1, .momentum = 0.9}};
  a.running_mean.data()[0] = -1.0f;
  lio::save_checkpoint(dir / "c.safetensors", a, oa, {});
  lio::train_state st;
  lio::load_checkpoint(dir / "c.safetensors", b, ob, st);
  CHECK(b.running_mean.data()[0] == -1.0f);
}

TEST_CASE(
    "model checkpoints: load_model validates names, dtypes and shapes, and the model is unchanged on failure",
    "[io][checkpoint]") {
  using namespace ckpt_test;
  io_test::scratch_dir dir;
  net src = make_net(1), m = make_net(2);
  auto const before = param_bits(m);
  lio::save_model(dir / "m.safetensors", src);
  auto const map = lio::load_safetensors(dir / "m.safetensors");

  auto fails = [&](std::filesystem::path const& p, std::string const& msg, lio::model_load_options o = {}) {
    INFO(p.filename().string() << " / " << msg);
    try {
      lio::load_model(p, m, o);
      FAIL("no exception");
    } catch (lepton::io_error const& e) {
      CHECK_THAT(e.what(), Catch::Contains(msg));
    }
    CHECK(param_bits(m) == before);
  };

  wide_net w;
  lp::nn::init(w, lp::init::xavier_uniform{}, 3);
  lio::save_model(dir / "wide.safetensors", w);
  fails(dir / "wide.safetensors", "tensor 'fc1.weight': expected F32 (4, 16), file has F32 (4, 8)");

  lio::save_safetensors(dir / "missing.safetensors", edited(map, "fc2.bias"));
  fails(dir / "missing.safetensors", "missing tensor 'fc2.bias'");
  lio::dyn_tensor extra(lio::dtype::f32, {2});
  lio::save_safetensors(dir / "extra.safetensors", edited(map, "", "extra", &extra));
  fails(dir / "extra.safetensors", "unexpected tensor 'extra'");
  lio::dyn_tensor f64(lio::dtype::f64, {16});
  lio::save_safetensors(dir / "dtype.safetensors", edited(map, "", "fc1.bias", &f64));
  fails(dir / "dtype.safetensors", "tensor 'fc1.bias': expected F32 (16), file has F64 (16)");
  fails(dir / "nothing-here.safetensors", "cannot open");
  fails(dir.path(), "is a directory");

  // truncated at every offset
  auto const bytes = io_test::read_bytes(dir / "m.safetensors");
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    io_test::write_bytes(dir / "t.safetensors", std::span(bytes.data(), n));
    REQUIRE_THROWS_AS(lio::load_model(dir / "t.safetensors", m), lepton::format_error);
  }
  REQUIRE(param_bits(m) == before);

  // relaxed matching
  lio::load_model(dir / "extra.safetensors", m, {.allow_unexpected = true});
  CHECK(param_bits(m) == param_bits(src));
  net partial = make_net(4);
  partial.fc2.bias.value.fill(7.0f);
  lio::load_model(dir / "missing.safetensors", partial, {.allow_missing = true});
  CHECK(std::memcmp(partial.fc1.weight.value.data(), src.fc1.weight.value.data(), 64 * sizeof(float)) == 0);
  CHECK(partial.fc2.bias.value.data()[2] == 7.0f);
}

TEST_CASE(
    "checkpoints restore sgd, adam, adamw and rmsprop state bit for bit, and training continues identically",
    "[io][checkpoint]") {
  using namespace ckpt_test;
  io_test::scratch_dir dir;
  auto const data = blobs(96, 7);
  auto check = [&](auto make_opt, std::string const& what, std::string const& kinds) {
    INFO(what);
    net a = make_net(1);
    auto oa = make_opt(a);
    train_steps(a, oa, data, 5);
    oa.set_lr(oa.lr() * 0.5); // as a scheduler would
    REQUIRE(a.drop.calls == 5);
    lio::save_checkpoint(dir / "c.safetensors", a, oa,
                         {.epoch = 4, .step = 5, .seed = ~std::uint64_t{0}, .metadata = {{"run", "abc"}}});
    CHECK(lio::load_safetensors(dir / "c.safetensors").metadata.at("optimizer_state") == kinds);

    net b = make_net(2);
    auto ob = make_opt(b);
    lio::train_state st;
    lio::load_checkpoint(dir / "c.safetensors", b, ob, st);
    CHECK(take(a, oa) == take(b, ob));
    CHECK(st.epoch == 4);
    CHECK(st.step == 5);
    CHECK(st.seed == ~std::uint64_t{0}); // stored as I64 with the same bits
    CHECK(st.metadata == std::map<std::string, std::string>{{"run", "abc"}});

    train_steps(a, oa, data, 3);
    train_steps(b, ob, data, 3);
    CHECK(take(a, oa) == take(b, ob));
  };
  check([](net& m) { return lp::optim::sgd{m, {.lr = 0.05}}; }, "sgd", "");
  check(
      [](net& m) {
    return lp::optim::sgd{m, {.lr = 0.05, .momentum = 0.9, .nesterov = true}};
      },
      "sgd nesterov", "velocity");
  check([](net& m) { return lp::optim::adam{m, {.lr = 0.01}}; }, "adam", "m,v");
  check([](net& m) { return lp::optim::adamw{m, {.lr = 0.01, .weight_decay = 0.1}}; }, "adamw", "m,v");
  check(
      [](net& m) {
    return lp::optim::rmsprop{m, {.lr = 0.01, .momentum = 0.5}};
      },
      "rmsprop", "square_avg,momentum_buffer");

  // the tensors Python sees
  auto map = lio::load_safetensors(dir / "c.safetensors");
  CHECK(map.at("optim.square_avg.fc1.weight").shape() == std::vector<std::size_t>{4, 16});
  CHECK(map.at("optim.step").shape().empty());
  CHECK(map.at("optim.step").values<std::int64_t>()[0] == 5);
  CHECK(map.at("train.rng_calls").values<std::int64_t>()[0] == 5);
  CHECK(map.at("train.rng_seed").values<std::int64_t>()[0] == 3);
  CHECK(map.metadata.at("format") == "lepton.checkpoint");
  CHECK(map.metadata.at("format_version") == "1");
}

TEST_CASE("scheduler state is saved and restored by checkpoints (reduce_on_plateau, step_lr)",
          "[io][checkpoint]") {
  using namespace ckpt_test;
  io_test::scratch_dir dir;
  net a = make_net(1), b = make_net(2);
  lp::optim::adam oa{a, {.lr = 0.01}}, ob{b, {.lr = 0.03}};
  lp::optim::reduce_on_plateau pa{oa, 0.5, 1}, pb{ob, 0.5, 1};
  for (double metric : {1.0, 0.5, 0.7, 0.8, 0.9}) pa.step(metric); // best 0.5, lr halved once
  lio::save_checkpoint(dir / "p.safetensors", a, oa, {}, pa);
  lio::train_state st;
  lio::load_checkpoint(dir / "p.safetensors", b, ob, st, pb);
  CHECK(take(a, oa, pa) == take(b, ob, pb));
  for (double metric : {0.6, 0.6, 0.4}) {
    pa.step(metric);
    pb.step(metric);
  }
  CHECK(oa.lr() == ob.lr());

  lp::optim::step_lr sa{oa, 2, 0.5}, sb{ob, 3, 0.1};
  sa.step();
  sa.step();
  sa.step();
  lio::save_checkpoint(dir / "s.safetensors", a, oa, {}, sa);
  lio::load_checkpoint(dir / "s.safetensors", b, ob, st, sb); // restores lr0 and the epoch, not step_size
  CHECK(take(a, oa, sa).sched == take(b, ob, sb).sched);
}

TEST_CASE("load_checkpoint: truncation, bit flips, other architectures, missing or wrong tensors are typed "
          "errors and change nothing",
          "[io][checkpoint]") {
  using namespace ckpt_test;
  io_test::scratch_dir dir;
  auto const data = blobs(96, 7);
  net a = make_net(1);
  lp::optim::adam oa{a, {.lr = 0.01}};
  lp::optim::cosine_lr sa{oa, 5};
  train_steps(a, oa, data, 3);
  sa.step();
  lio::save_checkpoint(dir / "good.safetensors", a, oa, {.epoch = 1, .step = 3, .seed = 9}, sa);
  auto const good_map = lio::load_safetensors(dir / "good.safetensors");

  // the target: another state, which every failed load must leave alone
  net b = make_net(2);
  lp::optim::adam ob{b, {.lr = 0.02}};
  lp::optim::cosine_lr sb{ob, 5};
  train_steps(b, ob, data, 1);
  lio::train_state st{.epoch = 77};
  lio::save_checkpoint(dir / "before.safetensors", b, ob, {.epoch = 77}, sb);
  auto const before = take(b, ob, sb);
  auto const good = take(a, oa, sa);
  REQUIRE(before != good);

  auto unchanged = [&] {
    CHECK(take(b, ob, sb) == before);
    CHECK(st.epoch == 77);
  };
  auto fails = [&](std::filesystem::path const& p, std::string const& msg) {
    INFO(p.filename().string() << " / " << msg);
    try {
      lio::load_checkpoint(p, b, ob, st, sb);
      FAIL("no exception");
    } catch (lepton::io_error const& e) {
      CHECK_THAT(e.what(), Catch::Contains(msg));
    }
    unchanged();
  };
  auto save_map = [&](std::string const& name, lio::tensor_map const& m) {
    lio::save_safetensors(dir / name, m);
    return dir / name;
  };

  SECTION("file-level") {
    fails(dir / "nothing-here.safetensors", "cannot open");
    fails(dir.path(), "is a directory");
    net m = make_net(5);
    lio::save_model(dir / "model.safetensors", m);
    fails(dir / "model.safetensors", "not a lepton checkpoint");
    auto v2 = good_map;
    v2.metadata["format_version"] = "2";
    fails(save_map("v2.safetensors", v2), "unsupported checkpoint format_version '2'");
  }
  SECTION("another architecture: the error names the parameter and both shapes") {
    wide_net w;
    lp::nn::init(w, lp::init::xavier_uniform{}, 3);
    lp::optim::adam ow{w};
    lp::optim::cosine_lr sw{ow, 5};
    lio::save_checkpoint(dir / "wide.safetensors", w, ow, {}, sw);
    fails(dir / "wide.safetensors", "tensor 'fc1.weight': expected F32 (4, 16), file has F32 (4, 8)");
  }
  SECTION("another optimizer") {
    lp::optim::sgd os{a, {.lr = 0.1, .momentum = 0.9}};
    lio::save_checkpoint(dir / "sgd.safetensors", a, os, {});
    fails(dir / "sgd.safetensors", "holds optimizer state (velocity) but this optimizer has (m,v)");
  }
  SECTION("missing, unexpected and mistyped tensors; invalid values") {
    fails(save_map("no-v.safetensors", edited(good_map, "optim.v.fc2.bias")),
          "missing tensor 'optim.v.fc2.bias'");
    fails(save_map("no-step.safetensors", edited(good_map, "optim.step")), "missing tensor 'optim.step'");
    lio::save_checkpoint(dir / "no-sched.safetensors", a, oa, {});
    fails(dir / "no-sched.safetensors", "missing tensors 'sched.lr0', 'sched.epoch'");
    lio::dyn_tensor extra(lio::dtype::f32, {2});
    fails(save_map("extra.safetensors", edited(good_map, "", "optim.extra", &extra)),
          "unexpected tensor 'optim.extra'");
    lio::dyn_tensor f64(lio::dtype::f64, {});
    fails(save_map("dtype.safetensors", edited(good_map, "", "optim.step", &f64)),
          "tensor 'optim.step': expected I64 (), file has F64 ()");
    lio::dyn_tensor two(lio::dtype::i64, {2});
    fails(save_map("rng.safetensors", edited(good_map, "", "train.rng_calls", &two)),
          "tensor 'train.rng_calls': expected I64 (1), file has I64 (2)");
    lio::dyn_tensor nan_lr(lio::dtype::f64, {});
    nan_lr.values<double>()[0] = std::numeric_limits<double>::quiet_NaN();
    fails(save_map("nan-lr.safetensors", edited(good_map, "", "optim.lr", &nan_lr)), "learning rate");
    lio::dyn_tensor neg_lr(lio::dtype::f64, {});
    neg_lr.values<double>()[0] = -1;
    fails(save_map("neg-lr.safetensors", edited(good_map, "", "optim.lr", &neg_lr)), "learning rate");
    lio::dyn_tensor wide(lio::dtype::f32, {4, 8});
    fails(save_map("m-shape.safetensors", edited(good_map, "", "optim.m.fc1.weight", &wide)),
          "tensor 'optim.m.fc1.weight': expected F32 (4, 16), file has F32 (4, 8)");
  }
  SECTION("truncated at every offset") {
    auto const bytes = io_test::read_bytes(dir / "good.safetensors");
    for (std::size_t n = 0; n < bytes.size(); ++n) {
      io_test::write_bytes(dir / "t.safetensors", std::span(bytes.data(), n));
      REQUIRE_THROWS_AS(lio::load_checkpoint(dir / "t.safetensors", b, ob, st, sb), lepton::format_error);
    }
    unchanged();
  }
  SECTION("every single-bit flip in the header: a typed error and no change, or a consistent load") {
    auto const bytes = io_test::read_bytes(dir / "good.safetensors");
    std::uint64_t header = 0;
    for (int i = 7; i >= 0; --i) header = header << 8 | std::to_integer<std::uint64_t>(bytes[std::size_t(i)]);
    std::size_t loaded = 0, rejected = 0;
    for (std::size_t bit = 0; bit < (8 + header) * 8; ++bit) {
      auto flipped = bytes;
      flipped[bit / 8] ^= std::byte(1u << (bit % 8));
      io_test::write_bytes(dir / "f.safetensors", flipped);
      try {
        lio::load_checkpoint(dir / "f.safetensors", b, ob, st, sb);
        ++loaded; // e.g. a flipped metadata letter or JSON whitespace: the state is the checkpoint's
        REQUIRE(take(b, ob, sb) == good);
        lio::load_checkpoint(dir / "before.safetensors", b, ob, st, sb);
        st.epoch = 77;
      } catch (lepton::io_error const&) {
        ++rejected;
        REQUIRE(take(b, ob, sb) == before);
        REQUIRE(st.epoch == 77);
      }
    }
    INFO("loaded " << loaded << ", rejected " << rejected);
    CHECK(rejected > loaded);
  }
  // the good file loads, after all that
  lio::load_checkpoint(dir / "good.safetensors", b, ob, st, sb);
  CHECK(take(b, ob, sb) == good);
  CHECK(st.epoch == 1);
  CHECK(st.seed == 9);
}

TEST_CASE("save_checkpoint: failed saves keep the previous file, misuse is a value_error",
          "[io][checkpoint]") {
  using namespace ckpt_test;
  io_test::scratch_dir dir;
  auto const data = blobs(96, 7);
  net a = make_net(1);
  lp::optim::adam oa{a, {.lr = 0.01}};
  lio::save_checkpoint(dir / "c.safetensors", a, oa, {.epoch = 1});
  auto const first = take(a, oa);
  train_steps(a, oa, data, 2);
  {
    lio::testing::scoped_write_faults faults({.fail_after_bytes = 100});
    CHECK_THROWS_AS(lio::save_checkpoint(dir / "c.safetensors", a, oa, {.epoch = 2}), lepton::io_error);
  }
  CHECK(dir.count_prefix(".c.safetensors.lepton-tmp.") == 0);
  net b = make_net(2);
  lp::optim::adam ob{b};
  lio::train_state st;
  lio::load_checkpoint(dir / "c.safetensors", b, ob, st);
  CHECK(take(b, ob) == first);
  CHECK(st.epoch == 1);

  CHECK_THROWS_AS(lio::save_checkpoint("/dev/full", a, oa, {}), lepton::io_error);
  CHECK_THROWS_WITH(lio::save_checkpoint(dir / "x.safetensors", a, oa, {.metadata = {{"format", "mine"}}}),
                    Catch::Contains("metadata key 'format' is reserved"));
  wide_net w;
  lp::optim::adam ow{w};
  CHECK_THROWS_AS(lio::save_checkpoint(dir / "x.safetensors", a, ow, {}), lepton::value_error);
  CHECK_THROWS_WITH(lio::load_checkpoint(dir / "c.safetensors", a, ow, st),
                    Catch::Contains("was the optimizer built for this model?"));
  CHECK(!std::filesystem::exists(dir / "x.safetensors"));
}

// every optimizer and scheduler of lepton can be checkpointed
static_assert(lepton::optim::stateful_optimizer<lepton::optim::sgd<float>>);
static_assert(lepton::optim::stateful_optimizer<lepton::optim::adam<double>>);
static_assert(lepton::optim::stateful_optimizer<lepton::optim::adamw<float>>);
static_assert(lepton::optim::stateful_optimizer<lepton::optim::rmsprop<float>>);
static_assert(lepton::optim::stateful_scheduler<lepton::optim::step_lr<lepton::optim::sgd<float>>>);
static_assert(lepton::optim::stateful_scheduler<lepton::optim::exponential_lr<lepton::optim::sgd<float>>>);
static_assert(lepton::optim::stateful_scheduler<lepton::optim::cosine_lr<lepton::optim::adam<float>>>);
static_assert(
    lepton::optim::stateful_scheduler<lepton::optim::reduce_on_plateau<lepton::optim::adam<float>>>);
