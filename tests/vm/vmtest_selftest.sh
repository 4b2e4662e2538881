#!/usr/bin/env bash
# Self-tests of the VM layer (tools/vmtest): exit codes cross the VM boundary intact,
# a failing command fails the run, a hung command is killed at the timeout, a guest kernel
# panic fails the run. Each case boots the VM once (about 10 s under TCG here).
#   vmtest_selftest.sh VMTEST CASE     CASE: exit-codes | timeout | panic
# Exit: 0 pass, 1 fail, 77 skip (no kernel or no QEMU here; the reason is printed).
set -uo pipefail
vmtest=${1:?usage: vmtest_selftest.sh path/to/tools/vmtest CASE}
case_name=${2:?usage: vmtest_selftest.sh path/to/tools/vmtest CASE}
kernel=${VMTEST_KERNEL:-6.1}
# Small and quick: these cases need no features and little memory.
vm=("$vmtest" --kernel "$kernel" --mem 512M --no-features)

failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

# Download and prepare once, outside any timeout; 77 means this machine cannot run VMs.
"$vmtest" --kernel "$kernel" --prepare
rc=$?
[ $rc = 77 ] && { echo "SKIP: tools/vmtest cannot run here (reason above)"; exit 77; }
[ $rc = 0 ] || { echo "FAIL: tools/vmtest --prepare exited $rc"; exit 1; }

out=$(mktemp)
trap 'rm -f "$out"' EXIT

case $case_name in
  exit-codes)
    # 0, 1 (a failing command fails the run) and 42 cross intact; stdout and stderr
    # of the command come back.
    for want in 0 1 42; do
      "${vm[@]}" -- sh -c "echo vmtest-out-$want; echo vmtest-err-$want >&2; exit $want" >"$out" 2>&1
      rc=$?
      echo "exit $want -> vmtest exit $rc"
      [ "$rc" = "$want" ] || { fail "command exit $want came back as $rc"; cat "$out"; }
      grep -q "^vmtest-out-$want\$" "$out" || fail "stdout of the command (exit $want) missing"
      grep -q "^vmtest-err-$want\$" "$out" || fail "stderr of the command (exit $want) missing"
    done
    ;;
  timeout)
    # A hung command: killed at --timeout, exit 124, and promptly (not after the hang).
    # The limit covers the boot too: 10 s on an idle machine, 30 s seen under load.
    limit=90
    start=$(date +%s)
    "${vm[@]}" --timeout $limit -- sleep 3600 >"$out" 2>&1
    rc=$?
    took=$(($(date +%s) - start))
    echo "hung command -> vmtest exit $rc after ${took}s (timeout ${limit}s)"
    [ $rc = 124 ] || { fail "hung command: expected exit 124, got $rc"; cat "$out"; }
    [ $took -lt $((limit + 30)) ] || fail "hung command: killed after ${took}s, limit ${limit}s"
    grep -q 'the command was still running' "$out" ||
      { fail "the timeout hit before the command started (boot slower than ${limit}s?)"; cat "$out"; }
    ;;
  panic)
    # A guest kernel panic (sysrq crash) is a VM failure (125) even though no command
    # exit code came back, with the reason named.
    "${vm[@]}" -- sh -c 'echo c >/proc/sysrq-trigger; sleep 30; exit 0' >"$out" 2>&1
    rc=$?
    echo "kernel panic -> vmtest exit $rc"
    [ $rc = 125 ] || { fail "guest panic: expected exit 125, got $rc"; cat "$out"; }
    grep -q 'guest kernel error: .Kernel panic' "$out" ||
      { fail "guest panic: no 'guest kernel error' message"; tail -20 "$out"; }
    ;;
  *) echo "unknown case '$case_name'"; exit 2 ;;
esac

grep -h 'vmtest: timing' "$out" | tail -1
[ $failures = 0 ] && echo "PASS: $case_name" || exit 1
