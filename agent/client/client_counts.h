// The library's job counters without its connection state: what the at-exit
// report (stats.cpp) may read. It runs after static destructors, when the
// connection (client.cpp) is already gone.
#pragma once
#include "gpuoffload.h"

namespace gpo::client {

// gpo_client_stats with every counter filled and the connection fields
// (connected, doorbell, slab_id) zero.
gpo_client_stats counts();

}  // namespace gpo::client
