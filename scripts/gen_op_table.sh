#!/usr/bin/env bash
# Regenerates the op table of docs/ops.md (between <!-- op-table:begin --> and <!-- op-table:end -->)
# from lepton::ops::all (include/lepton/expr/op_list.hpp). The ctest test autodiff.op_table_current
# fails until this has been run after a change to the list.
#
#   scripts/gen_op_table.sh [BUILD_DIR]     # default build/release; builds only target op_list_dump
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
build=${1:-build/release}
if [[ ! -f "$build/CMakeCache.txt" ]]; then
  echo "gen_op_table.sh: $build is not a configured build directory (cmake --preset release, or pass one)" >&2
  exit 2
fi
cmake --build "$build" --target op_list_dump -j1 >/dev/null
exe=$(find "$build" -name op_list_dump -type f -perm -u+x | head -n1)
python3 scripts/op_list.py table --write --dump "$exe"
