#include "spot/uprobe_multi.h"

#include <bpf/bpf.h>
#include <linux/bpf.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace gpo::spot {
namespace {

// union bpf_attr's link_create with its uprobe_multi member, as in the
// kernel's include/uapi/linux/bpf.h (6.6+).
struct LinkCreateUprobeMulti {
  uint32_t prog_fd;
  uint32_t target_fd;
  uint32_t attach_type;
  uint32_t flags;
  uint64_t path;
  uint64_t offsets;
  uint64_t ref_ctr_offsets;
  uint64_t cookies;
  uint32_t cnt;
  uint32_t multi_flags;
  uint32_t pid;
};

int link_create(int prog_fd, const char* path, const uint64_t* offsets, const uint64_t* cookies, uint32_t cnt,
                uint32_t pid) {
  union {
    LinkCreateUprobeMulti lc;
    char bytes[128];  // at least the kernel's union bpf_attr up to the fields used
  } attr;
  std::memset(&attr, 0, sizeof attr);
  attr.lc.prog_fd = uint32_t(prog_fd);
  attr.lc.attach_type = kBpfTraceUprobeMulti;
  attr.lc.path = uint64_t(uintptr_t(path));
  attr.lc.offsets = uint64_t(uintptr_t(offsets));
  attr.lc.cookies = uint64_t(uintptr_t(cookies));
  attr.lc.cnt = cnt;
  attr.lc.pid = pid;
  long fd = syscall(__NR_bpf, BPF_LINK_CREATE, &attr, sizeof(LinkCreateUprobeMulti));
  return fd < 0 ? -errno : int(fd);
}

bool probe() {
  struct bpf_insn insns[] = {
      {BPF_ALU64 | BPF_MOV | BPF_K, BPF_REG_0, 0, 0, 0},  // r0 = 0
      {BPF_JMP | BPF_EXIT, 0, 0, 0, 0},                   // exit
  };
  LIBBPF_OPTS(bpf_prog_load_opts, lo, .expected_attach_type = bpf_attach_type(kBpfTraceUprobeMulti));
  int prog = bpf_prog_load(BPF_PROG_TYPE_KPROBE, nullptr, "GPL", insns, 2, &lo);
  if (prog < 0) return false;
  uint64_t off = 0;
  // A uprobe in "/" (a directory) fails with EBADF where the link type exists...
  int fd = link_create(prog, "/", &off, nullptr, 1, 0);
  bool ok = fd == -EBADF;
  if (fd >= 0) close(fd);
  // ...and an invalid pid with EINVAL where pid filtering is per process (the
  // first kernels with these links filtered one thread, not the process).
  if (ok) {
    fd = link_create(prog, "/", &off, nullptr, 1, uint32_t(-1));
    ok = fd == -EINVAL;
    if (fd >= 0) close(fd);
  }
  close(prog);
  return ok;
}

}  // namespace

bool uprobe_multi_supported() {
  static const bool supported = probe();
  return supported;
}

int uprobe_multi_attach(int prog_fd, const std::string& path, const std::vector<uint64_t>& offsets,
                        const std::vector<uint64_t>& cookies, pid_t pid) {
  if (offsets.empty() || cookies.size() != offsets.size()) return -EINVAL;
  return link_create(prog_fd, path.c_str(), offsets.data(), cookies.data(), uint32_t(offsets.size()),
                     uint32_t(pid > 0 ? pid : 0));
}

}  // namespace gpo::spot
