// Checkpoints and Python: lepton trains the Fashion-MNIST MLP of examples/fashion_mnist_mlp for a few
// Adam steps and saves a checkpoint and its logits for 16 test images; tests/io/checkpoint_interop.py
// (json + numpy only) reads the checkpoint by hand, decodes and normalises the same images from the IDX
// files, recomputes the logits (to 1e-5) and writes a model file by hand, which lepton loads and checks.
// Skipped with a warning when /usr/bin/python3, numpy or the data set is missing.
#include <catch2/catch.hpp>

#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>

#include <sys/wait.h>
#include <unistd.h>

#include "io_test_util.hpp"
#include <lepton/io.hpp>
#include <lepton/lepton.hpp>

namespace ckpt_interop_test {
namespace lp = lepton;
namespace lio = lepton::io;

/// The model of examples/fashion_mnist_mlp.
struct mlp {
  lp::nn::linear<784, 256> fc1;
  lp::nn::linear<256, 128> fc2;
  lp::nn::linear<128, 10> fc3;
  static constexpr std::array<char const*, 3> lepton_names{"fc1", "fc2", "fc3"};
  auto operator()(auto const& x) const { return fc3(lp::relu(fc2(lp::relu(fc1(x))))); }
};

inline int run(std::string const& cmd, std::string& out) {
  FILE* f = ::popen((cmd + " 2>&1").c_str(), "r");
  if (!f) return -1;
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, f)) out.append(buf, n);
  int status = ::pclose(f);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

using images = lp::tensor<float, lp::dyn, 784>;
using labels = lp::tensor<std::int32_t, lp::dyn>;

/// Rows [first, first + n) of a data set.
inline lp::data::dataset<images, labels> rows(lp::data::dataset<images, labels> const& d, std::size_t first,
                                              std::size_t n) {
  images x(n);
  labels y(n);
  std::memcpy(x.data(), d.features().data() + first * 784, n * 784 * sizeof(float));
  std::memcpy(y.data(), d.targets().data() + first, n * sizeof(std::int32_t));
  return {std::move(x), std::move(y)};
}

} // namespace ckpt_interop_test

TEST_CASE("python (json + numpy) recomputes an MLP checkpoint's logits, and lepton loads python's model file",
          "[io][checkpoint][python]") {
  using namespace ckpt_interop_test;
  std::string out;
  if (::access("/usr/bin/python3", X_OK) != 0 || run("/usr/bin/python3 -c 'import numpy'", out) != 0) {
    WARN("skipped: /usr/bin/python3 with numpy is not available (" << out << ")");
    return;
  }
  std::string const data_dir = "/usr/share/datasets/fashion-mnist";
  if (::access((data_dir + "/t10k-images-idx3-ubyte.gz").c_str(), R_OK) != 0 ||
      ::access((data_dir + "/t10k-labels-idx1-ubyte.gz").c_str(), R_OK) != 0) {
    WARN("skipped: the Fashion-MNIST test split is not in " << data_dir);
    return;
  }
  io_test::scratch_dir dir;
  auto const test = lp::data::fashion_mnist(data_dir, lp::data::split::test, {.normalize = true});

  // a few Adam steps, so that the checkpoint's moments are not zero
  mlp model;
  lp::nn::init(model, lp::init::kaiming_uniform{}, 42);
  lp::optim::adam opt{model, {.lr = 1e-3}};
  lp::train::fit(model, opt, lp::loss::cross_entropy, rows(test, 16, 256),
                 {.epochs = 1, .batch = 64, .seed = 1, .display = lp::train::progress::none});
  REQUIRE(opt.steps() == 4);
  lio::save_checkpoint(dir / "mlp.safetensors", model, opt, {.epoch = 1, .step = opt.steps(), .seed = 1});

  auto const first16 = rows(test, 0, 16);
  images const& x = first16.features(); // (16, 784)
  lp::tensor<float, lp::dyn, 10> logits = model(x);
  lio::save_npy(dir / "lepton_logits.npy", logits);
  lio::save_npy(dir / "lepton_inputs.npy", x);

  std::string const script = std::string(LEPTON_SOURCE_DIR) + "/tests/io/checkpoint_interop.py";
  out.clear();
  int rc = run("/usr/bin/python3 '" + script + "' '" + dir.path().string() + "' '" + data_dir + "'", out);
  INFO("checkpoint_interop.py output:\n" << out);
  REQUIRE(rc == 0);

  // python_model.safetensors: every parameter times -0.5 (exact in float32), written by hand
  mlp back;
  lio::load_model(dir / "python_model.safetensors", back);
  std::size_t mismatches = 0;
  auto check_param = [&](auto const& mine, auto const& theirs) {
    for (std::size_t i = 0; i < mine.value.size(); ++i)
      if (!(theirs.value.data()[i] == -0.5f * mine.value.data()[i])) ++mismatches;
  };
  check_param(model.fc1.weight, back.fc1.weight);
  check_param(model.fc1.bias, back.fc1.bias);
  check_param(model.fc2.weight, back.fc2.weight);
  check_param(model.fc2.bias, back.fc2.bias);
  check_param(model.fc3.weight, back.fc3.weight);
  check_param(model.fc3.bias, back.fc3.bias);
  CHECK(mismatches == 0);

  lp::tensor<float, lp::dyn, 10> logits2 = back(x);
  auto const expected = lio::load_npy(dir / "python_logits.npy").as<float, lp::dyn, 10>(); // (16, 10)
  REQUIRE(expected.shape()[0] == 16);
  double worst = 0;
  for (std::size_t i = 0; i < logits2.size(); ++i) {
    double const a = logits2.data()[i], b = expected.data()[i];
    worst = std::max(worst, std::abs(a - b) / std::max(1.0, std::abs(b)));
  }
  INFO("largest relative difference " << worst);
  CHECK(worst <= 1e-5);
}
