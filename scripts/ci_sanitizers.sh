#!/usr/bin/env bash
# lepton's sanitizer and fuzz CI steps (docs/reliability.md):
#   asan  unit tests under AddressSanitizer + UndefinedBehaviorSanitizer (the `asan` preset:
#         -fsanitize=address,undefined -fno-sanitize-recover=all): the test executables named in
#         LEPTON_ASAN_TARGETS (default: the loaders, io, training loop, GEMM kernels, reliability
#         and fuzz replay; "all" = every test executable but LEPTON_ASAN_EXCLUDE)
#   tsan  a ThreadSanitizer build (the `tsan` preset) of test_reliability (concurrency,
#         determinism, faults), run with ctest -L reliability
#   fuzz  the libFuzzer targets of fuzz/ (clang), each for LEPTON_FUZZ_SECONDS on its seed corpus
#
#   scripts/ci_sanitizers.sh                 # all three steps
#   scripts/ci_sanitizers.sh tsan fuzz       # some of them
#
# Environment:
#   LEPTON_SANITIZER_BUILD   build root (default: build/, i.e. build/asan, build/tsan, build/fuzz)
#   LEPTON_ASAN_TARGETS      test executables built and run under ASan (space separated, or "all");
#                            the default fits the CI budget: the template-heavy ones (test_autodiff,
#                            test_expr, test_nn, test_cnn) take 5 to 15+ CPU-minutes each under ASan
#   LEPTON_ASAN_EXCLUDE      with "all": executables left out (default: test_autodiff_alloc
#                            test_cnn_alloc, which replace malloc itself and so bypass ASan)
#   LEPTON_RELIABILITY_CALLS inference calls per thread in the concurrency test (default 10000 under
#                            TSan; 256 under ASan, where TSan is the check that matters)
#   LEPTON_RELIABILITY_SAMPLES samples of the determinism test's epoch under ASan (default 512;
#                            2048 elsewhere)
#   LEPTON_FUZZ_SECONDS      seconds per fuzz target (default 20)
#   JOBS                     build and test parallelism (default 2)
# Prints the wall time of each step; exits non-zero on the first failing step.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
root="${LEPTON_SANITIZER_BUILD:-build}"
jobs="${JOBS:-2}"
steps=("$@")
[ ${#steps[@]} -eq 0 ] && steps=(asan tsan fuzz)

t_all=$(date +%s)
# cpu_seconds: sets CPU to the CPU seconds (user + system) of this shell's finished children.
# (`times` must run in this shell, not in a $(...) subshell.)
cpu_seconds() {
  local f
  f=$(mktemp)
  times >"$f"
  CPU=$(tail -1 "$f" | awk '{ s = 0; for (i = 1; i <= 2; ++i) { split($i, a, /[ms]/); s += a[1] * 60 + a[2] } printf "%d", s }')
  rm -f "$f"
}
timed() { # timed NAME command...: runs the command, prints its wall time and CPU time
  local name=$1 t0 c0 rc
  shift
  t0=$(date +%s)
  cpu_seconds
  c0=$CPU
  echo "== ci_sanitizers: $name"
  set +e
  "$@"
  rc=$?
  set -e
  cpu_seconds
  echo "== ci_sanitizers: $name: exit $rc after $(($(date +%s) - t0)) s wall, $((CPU - c0)) s CPU"
  return $rc
}

# Phony ninja targets named test_* (one per lepton_add_test call), minus the excluded ones.
test_targets() {
  local dir=$1 exclude=" $2 "
  ninja -C "$dir" -t targets all | sed -n 's/^\(test_[A-Za-z0-9_]*\): phony$/\1/p' | sort -u |
    while read -r t; do [[ "$exclude" == *" $t "* ]] || echo "$t"; done
}

run_asan() {
  local dir="$root/asan" exclude="${LEPTON_ASAN_EXCLUDE-test_autodiff_alloc test_cnn_alloc}"
  local want="${LEPTON_ASAN_TARGETS:-test_data test_io test_checkpoint test_train test_optim test_backend test_isa test_reliability test_fuzz_replay}"
  # alloc_dealloc_mismatch=0: several allocation-counting tests replace some operator new/delete
  # overloads (malloc/free based); ASan intercepts the others, so its new(nothrow) memory reaches
  # their free-based delete. Set for the build too: test discovery runs the executables.
  export ASAN_OPTIONS="detect_leaks=1:abort_on_error=1:strict_string_checks=1:detect_stack_use_after_return=1:alloc_dealloc_mismatch=0"
  export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
  timed "asan: configure" cmake --preset asan -B "$dir" -DLEPTON_BUILD_EXAMPLES=OFF -DLEPTON_CUDA=OFF --log-level=WARNING
  local available
  available=" $(test_targets "$dir" "" | tr '\n' ' ') "
  targets=()
  if [ "$want" = all ]; then
    mapfile -t targets < <(test_targets "$dir" "$exclude")
  else
    for t in $want; do
      if [[ "$available" == *" $t "* ]]; then targets+=("$t"); else echo "asan: no target $t (skipped)"; fi
    done
  fi
  echo "asan: test executables: ${targets[*]}"
  timed "asan: build" cmake --build "$dir" -j "$jobs" --target "${targets[@]}"
  # ctest: the labels of the executables built above (from their discovered-tests files); tests of
  # unbuilt executables are *_NOT_BUILT placeholders without a label. compile_fail and package
  # tests only run the compiler (nothing to sanitize); so do core.header_link (links the header
  # TUs) and the op-list checks (scan sources), whose executables are not test_* targets. The
  # extra runs of an executable under another LEPTON_ISA (core.isa_env_*, core.expr_isa_*, plain
  # add_test calls) carry the core label but their executables (test_isa, test_expr) are not built.
  local labels
  labels=$(for t in "${targets[@]}"; do cat "$dir"/tests/*/"${t}"_tests-*.cmake 2>/dev/null; done |
    grep -o 'LABELS [A-Za-z0-9_]*' | awk '{print $2}' | sort -u | paste -sd'|')
  echo "asan: test labels: $labels"
  timed "asan: test" env LEPTON_RELIABILITY_CALLS="${LEPTON_RELIABILITY_CALLS:-256}" \
    LEPTON_RELIABILITY_SAMPLES="${LEPTON_RELIABILITY_SAMPLES:-512}" \
    ctest --test-dir "$dir" -j "$jobs" --output-on-failure --no-tests=error \
    -L "^(${labels})\$" -LE "^(compile_fail|package)\$" \
    -E "_NOT_BUILT|^core\.header_link\$|^autodiff\.op_(list_complete|table_current)\$|^core\.(isa_env|expr_isa)_"
}

run_tsan() {
  local dir="$root/tsan"
  timed "tsan: configure" cmake --preset tsan -B "$dir" -DLEPTON_BUILD_EXAMPLES=OFF -DLEPTON_CUDA=OFF --log-level=WARNING
  timed "tsan: build" cmake --build "$dir" -j "$jobs" --target test_reliability
  timed "tsan: test" env TSAN_OPTIONS="halt_on_error=1:second_deadlock_stack=1" \
    LEPTON_RELIABILITY_CALLS="${LEPTON_RELIABILITY_CALLS:-10000}" \
    ctest --test-dir "$dir" -j 1 --output-on-failure --no-tests=error -L reliability -E "_NOT_BUILT|fuzz"
}

run_fuzz() {
  local dir="$root/fuzz" secs="${LEPTON_FUZZ_SECONDS:-20}" t rc=0
  if ! command -v clang++ >/dev/null; then
    echo "fuzz: clang++ not found (libFuzzer needs clang; Debian package clang)" >&2
    return 1
  fi
  timed "fuzz: configure" cmake -S fuzz -B "$dir" -G Ninja -DCMAKE_CXX_COMPILER=clang++ --log-level=WARNING
  timed "fuzz: build" cmake --build "$dir" -j "$jobs"
  export LEPTON_FUZZ_WORK="$dir/work"
  # One target per core ($jobs at a time): each libFuzzer run is single-threaded. Each run leaves
  # its exit status in $dir/status/TARGET.
  local t0 f
  t0=$(date +%s)
  rm -rf "$dir/status"
  mkdir -p "$dir/status"
  echo "== ci_sanitizers: fuzz: every target for ${secs} s, ${jobs} at a time"
  for exe in "$dir"/fuzz_*; do
    [ -x "$exe" ] || continue
    t=$(basename "$exe")
    t=${t#fuzz_}
    while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do sleep 1; done
    (
      set +e
      fuzz/run.sh "$dir" "$t" "$secs"
      echo $? >"$dir/status/$t"
    ) &
  done
  wait
  for f in "$dir"/status/*; do
    [ "$(cat "$f")" = 0 ] || { echo "fuzz: $(basename "$f") failed (exit $(cat "$f"))"; rc=1; }
  done
  [ -n "$(ls "$dir/status")" ] || { echo "fuzz: no fuzz target was built" >&2; rc=1; }
  echo "== ci_sanitizers: fuzz: runs: exit $rc after $(($(date +%s) - t0)) s wall"
  return $rc
}

for s in "${steps[@]}"; do
  case "$s" in
  asan) run_asan ;;
  tsan) run_tsan ;;
  fuzz) run_fuzz ;;
  *)
    echo "ci_sanitizers.sh: unknown step '$s' (asan, tsan, fuzz)" >&2
    exit 2
    ;;
  esac
done
echo "== ci_sanitizers: all steps passed in $(($(date +%s) - t_all)) s"
