#!/usr/bin/env bash
# Runs each fuzz target for SECONDS on a fresh, temporary seed corpus (fuzz/make_seeds.py) and
# fails loudly on the first crash, leak, timeout or out-of-memory. Crash inputs are kept in
# BUILD_DIR/fuzz-artifacts/ (reproduce: BUILD_DIR/fuzz/<target> <artifact>); the full libFuzzer
# output of each run is in BUILD_DIR/fuzz-logs/<target>.log.
#
# usage: fuzz/run.sh BUILD_DIR SECONDS [TARGET...]   (targets: request config rules headers)
set -euo pipefail

build_dir=$(cd "$1" && pwd)
seconds=$2
shift 2
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(request config rules headers)
src_dir=$(cd "$(dirname "$0")" && pwd)

work=$(mktemp -d "${TMPDIR:-/tmp}/switchyard-fuzz-XXXXXX")
trap 'rm -rf "$work"' EXIT
python3 "$src_dir/make_seeds.py" "$work" >/dev/null
mkdir -p "$build_dir/fuzz-artifacts" "$build_dir/fuzz-logs"

declare -A max_len=([request]=12288 [config]=8192 [rules]=4096 [headers]=256)
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

summary=()
failed=()
for t in "${targets[@]}"; do
  bin="$build_dir/fuzz/fuzz_$t"
  log="$build_dir/fuzz-logs/$t.log"
  [[ -x $bin ]] || { echo "fuzz: $bin is missing (build the fuzz_targets target)" >&2; exit 2; }
  echo "fuzz: $t for ${seconds}s ..."
  status=0
  "$bin" -max_total_time="$seconds" -rss_limit_mb=2048 -timeout=10 -max_len="${max_len[$t]}" \
    -dict="$src_dir/dict/$t.dict" -artifact_prefix="$build_dir/fuzz-artifacts/$t-" \
    -print_final_stats=1 "$work/$t" >"$log" 2>&1 || status=$?
  runs=$(awk '/stat::number_of_executed_units:/{print $2}' "$log" | tail -1)
  rate=$(awk '/stat::average_exec_per_sec:/{print $2}' "$log" | tail -1)
  # `|| true`: a fuzzer that stopped before its first line (a bad dictionary) must reach the
  # FAILED report below, not end this script silently under `set -e -o pipefail`.
  cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | awk '{print $2}' || true)
  corpus=$(find "$work/$t" -type f | wc -l)
  if [[ $status -ne 0 ]]; then
    failed+=("$t")
    summary+=("$(printf '%-8s FAILED (exit %d) after %s runs; see %s' "$t" "$status" "${runs:-?}" "$log")")
    echo "================ fuzz_$t FAILED (exit $status) ================" >&2
    grep -E 'ERROR:|invariant violated|SUMMARY:|Test unit written|runtime error' "$log" >&2 || true
    tail -n 40 "$log" >&2
  else
    summary+=("$(printf '%-8s %12s runs %8s exec/s  cov %6s  corpus %5s' "$t" "$runs" "$rate" "${cov:-?}" "$corpus")")
  fi
done

echo "fuzz summary (${seconds}s per target):"
printf '  %s\n' "${summary[@]}"
if [[ ${#failed[@]} -gt 0 ]]; then
  echo "fuzz: FAILED: ${failed[*]} (inputs in $build_dir/fuzz-artifacts/)" >&2
  exit 1
fi
