// Fuzz target: lepton::data::parse_csv (what read_csv runs on a file's text) with options chosen
// by the first byte: bit 0 header, bits 1-3 delimiter, bits 4-5 target (last, first, none, by
// header name "y"), bit 6 quote character. The rest is the CSV text.
#include <optional>
#include <string_view>

#include <lepton/data/csv.hpp>

#include "fuzz_common.hpp"

LEPTON_FUZZ_ENTRY(csv) {
  using namespace lepton_fuzz;
  if (size < 1) return 0;
  unsigned const b = data[0];
  static constexpr char delimiters[8] = {',', ';', '\t', ' ', '|', ',', ';', '"'};
  lepton::data::csv_options opt;
  opt.header = b & 1;
  opt.delimiter = delimiters[(b >> 1) & 7];
  switch ((b >> 4) & 3) {
  case 0: opt.target = -1; break;
  case 1: opt.target = 0; break;
  case 2: opt.target = std::nullopt; break;
  default: opt.target_name = "y"; break;
  }
  opt.quote = (b & 64) ? '\'' : '"';
  std::string_view const text(reinterpret_cast<char const*>(data + 1), size - 1);
  run_input("fuzz.csv", [&] {
    auto t = lepton::data::parse_csv(text, opt, "fuzz.csv");
    std::size_t const rows = t.rows();
    bool const has_target = opt.target.has_value() || !opt.target_name.empty();
    check(t.target.shape()[0] == (has_target ? rows : 0), "csv: target length != rows");
    check(t.features.shape()[1] == t.feature_names.size(), "csv: feature names != feature columns");
    check(t.features.size() == rows * t.feature_names.size(), "csv: features size");
  });
  return 0;
}
