// End-to-end Fashion-MNIST training in libtorch 1.13: the peer of lepton's examples
// examples/fashion_mnist_mlp (--model mlp) and examples/fashion_mnist_cnn (--model cnn). It trains the
// same network on the same data the same way, so that the two programs' samples/s and test accuracy
// compare directly:
//   - the network: 784-256-128-10 ReLU MLP, or conv 3x3 (32, pad 1) - ReLU - max pool 2 - conv 3x3
//     (64, pad 1) - ReLU - max pool 2 - fc 3136-128 - ReLU - fc 10;
//   - the initial weights: lepton's init::kaiming_uniform (U(-b, b), b = sqrt(2) * sqrt(3 / fan_in),
//     biases zero) drawn from the same std::mt19937_64 streams as lepton::nn::init(model, .., seed),
//     so both programs start from the same weights for the same --seed;
//   - the data: pixels / 255, then (x - 0.2860406) / 0.3530242 (lepton's mnist_options{.normalize =
//     true}); the batch order of each epoch is lepton's data::loader order (seeded_shuffle with
//     epoch_seed(seed, epoch)), the last, partial batch kept (drop_last = false);
//   - Adam (lr 1e-3, betas 0.9 / 0.999, eps 1e-8, no weight decay), mean cross-entropy, and the
//     examples' cosine annealing of the learning rate over the epochs (stepped after each epoch);
//   - the epoch's clock covers what lepton::train::fit times: shuffling, gathering each batch,
//     forward, loss, backward and the optimizer step (plus the train loss / accuracy bookkeeping);
//     the test set is evaluated after each epoch, outside the clock, in batches of max(batch, 256).
// It uses libtorch only, not lepton.
//
//   bench_e2e_libtorch [--model mlp|cnn] [--data DIR] [--epochs N] [--batch B] [--threads T]
//                      [--seed S] [--lr LR]
// Built with the benches when libtorch is found (preset `bench`: cmake --preset bench && cmake
// --build --preset bench --target bench_e2e_libtorch fashion_mnist_cnn), e.g.
//   build/bench/bench/bench_e2e_libtorch --model cnn --epochs 1 --threads 1
//   build/bench/examples/fashion_mnist_cnn --epochs 1 --threads 1   (lepton, for comparison)
// Compare at equal --epochs, --threads, --batch and --seed (the examples' defaults are 5 / 10 epochs
// and all hardware threads; this program's are 1 epoch and 1 thread).
//
// Prints one line per epoch (as lepton::train::fit does), then one JSON line with the results:
// the lepton examples' keys (test_accuracy, test_loss, train_samples_per_s, epochs, batch, threads,
// seed, parameters) plus model, lr and epoch_seconds. Exit codes: 0, 1 (missing or damaged data
// file), 2 (bad command line).
#include <torch/torch.h>

#include <zlib.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <numeric>
#include <random>
#include <stdexcept>
#include <string>
#include <sys/stat.h>
#include <vector>

// Debian's libtorch runs its GEMMs through OpenBLAS, whose own thread pool ignores
// torch::set_num_threads (the same call as bench_mlp_vs_libtorch, declared here so that this
// program needs no cblas.h).
extern "C" void openblas_set_num_threads(int);

