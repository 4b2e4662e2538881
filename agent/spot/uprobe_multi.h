// uprobe_multi links (kernel 6.6+): many uprobes of one file on one BPF
// program, attached and detached in one step. Detaching per-probe perf links
// costs an RCU grace period each (seconds to minutes for a few dozen probes on
// a loaded machine); a uprobe_multi link costs one for all its probes.
//
// Debian's libbpf (1.1) predates them, so the link is made with the bpf(2)
// syscall directly; the attribute layout is the kernel's UAPI.
#pragma once
#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace gpo::spot {

constexpr uint32_t kBpfTraceUprobeMulti = 48;  // enum bpf_attach_type BPF_TRACE_UPROBE_MULTI

// The kernel has uprobe_multi links with process (not thread) pid filtering
// (6.9+, and backports): the same test libbpf makes. Cached after the first call.
bool uprobe_multi_supported();

// Attaches prog_fd (loaded with expected_attach_type kBpfTraceUprobeMulti) at
// file offsets of path, with one cookie per offset; pid > 0 filters to that
// process (breakpoints are only written into its memory), 0 = every process.
// Returns the link fd, or -errno.
int uprobe_multi_attach(int prog_fd, const std::string& path, const std::vector<uint64_t>& offsets,
                        const std::vector<uint64_t>& cookies, pid_t pid);

}  // namespace gpo::spot
