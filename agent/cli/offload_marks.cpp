#include "cli/offload_marks.h"

#include <dirent.h>

#include <cstdlib>
#include <fstream>

namespace gpo::cli {

std::string OffloadMark::via() const {
  std::string v;
  auto add = [&](const char* s) { v += (v.empty() ? "" : "+") + std::string(s); };
  if (shim) add("shim");
  if (provider) add("provider");
  if (!shim && !provider && library) add("lib");
  return v + (slab ? "*" : "");
}

std::map<int, OffloadMark> scan_offloaded(const std::string& proc) {
  std::map<int, OffloadMark> out;
  DIR* d = opendir(proc.c_str());
  if (!d) return out;
  while (dirent* e = readdir(d)) {
    char* end = nullptr;
    const long pid = std::strtol(e->d_name, &end, 10);
    if (!end || *end || pid <= 0) continue;
    std::ifstream maps(proc + "/" + e->d_name + "/maps");
    OffloadMark m;
    for (std::string line; std::getline(maps, line);) {
      if (line.find("libgpuoffload-shim.so") != std::string::npos) m.shim = true;
      else if (line.find("libgpuoffload.so") != std::string::npos) m.library = true;
      else if (line.find("/gpuoffload.so") != std::string::npos) m.provider = true;
      else if (line.find("/memfd:gpuoffload-slab") != std::string::npos) m.slab = true;
    }
    if (!(m.shim || m.provider || m.library)) continue;
    std::ifstream comm(proc + "/" + e->d_name + "/comm");
    std::getline(comm, m.comm);
    out[int(pid)] = m;
  }
  closedir(d);
  return out;
}

}  // namespace gpo::cli
