// Which processes are being offloaded, and by what path, as their own memory
// maps say (for `top`): the shim preloaded, the OpenSSL provider loaded,
// libgpuoffload linked, and a slab registered with an agent (the memfd the
// library creates when it connects). Read from /proc/PID/maps: no agent
// state and no privilege beyond reading other processes' maps.
#pragma once
#include <map>
#include <string>

namespace gpo::cli {

struct OffloadMark {
  bool shim = false, provider = false, library = false, slab = false;
  std::string comm;
  // "shim+provider", "provider", "lib" ...; a trailing "*" when a slab is registered.
  std::string via() const;
};

// Every process that has libgpuoffload mapped (directly, or under the shim or the provider).
std::map<int, OffloadMark> scan_offloaded(const std::string& proc = "/proc");

}  // namespace gpo::cli
