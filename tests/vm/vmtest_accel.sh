#!/usr/bin/env bash
# Tests of tools/vmtest's accelerator choice, without needing a broken KVM to exist: a fake
# qemu-system-x86_64 first on PATH behaves like QEMU on a host whose /dev/kvm cannot run
# guests (aborts on an MSR write, or hangs) whenever it is asked for KVM, and runs the real
# QEMU otherwise. VMTEST_KVM_DEVICE points at a writable file so the probe runs even on
# hosts without /dev/kvm.
#   vmtest_accel.sh VMTEST CASE
#   CASE: decision (no boot: --check-accel in every situation) | fallback-boot (a real boot
#         under TCG after the probe failed)
# Exit: 0 pass, 1 fail, 77 skip (fallback-boot: no kernel or no QEMU here).
set -uo pipefail
vmtest=${1:?usage: vmtest_accel.sh path/to/tools/vmtest CASE}
case_name=${2:?usage: vmtest_accel.sh path/to/tools/vmtest CASE}

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }

real_qemu=$(command -v qemu-system-x86_64 || true)
touch "$work/kvm"  # stands for a writable /dev/kvm
echo "not a kernel: the fake QEMU never reads it" >"$work/bzImage"
export VMTEST_KVM_DEVICE=$work/kvm
calls=$work/kvm-calls

# fake_qemu MODE: abort | hang | works. Every KVM start is counted in $calls.
# Each mode lives in its own folder: the probe's cached answer is keyed by the QEMU path.
fake_qemu() {
  fake_bin=$work/bin-$1
  mkdir -p "$fake_bin"
  cat >"$fake_bin/qemu-system-x86_64" <<EOF
#!/usr/bin/env bash
case " \$* " in
  *" -accel kvm "*)
    echo kvm >>"$calls"
    if [ "$1" = hang ]; then exec sleep 3600; fi
    if [ "$1" = works ]; then  # a working KVM, played by TCG
      args=("\$@"); for i in "\${!args[@]}"; do
        [ "\${args[\$i]}" = kvm ] && args[\$i]=tcg; [ "\${args[\$i]}" = host ] && args[\$i]=max; done
      exec "$real_qemu" "\${args[@]}"
    fi
    echo "qemu-system-x86_64: error: failed to set MSR 0x10a to 0x69" >&2
    echo "qemu-system-x86_64: ../../target/i386/kvm/kvm.c:3183: kvm_buf_set_msrs: Assertion \\\`ret == cpu->kvm_msr_buf->nmsrs' failed." >&2
    kill -ABRT \$\$ ;;
esac
[ -n "$real_qemu" ] || { echo "fake qemu: no real QEMU for a TCG boot" >&2; exit 1; }
exec "$real_qemu" "\$@"
EOF
  chmod +x "$fake_bin/qemu-system-x86_64"
  : >"$calls"
}
kvm_calls() { grep -c kvm "$calls" 2>/dev/null || true; }
# check NAME EXPECTED-REGEX  -- runs --check-accel with the fake first on PATH.
check() {
  local name=$1 want=$2 out rc
  out=$(PATH="$fake_bin:$PATH" "$vmtest" --kernel "$work/bzImage" --check-accel 2>&1)
  rc=$?
  echo "$name: exit $rc: $out"
  [ $rc = 0 ] || fail "$name: exit $rc"
  grep -qE "$want" <<<"$out" || fail "$name: expected /$want/ in the output"
}

