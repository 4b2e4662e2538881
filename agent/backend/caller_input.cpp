#include "backend/caller_input.h"

#include <sys/syscall.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

namespace gpo::backend {
namespace {

// The calling thread's credentials, swapped for a client's and back. The raw
// system calls change this thread's alone (glibc's setresuid() would change
// every thread of the agent). The saved uid stays 0, so the thread keeps its
// permitted capabilities and gets them back as effective ones when its
// effective uid is 0 again; while it is the client's, it has none.
class AsCaller {
 public:
  AsCaller(uid_t uid, gid_t gid) {
    if (geteuid() != 0 || uid == 0) return;  // reads with what the agent is
    if (syscall(SYS_getresgid, &rg_, &eg_, &sg_) != 0) {
      failed_ = true;
      return;
    }
    if (syscall(SYS_setresgid, gid, gid, sg_) != 0) {
      failed_ = true;
      return;
    }
    if (syscall(SYS_setresuid, uid, uid, 0) != 0) {
      const int e = errno;
      restore_gid();
      errno = e;
      failed_ = true;
      return;
    }
    switched_ = true;
  }
  ~AsCaller() {
    if (!switched_) return;
    const int e = errno;
    // Back to root first: only root may set the group back. A thread that
    // could not get back would serve the next job as the client: abort.
    if (syscall(SYS_setresuid, 0, 0, 0) != 0) std::abort();
    restore_gid();
    errno = e;
  }
  AsCaller(const AsCaller&) = delete;
  AsCaller& operator=(const AsCaller&) = delete;
  bool failed() const { return failed_; }

 private:
  void restore_gid() {
    if (syscall(SYS_setresgid, rg_, eg_, sg_) != 0) std::abort();
  }
  gid_t rg_ = 0, eg_ = 0, sg_ = 0;
  bool switched_ = false, failed_ = false;
};

}  // namespace

bool read_caller(const CallerInput& from, uint64_t off, std::span<uint8_t> dst) {
  AsCaller as(from.uid, from.gid);
  if (as.failed()) return false;
  size_t done = 0;
  while (done < dst.size()) {
    iovec local{dst.data() + done, dst.size() - done};
    iovec remote{reinterpret_cast<void*>(uintptr_t(from.addr + off + done)), dst.size() - done};
    const ssize_t n = process_vm_readv(from.pid, &local, 1, &remote, 1, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      if (n == 0) errno = EFAULT;
      return false;
    }
    done += size_t(n);  // a partial read stops at a page it could not read: the next call says why
  }
  return true;
}

bool fill_from_caller(Job& j) {
  if (!j.caller.pid) return true;
  std::span<uint8_t> in{const_cast<uint8_t*>(j.in.data()), j.in.size()};
  const bool ok = read_caller(j.caller, 0, in);
  j.caller = {};
  if (!ok) j.status = Status::failed;
  return ok;
}

}  // namespace gpo::backend