namespace {

char const* const program = "bench_e2e_libtorch";

struct options {
  std::string model = "mlp";
  std::string data = "/usr/share/datasets/fashion-mnist";
  std::size_t epochs = 1, batch = 64, threads = 1;
  std::uint64_t seed = 42;
  double lr = 1e-3;
};

std::string usage() {
  return std::string("usage: ") + program +
         " [--model mlp|cnn] [--data DIR] [--epochs N] [--batch B] [--threads T] [--seed S] [--lr LR]\n"
         "Trains lepton's Fashion-MNIST example networks with libtorch (the peer of\n"
         "examples/fashion_mnist_mlp and examples/fashion_mnist_cnn).\n\n"
         "options:\n"
         "  --model mlp|cnn  784-256-128-10 MLP, or the examples' small CNN (default: mlp)\n"
         "  --data DIR       the Fashion-MNIST IDX files, raw or .gz (default: "
         "/usr/share/datasets/fashion-mnist)\n"
         "  --epochs N       training epochs, >= 1 (default: 1)\n"
         "  --batch B        batch size, >= 1 (default: 64)\n"
         "  --threads T      libtorch and OpenBLAS threads, >= 1 (default: 1)\n"
         "  --seed S         seed of the initial weights and the batch order (default: 42)\n"
         "  --lr LR          Adam learning rate, > 0 (default: 0.001)\n"
         "  -h, --help       print this help and exit\n";
}

/// A whole number in [min, max] written in decimal digits only.
bool parse_count(std::string const& text, std::uint64_t min, std::uint64_t max, std::uint64_t& out) {
  if (text.empty() || text.size() > 20) return false;
  std::uint64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    std::uint64_t const d = std::uint64_t(c - '0');
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  if (v < min || v > max) return false;
  out = v;
  return true;
}

/// Parses the command line into `o`. Returns -1 to go on, else the exit code (0: --help, 2: bad).
int parse_args(int argc, char** argv, options& o) {
  auto bad = [](std::string const& msg) {
    std::fprintf(stderr, "%s: %s\n%s", program, msg.c_str(), usage().c_str());
    return 2;
  };
  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--help" || arg == "-h") {
      std::fputs(usage().c_str(), stdout);
      return 0;
    }
    if (arg.rfind("--", 0) != 0) return bad("unexpected argument '" + arg + "'");
    std::string name = arg, text;
    if (auto eq = arg.find('='); eq != std::string::npos) {
      name = arg.substr(0, eq);
      text = arg.substr(eq + 1);
    } else {
      if (i + 1 >= argc || std::string(argv[i + 1]).rfind("--", 0) == 0) return bad(name + " needs a value");
      text = argv[++i];
    }
    std::uint64_t v = 0;
    auto count = [&](std::size_t& dst, std::uint64_t min, std::uint64_t max) {
      if (!parse_count(text, min, max, v)) return false;
      dst = std::size_t(v);
      return true;
    };
    bool ok = true;
    if (name == "--model") {
      ok = text == "mlp" || text == "cnn";
      if (ok) o.model = text;
    } else if (name == "--data") {
      ok = !text.empty();
      if (ok) o.data = text;
    } else if (name == "--epochs") {
      ok = count(o.epochs, 1, 1000000);
    } else if (name == "--batch") {
      ok = count(o.batch, 1, 60000);
    } else if (name == "--threads") {
      ok = count(o.threads, 1, 1024);
    } else if (name == "--seed") {
      ok = parse_count(text, 0, UINT64_MAX, v);
      if (ok) o.seed = v;
    } else if (name == "--lr") {
      char* end = nullptr;
      double const lr = std::strtod(text.c_str(), &end);
      ok = !text.empty() && end == text.c_str() + text.size() && std::isfinite(lr) && lr > 0;
      if (ok) o.lr = lr;
    } else {
      return bad("unknown option '" + name + "'");
    }
    if (!ok) return bad(name + ": bad value '" + text + "'");
  }
  return -1;
}

// ------------------------------------------------------------------------------------------ data

/// A missing or damaged data file: main prints the message and exits with 1.
struct data_error : std::runtime_error {
  using std::runtime_error::runtime_error;
};

