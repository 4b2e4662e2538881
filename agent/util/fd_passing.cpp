#include "util/fd_passing.h"

#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cstring>

namespace gpo::util {

ssize_t send_with_fd(int sock, const void* msg, size_t len, int fd) {
  alignas(cmsghdr) char ctl[CMSG_SPACE(sizeof(int))]{};
  iovec iov{const_cast<void*>(msg), len};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = ctl;
  mh.msg_controllen = sizeof(ctl);
  cmsghdr* cm = CMSG_FIRSTHDR(&mh);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(cm), &fd, sizeof(int));
  return sendmsg(sock, &mh, MSG_NOSIGNAL);
}

Received recv_with_fd(int sock, void* buf, size_t cap, int flags) {
  // Room for a few: descriptors beyond the control buffer are dropped by the
  // kernel, those within it are installed and must be closed here.
  alignas(cmsghdr) char ctl[CMSG_SPACE(sizeof(int) * 4)];
  iovec iov{buf, cap};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = ctl;
  mh.msg_controllen = sizeof(ctl);
  Received r;
  r.len = recvmsg(sock, &mh, flags | MSG_CMSG_CLOEXEC);
  if (r.len < 0) return r;
  r.truncated = (mh.msg_flags & MSG_TRUNC) != 0;
  for (cmsghdr* cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
    if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
    const size_t n = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < n; ++i) {
      int f;
      std::memcpy(&f, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
      if (!r.fd.valid()) r.fd.reset(f);
      else close(f);
    }
  }
  return r;
}

}  // namespace gpo::util
