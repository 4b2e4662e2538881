// A file descriptor passed with a message over a Unix socket (SCM_RIGHTS):
// how a client hands its slab's memfd to the agent.
#pragma once
#include <sys/types.h>

#include <cstddef>

#include "util/unique_fd.h"

namespace gpo::util {

// Sends len bytes at msg with fd attached, as one message. MSG_NOSIGNAL: a
// peer that is gone is an error (EPIPE), not a SIGPIPE. Returns the bytes
// sent, or -1 with errno set.
ssize_t send_with_fd(int sock, const void* msg, size_t len, int fd);

struct Received {
  ssize_t len = -1;         // bytes read into the buffer; 0: the peer closed; -1: errno says why
  UniqueFd fd;              // the first descriptor that came with it (close-on-exec); none: not valid()
  bool truncated = false;   // the message was longer than the buffer: the rest is gone
};

// Receives one message into buf (at most cap bytes) and the descriptor
// passed with it. Any further descriptors are closed: a peer cannot make the
// receiver hold more than one per message. flags are recvmsg's (MSG_DONTWAIT).
Received recv_with_fd(int sock, void* buf, size_t cap, int flags = 0);

}  // namespace gpo::util
