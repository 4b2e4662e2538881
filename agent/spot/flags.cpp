#include "spot/flags.h"

namespace gpo::spot {

void add_spot_flags(CLI::App* cmd, SpotFlags& f) {
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
  return o;
}

}  // namespace gpo::spot
