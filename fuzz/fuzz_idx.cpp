// Fuzz target: lepton::data::read_idx on the input as a file: raw or gzip-compressed IDX (the
// format is detected from the first two bytes, as for a real file), then element decoding.
#include <lepton/data/idx.hpp>

#include "fuzz_common.hpp"
#include "idx_checks.hpp"

LEPTON_FUZZ_ENTRY(idx) {
  static lepton_fuzz::mem_file file("lepton-fuzz-idx");
  file.assign(data, size);
  lepton_fuzz::run_input(file.path(), [&] {
    auto f = lepton::data::read_idx(file.path(), lepton_fuzz::idx::options);
    lepton_fuzz::idx::check_idx(f);
  });
  return 0;
}
