#!/usr/bin/env bash
# Runs one lepton fuzz target for a while and prints a one-line summary.
#
#   fuzz/run.sh BUILD_DIR TARGET SECONDS [libFuzzer options...]
#   fuzz/run.sh /tmp/build-fuzz npy 1800 -jobs=4 -workers=4     # the documented long run
#
# The working corpus lives in $LEPTON_FUZZ_WORK/TARGET/corpus (default /tmp/lepton-fuzz): it starts
# from fuzz/corpus/TARGET and fuzz/regressions/TARGET (read only) and grows across runs. Crashes,
# leaks, timeouts and out-of-memory inputs land in $LEPTON_FUZZ_WORK/TARGET/artifacts/; copy a
# real one to fuzz/regressions/TARGET/ so that the replay test (ctest -L reliability) keeps it.
# Limits: 2.5 GB RSS, 2.5 GB per allocation, 10 s per input. Exit status: libFuzzer's (0 = clean).
set -uo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ $# -lt 3 ]; then
  echo "usage: $0 BUILD_DIR TARGET SECONDS [libFuzzer options...]" >&2
  exit 2
fi
build=$(realpath "$1") target=$2 secs=$3
shift 3
exe="$build/fuzz_$target"
[ -x "$exe" ] || { echo "$0: $exe not found (build fuzz/ first, see fuzz/CMakeLists.txt)" >&2; exit 2; }
work="${LEPTON_FUZZ_WORK:-/tmp/lepton-fuzz}/$target"
mkdir -p "$work/corpus" "$work/artifacts"
work=$(realpath "$work")
rm -f "$work"/fuzz-*.log
seeds=("$here/corpus/$target")
[ -d "$here/regressions/$target" ] && seeds+=("$here/regressions/$target")
dict=()
[ -f "$here/dict/$target.dict" ] && dict=("-dict=$here/dict/$target.dict")
before=$(ls "$work/artifacts" | wc -l)
start=$(date +%s)
# From $work, so that the fuzz-N.log files of -jobs runs land there.
(cd "$work" && "$exe" "$work/corpus" "${seeds[@]}" "${dict[@]}" -max_total_time="$secs" -rss_limit_mb=2560 \
  -malloc_limit_mb=2560 -timeout=10 -print_final_stats=1 -artifact_prefix="$work/artifacts/" "$@" \
  >"$work/log" 2>&1)
rc=$?
wall=$(($(date +%s) - start))
after=$(ls "$work/artifacts" | wc -l)
# With -jobs/-workers each job writes its stats to $work/fuzz-N.log: sum the executions.
logs=("$work/log")
for f in "$work"/fuzz-*.log; do [ -f "$f" ] && logs+=("$f"); done
execs=$(grep -ah 'stat::number_of_executed_units' "${logs[@]}" | awk '{s += $2} END {print s + 0}')
rss=$(grep -ah 'stat::peak_rss_mb' "${logs[@]}" | awk '$2 > m {m = $2} END {print m + 0}')
units=$(ls "$work/corpus" | wc -l)
cov=$(grep -ah 'cov: ' "${logs[@]}" | tail -1 | sed -n 's/.*cov: \([0-9]*\).*/\1/p')
echo "fuzz_$target: rc=$rc wall=${wall}s execs=$execs peak_rss_mb=$rss cov=${cov:-?}" \
  "new_artifacts=$((after - before)) corpus=$units"
if [ $rc -ne 0 ]; then
  grep -ahE 'ERROR|SUMMARY|invariant|deadly|Test unit written' "${logs[@]}" | head -20
fi
exit $rc
