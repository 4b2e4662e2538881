#!/usr/bin/env bash
# Runs one libFuzzer target for a bounded time on a copy of its corpus (the checked-in one is
# not modified). On a finding, prints the input's path and how to keep it as a regression.
#   run_fuzzer.sh FUZZER CORPUS WORKDIR SECONDS
set -uo pipefail
fuzzer=$1 corpus=$2 work=$3 seconds=$4
rm -rf "$work"
mkdir -p "$work/corpus" "$work/artifacts"
cp -r "$corpus"/. "$work/corpus/"
# -rss_limit_mb and -malloc_limit_mb: an input that makes the code allocate without bound
# is a finding (oom-*), not a machine brought down. -timeout: one input over 10 s is a hang.
"$fuzzer" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -malloc_limit_mb=1024 \
  -print_final_stats=1 -artifact_prefix="$work/artifacts/" "$work/corpus" 2>&1 | tail -40
rc=${PIPESTATUS[0]}
found=$(ls "$work/artifacts" 2>/dev/null)
if [ "$rc" = 77 ] && [ -z "$found" ]; then
  echo "SKIP: $(basename "$fuzzer") needs what this machine lacks (see above)"
  exit 77
fi
if [ "$rc" != 0 ] || [ -n "$found" ]; then
  echo "FAIL: $(basename "$fuzzer") found a failing input (exit $rc): $work/artifacts/$found"
  echo "Keep it as a regression input: cp $work/artifacts/<file> $corpus/, then fix the bug."
  exit 1
fi
echo "PASS: $(basename "$fuzzer") ran ${seconds}s, corpus $(ls "$work/corpus" | wc -l) inputs"
