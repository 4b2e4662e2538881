// The counts file: where a process under `gpuoffload-agent exec` keeps its
// per-op tallies while it runs (GPO_STATS_DIR/PID.counts, mapped shared), so
// that they outlive a process that is killed. Written by libgpuoffload
// (stats.cpp), read by `exec` (cmd_exec.cpp) for every process that left no
// PID.json, the report a process writes when it ends by exit or _exit.
//
// Layout: a header of one page, then `blocks` blocks of `ops` x `paths`
// cells, one block per thread that counted. A cell is three 64-bit counts
// (calls, bytes, ns) that only its thread writes.
#pragma once
#include <cstdint>

#include "gpuoffload.h"

namespace gpo::client {

constexpr uint32_t kCountsMagic = 0x43504f47u;  // "GPOC"
constexpr uint32_t kCountsVersion = 1;
constexpr int kCountOps = 16;  // op ids of gpuoffload.h, with room
constexpr uint32_t kCountsHeaderBytes = 4096;

struct CountsHeader {
  uint32_t magic, version;
  uint32_t ops, paths;  // kCountOps, GPO_PATH_COUNT
  uint32_t blocks;      // blocks in the file
  int32_t pid, ppid;
  uint32_t reserved;
  char argv0[256];      // the process's argv[0] when the file was made
};
static_assert(sizeof(CountsHeader) <= kCountsHeaderBytes);

// A block as it lies in the file: [op][path][calls, bytes, ns].
using CountsBlock = uint64_t[kCountOps][GPO_PATH_COUNT][3];

}  // namespace gpo::client
