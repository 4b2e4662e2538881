// The CPUs this process may run on (its affinity mask), in order: where the
// CPU backend pins its workers and the offload service its doorbell threads.
#pragma once
#include <cstdint>
#include <vector>

namespace gpo::util {

std::vector<int32_t> allowed_cpus();  // empty when the mask cannot be read

}  // namespace gpo::util
