// The built-in suites, in the order `bench` runs them. Each suite file defines
// its register_<name>_bench(); add the declaration and the call here.
#include "bench/bench.h"

namespace gpo::bench {

void register_builtin_suites() {
}

}  // namespace gpo::bench
