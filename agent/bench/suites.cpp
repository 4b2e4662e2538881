// The built-in suites, in the order `bench` runs them. Each suite file defines
// its register_<name>_bench(); add the declaration and the call here.
#include "bench/bench.h"

namespace gpo::bench {

void register_crypto_bench();
void register_planner_bench();
void register_classify_bench();
void register_rules_load_bench();

#ifdef GPUOFFLOAD_HAVE_CUDA
void register_zstd_bench();
void register_zstd_stage2_bench();
#endif

void register_match_bench();

void register_tier2_bench();
void register_xdp_bench();

void register_builtin_suites() {
  register_tier2_bench();
  register_match_bench();
  register_crypto_bench();
  register_planner_bench();
  register_classify_bench();
  register_xdp_bench();
  register_rules_load_bench();
#ifdef GPUOFFLOAD_HAVE_CUDA
  register_zstd_bench();
  register_zstd_stage2_bench();
#endif
}

}  // namespace gpo::bench