bool file_exists(std::string const& p) {
  struct stat st;
  return ::stat(p.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

/// The existing file among the spellings lepton's loader accepts (.gz tried first).
std::string find_file(std::string const& dir, std::string const& stem, std::string const& kind) {
  std::array<std::string, 3> names{stem + "-" + kind + "-ubyte.gz", stem + "-" + kind + "-ubyte",
                                   stem + "." + kind + "-ubyte"};
  for (auto const& n : names)
    if (file_exists(dir + "/" + n)) return dir + "/" + n;
  throw data_error(dir + "/" + names[0] + ": no such file (nor " + dir + "/" + names[1] + ", " + dir + "/" +
                   names[2] + ")");
}

/// An unsigned-byte IDX file (gzread reads raw and gzip files alike): its dims and its bytes.
std::vector<std::uint8_t> read_idx_u8(std::string const& path, std::vector<std::size_t>& dims) {
  gzFile f = gzopen(path.c_str(), "rb");
  if (!f) throw data_error(path + ": cannot open");
  struct closer {
    gzFile f;
    ~closer() { gzclose(f); }
  } guard{f};
  auto read = [&](void* dst, std::size_t n) {
    auto* p = static_cast<unsigned char*>(dst);
    while (n > 0) {
      unsigned const chunk = unsigned(std::min<std::size_t>(n, 1u << 30));
      int const got = gzread(f, p, chunk);
      if (got <= 0) throw data_error(path + ": truncated or unreadable IDX file");
      p += got;
      n -= std::size_t(got);
    }
  };
  unsigned char magic[4];
  read(magic, 4);
  if (magic[0] != 0 || magic[1] != 0 || magic[2] != 0x08 || magic[3] < 1 || magic[3] > 3)
    throw data_error(path + ": not an unsigned-byte IDX file of rank 1 to 3");
  dims.assign(magic[3], 0);
  std::size_t total = 1;
  for (auto& d : dims) {
    unsigned char b[4];
    read(b, 4);
    d = (std::size_t(b[0]) << 24) | (std::size_t(b[1]) << 16) | (std::size_t(b[2]) << 8) | std::size_t(b[3]);
    total *= d;
  }
  if (total > (std::size_t(1) << 30)) throw data_error(path + ": IDX file too large");
  std::vector<std::uint8_t> bytes(total);
  if (total) read(bytes.data(), total);
  return bytes;
}

struct split_data {
  torch::Tensor x; ///< float (n, 784) or (n, 1, 28, 28), normalised
  torch::Tensor y; ///< int64 (n), 0..9
};

constexpr float fashion_mnist_mean = 0.2860406f, fashion_mnist_stddev = 0.3530242f;

split_data load_split(std::string const& img_path, std::string const& lbl_path, bool nchw) {
  std::vector<std::size_t> ldims, idims;
  auto lbl = read_idx_u8(lbl_path, ldims);
  if (ldims.size() != 1) throw data_error(lbl_path + ": labels must have 1 dimension");
  auto img = read_idx_u8(img_path, idims);
  if (idims.size() != 3 || idims[1] != 28 || idims[2] != 28)
    throw data_error(img_path + ": images must be (n, 28, 28)");
  std::size_t const n = ldims[0];
  if (idims[0] != n) throw data_error(img_path + ": image count differs from " + lbl_path + "'s label count");
  split_data s;
  s.x = nchw ? torch::empty({long(n), 1, 28, 28}) : torch::empty({long(n), 784});
  s.y = torch::empty({long(n)}, torch::kLong);
  // As lepton's loader: x * (1 / (255 stddev)) - mean / stddev, in float.
  float const scale = 1.0f / (255.0f * fashion_mnist_stddev),
              shift = fashion_mnist_mean / fashion_mnist_stddev;
  float* px = s.x.data_ptr<float>();
  for (std::size_t i = 0; i < n * 784; ++i) px[i] = float(img[i]) * scale - shift;
  std::int64_t* py = s.y.data_ptr<std::int64_t>();
  for (std::size_t i = 0; i < n; ++i) {
    if (lbl[i] > 9) throw data_error(lbl_path + ": label " + std::to_string(lbl[i]) + " outside 0..9");
    py[i] = lbl[i];
  }
  return s;
}

// ------------------------------------------------------------------ lepton's init and shuffle

/// lepton::nn::init(model, init::kaiming_uniform{}, seed) for parameter number `index` (1-based,
/// in declaration order, biases counted): weights U(-b, b), b = sqrt(2) sqrt(3 / fan_in), from
/// std::mt19937_64(seed * 0x9E37.. + index * 0xBF58..), in the row-major order of lepton's layout;
/// biases zero. lepton's linear weight is (in, out), libtorch's (out, in): `transpose` says so.
void lepton_kaiming_uniform(torch::Tensor w, std::uint64_t seed, std::uint64_t index, double fan_in,
                            bool transpose) {
  std::mt19937_64 rng(seed * 0x9E3779B97F4A7C15ull + index * 0xBF58476D1CE4E5B9ull);
  double const b = 1.4142135623730951 * std::sqrt(3.0 / fan_in);
  torch::NoGradGuard no_grad;
  auto t = transpose ? torch::empty({w.size(1), w.size(0)}) : torch::empty_like(w);
  float* v = t.data_ptr<float>();
  for (std::int64_t i = 0, n = t.numel(); i < n; ++i) {
    double const u = double(rng() >> 11) * 0x1.0p-53;
    v[i] = static_cast<float>((2 * u - 1) * b);
  }
  w.copy_(transpose ? t.t() : t);
}

constexpr std::uint64_t splitmix64(std::uint64_t x) noexcept {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

/// lepton::data::loader's sample order for epoch `e`: 0..n-1 through seeded_shuffle with
/// epoch_seed(seed, e) (Fisher-Yates, unbiased bounded draws by rejection from std::mt19937_64).
void lepton_epoch_order(std::vector<std::int64_t>& order, std::uint64_t seed, std::uint64_t e) {
  std::iota(order.begin(), order.end(), std::int64_t{0});
  std::mt19937_64 rng(splitmix64(splitmix64(seed) ^ e));
  for (std::size_t i = order.size(); i > 1; --i) {
    std::uint64_t const n = i, threshold = (0 - n) % n;
    std::uint64_t r;
    do r = rng();
    while (r < threshold);
    std::swap(order[i - 1], order[std::size_t(r % n)]);
  }
}

// ------------------------------------------------------------------------------------- models

torch::nn::Sequential make_model(std::string const& model, std::uint64_t seed) {
  namespace nn = torch::nn;
  nn::Sequential net;
  // Weight, bias, fan-in and whether lepton's layout is the transpose of libtorch's, for each layer
  // with parameters, in declaration order (the order lepton::nn::init numbers them in).
  struct layer {
    torch::Tensor w, b;
    double fan_in;
    bool transpose;
  };
  std::vector<layer> layers;
  auto linear = [&](long in, long out) {
    nn::Linear l(in, out);
    layers.push_back({l->weight, l->bias, double(in), true});
    return l;
  };
  auto conv = [&](long in, long out) {
    nn::Conv2d c(nn::Conv2dOptions(in, out, 3).stride(1).padding(1));
    layers.push_back({c->weight, c->bias, double(in * 3 * 3), false});
    return c;
  };
  if (model == "mlp") {
    net->push_back(linear(784, 256));
    net->push_back(nn::ReLU());
    net->push_back(linear(256, 128));
    net->push_back(nn::ReLU());
    net->push_back(linear(128, 10));
  } else {
    net->push_back(conv(1, 32)); // (b, 1, 28, 28) -> (b, 32, 28, 28)
    net->push_back(nn::ReLU());
    net->push_back(nn::MaxPool2d(2)); // -> (b, 32, 14, 14)
    net->push_back(conv(32, 64));     // -> (b, 64, 14, 14)
    net->push_back(nn::ReLU());
    net->push_back(nn::MaxPool2d(2)); // -> (b, 64, 7, 7)
    net->push_back(nn::Flatten());    // -> (b, 3136), in (c, h, w) order as lepton::flatten
    net->push_back(linear(64 * 7 * 7, 128));
    net->push_back(nn::ReLU());
    net->push_back(linear(128, 10));
  }
  std::uint64_t index = 0;
  for (auto& l : layers) {
    lepton_kaiming_uniform(l.w, seed, ++index, l.fan_in, l.transpose);
    ++index; // the bias: its own stream, zeros
    torch::NoGradGuard no_grad;
    l.b.zero_();
  }
  return net;
}

struct eval_result {
  double loss = 0, accuracy = 0;
};

eval_result evaluate(torch::nn::Sequential& net, split_data const& d, std::int64_t batch) {
  torch::NoGradGuard no_grad;
  net->eval();
  double loss = 0;
  std::int64_t correct = 0;
  std::int64_t const n = d.y.size(0);
  for (std::int64_t s = 0; s < n; s += batch) {
    std::int64_t const b = std::min(batch, n - s);
    auto x = d.x.narrow(0, s, b);
    auto y = d.y.narrow(0, s, b);
    auto out = net->forward(x);
    loss += torch::nn::functional::cross_entropy(out, y).item<double>() * double(b);
    correct += out.argmax(1).eq(y).sum().item<std::int64_t>();
  }
  net->train();
  return {loss / double(n), double(correct) / double(n)};
}

std::string fixed(double v, int prec) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.*f", prec, v);
  return buf;
}

int run(options const& o) {
  bool const cnn = o.model == "cnn";
  // All four files are looked for before any is read: a missing one is reported at once.
  std::string const train_img = find_file(o.data, "train-images", "idx3");
  std::string const train_lbl = find_file(o.data, "train-labels", "idx1");
  std::string const test_img = find_file(o.data, "t10k-images", "idx3");
  std::string const test_lbl = find_file(o.data, "t10k-labels", "idx1");
  split_data train = load_split(train_img, train_lbl, cnn);
  split_data test = load_split(test_img, test_lbl, cnn);

  auto net = make_model(o.model, o.seed);
  std::size_t parameters = 0;
  for (auto const& p : net->parameters()) parameters += std::size_t(p.numel());
  torch::optim::Adam opt(net->parameters(), torch::optim::AdamOptions(o.lr).betas({0.9, 0.999}).eps(1e-8));

  std::int64_t const n = train.y.size(0), batch = std::int64_t(o.batch);
  std::int64_t const val_batch = std::max<std::int64_t>(batch, 256);
  std::vector<std::int64_t> order(static_cast<std::size_t>(n));
  std::vector<double> epoch_seconds;
  double total_seconds = 0, total_samples = 0;
  eval_result last{};
  double lr = o.lr;
  for (std::size_t e = 0; e < o.epochs; ++e) {
    auto const t0 = std::chrono::steady_clock::now();
    lepton_epoch_order(order, o.seed, e);
    auto idx_all = torch::from_blob(order.data(), {n}, torch::kLong);
    double loss_sum = 0;
    std::int64_t correct = 0;
    for (std::int64_t s = 0; s < n; s += batch) {
      std::int64_t const b = std::min(batch, n - s);
      auto idx = idx_all.narrow(0, s, b);
      auto x = train.x.index_select(0, idx);
      auto y = train.y.index_select(0, idx);
      opt.zero_grad();
      auto out = net->forward(x);
      auto loss = torch::nn::functional::cross_entropy(out, y);
      loss.backward();
      opt.step();
      loss_sum += loss.item<double>() * double(b);
      correct += out.detach().argmax(1).eq(y).sum().item<std::int64_t>();
    }
    double const seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    epoch_seconds.push_back(seconds);
    total_seconds += seconds;
    total_samples += double(n);
    last = evaluate(net, test, val_batch);
    std::printf("epoch %zu/%zu  loss %s  acc %s  val_loss %s  val_acc %s  %s s  %zu samples/s\n", e + 1,
                o.epochs, fixed(loss_sum / double(n), 4).c_str(),
                fixed(double(correct) / double(n), 4).c_str(), fixed(last.loss, 4).c_str(),
                fixed(last.accuracy, 4).c_str(), fixed(seconds, 2).c_str(), std::size_t(double(n) / seconds));
    std::fflush(stdout);
    // lepton::optim::cosine_lr{opt, epochs}, stepped after each epoch as the examples do.
    double const t = double(std::min(e + 1, o.epochs)) / double(o.epochs);
    lr = o.lr * 0.5 * (1 + std::cos(3.141592653589793 * t));
    for (auto& g : opt.param_groups()) static_cast<torch::optim::AdamOptions&>(g.options()).lr(lr);
  }

  std::string secs;
  for (std::size_t i = 0; i < epoch_seconds.size(); ++i) secs += (i ? ", " : "") + fixed(epoch_seconds[i], 3);
  std::printf(
      "{\"model\": \"%s\", \"test_accuracy\": %.4f, \"test_loss\": %.4f, \"train_samples_per_s\": %.0f, "
      "\"epochs\": %zu, \"batch\": %zu, \"threads\": %zu, \"seed\": %llu, \"parameters\": %zu, "
      "\"lr\": %g, \"epoch_seconds\": [%s]}\n",
      o.model.c_str(), last.accuracy, last.loss, total_seconds > 0 ? total_samples / total_seconds : 0.0,
      o.epochs, o.batch, o.threads, static_cast<unsigned long long>(o.seed), parameters, o.lr, secs.c_str());
  return 0;
}

} // namespace

int main(int argc, char** argv) {
  options o;
  if (int rc = parse_args(argc, argv, o); rc >= 0) return rc;
  torch::set_num_threads(int(o.threads));
  openblas_set_num_threads(int(o.threads));
  // lepton flushes denormals during its computations (core/fpenv.hpp); libtorch gets the same setting.
  at::globalContext().setFlushDenormal(true);
  try {
    return run(o);
  } catch (std::exception const& e) { // data_error (a missing or damaged file), or libtorch's
    std::fprintf(stderr, "%s: %s\n", program, e.what());
    return 1;
  }
}