case $case_name in
  decision)
    # Each situation gets its own cache folder (the probe's answer is cached there).
    export VMTEST_CACHE=$work/cache
    fake_qemu abort
    check "broken KVM (QEMU aborts)" \
      'KVM present but unusable \(QEMU exit 134 under KVM: .*MSR 0x10a.*\); using TCG' 
    grep -q 'accelerator tcg' <<<"$(PATH="$fake_bin:$PATH" "$vmtest" --kernel "$work/bzImage" --check-accel 2>&1)" ||
      fail "broken KVM: the second look should say tcg"
    [ "$(kvm_calls)" = 1 ] || fail "broken KVM: probed $(kvm_calls) times in two runs, want 1 (cached)"

    export VMTEST_CACHE=$work/cache-hang
    fake_qemu hang
    start=$(date +%s)
    VMTEST_PROBE_TIMEOUT=2 check "broken KVM (QEMU hangs)" \
      'KVM present but unusable \(the probe guest hung under KVM for 2s.*\); using TCG'
    took=$(($(date +%s) - start))
    [ $took -le 10 ] || fail "hanging KVM: the probe took ${took}s with a 2 s limit"

    export VMTEST_CACHE=$work/cache-override
    fake_qemu abort
    VMTEST_ACCEL=tcg check "override tcg" 'accelerator tcg: VMTEST_ACCEL=tcg'
    VMTEST_ACCEL=kvm check "override kvm" 'accelerator kvm: VMTEST_ACCEL=kvm \(not probed\)'
    [ "$(kvm_calls)" = 0 ] || fail "overrides: QEMU was started under KVM $(kvm_calls) times, want 0"

    out=$(VMTEST_ACCEL=maybe "$vmtest" --kernel "$work/bzImage" --check-accel 2>&1); rc=$?
    echo "bad VMTEST_ACCEL: exit $rc: $out"
    [ $rc = 2 ] || fail "VMTEST_ACCEL=maybe: exit $rc, want 2 (usage)"

    VMTEST_KVM_DEVICE=$work/absent check "no KVM device" "accelerator tcg: no $work/absent"
    if [ "$(id -u)" != 0 ]; then
      chmod 000 "$work/kvm"
      check "KVM device not writable" 'accelerator tcg: .* is not writable'
      chmod 644 "$work/kvm"
    fi

    ;;
  fallback-boot)
    [ -n "$real_qemu" ] || { echo "SKIP: qemu-system-x86_64 is missing (tools/install-deps)"; exit 77; }
    kernel=${VMTEST_KERNEL:-6.1}
    "$vmtest" --kernel "$kernel" --prepare
    rc=$?
    [ $rc = 77 ] && { echo "SKIP: tools/vmtest cannot run here (reason above)"; exit 77; }
    [ $rc = 0 ] || { echo "FAIL: tools/vmtest --prepare exited $rc"; exit 1; }
    # The probe's success path: the real kernel boots to its root-mount panic under a
    # "KVM" that works (TCG behind the fake), so KVM is chosen.
    fake_qemu works
    out=$(PATH="$fake_bin:$PATH" "$vmtest" --kernel "$kernel" --check-accel 2>&1)
    echo "working KVM: $out"
    grep -q 'accelerator kvm: the kernel booted under KVM' <<<"$out" || fail "a working KVM was not chosen"

    fake_qemu abort
    # The kernel cache is shared; the probe's memo is keyed by the QEMU binary, so the fake's
    # answer never stands for the real QEMU's.
    out=$(PATH="$fake_bin:$PATH" "$vmtest" --kernel "$kernel" --mem 512M --no-features -- \
      sh -c 'echo vmtest-fallback-ok; exit 7' 2>&1)
    rc=$?
    echo "$out" | grep -E '^vmtest: (accelerator|KVM|booting|timing)|vmtest-fallback-ok'
    [ $rc = 7 ] || { fail "boot after a failed KVM probe: exit $rc, want the command's 7"; echo "$out" | tail -20; }
    grep -q 'KVM present but unusable (QEMU exit 134' <<<"$out" || fail "no 'KVM present but unusable' line"
    grep -q '^vmtest-fallback-ok$' <<<"$out" || fail "the command's output did not come back"
    grep -qE '^vmtest: timing: .*; tcg,' <<<"$out" || fail "the timing line does not say tcg"
    ;;
  *) echo "unknown case '$case_name'"; exit 2 ;;
esac

[ $failures = 0 ] && echo "PASS: $case_name" || exit 1
