#include "spot/flags.h"

namespace gpo::spot {

void add_spot_flags(CLI::App* cmd, SpotFlags& f) {
  cmd->add_option("--spot-mode", f.mode,
                  "sample: find hot processes by CPU sampling (no per-call cost), then probe only those, briefly; "
                  "probe: probe every call of every process (each call pays a trap); off: no spotting")
      ->check(CLI::IsMember({"sample", "probe", "off"}))
      ->capture_default_str();
  cmd->add_option("--spot-sample-hz", f.sample_hz, "sample mode: samples per second per CPU")
      ->check(CLI::Range(1u, 10000u))
      ->capture_default_str();
  cmd->add_option("--spot-hot", f.hot,
                  "sample mode: a process is measured when an op takes this share of one CPU (0.05 = 5%)")
      ->check(CLI::Range(0.001, 64.0))
      ->capture_default_str();
  cmd->add_option("--spot-window-calls", f.window_calls, "sample mode: calls measured per probe window")
      ->check(CLI::Range(uint64_t{1}, uint64_t{1} << 32))
      ->capture_default_str();
  cmd->add_option("--spot-remeasure", f.remeasure_s, "sample mode: seconds before a measured process and op is measured again")
      ->check(CLI::Range(1u, 86400u))
      ->capture_default_str();
  cmd->add_option("--spot-threshold", f.thresholds,
                  "OP=BYTES: calls of OP at or over BYTES are reported one by one (default 64K for every op; "
                  "smaller calls only count in the size histogram). OP 'all' sets every op. Repeatable.")
      ->type_name("OP=BYTES");
  cmd->add_option("--spot-lib", f.libs, "also attach to this library file (libcrypto.so*, libzstd.so*, libz.so*)")
      ->type_name("PATH");
  cmd->add_flag("--spot-no-kernel", f.no_kernel, "do not try kprobes on kernel crypto/zstd");
  cmd->add_flag("--spot-no-proc-scan", f.no_proc_scan,
                "find libraries through /etc/ld.so.cache only, not the maps of running processes");
}

SpotOptions make_spot_options(const SpotFlags& f) {
  SpotOptions o;
  for (const auto& t : f.thresholds)
    if (auto err = apply_threshold(o.thresholds, t); !err.empty()) throw CLI::ValidationError("--spot-threshold", err);
  o.libraries.extra = f.libs;
  o.libraries.scan_processes = !f.no_proc_scan;
  o.kernel = !f.no_kernel;
  o.mode = mode_from_name(f.mode).value_or(Mode::sample);
  o.sample_hz = f.sample_hz;
  o.windows.hot_cpu = f.hot;
  o.windows.max_calls = f.window_calls;
  o.windows.cooldown = std::chrono::seconds(f.remeasure_s);
  return o;
}

}  // namespace gpo::spot
