// util/fd_passing: a descriptor sent with a message arrives as one that
// refers to the same open file; a message without one, a message longer than
// the buffer and extra descriptors are each told apart.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string_view>

#include "util/fd_passing.h"

namespace {

using gpo::util::recv_with_fd;
using gpo::util::send_with_fd;
using gpo::util::UniqueFd;

struct SocketPair {
  UniqueFd a, b;
  SocketPair() {
    int sv[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv), 0);
    a.reset(sv[0]);
    b.reset(sv[1]);
  }
};

UniqueFd memfd_with(const char* text) {
  UniqueFd f(memfd_create("fd_passing", MFD_CLOEXEC));
  EXPECT_TRUE(f.valid());
  EXPECT_EQ(write(f.get(), text, std::strlen(text)), ssize_t(std::strlen(text)));
  return f;
}

bool same_file(int x, int y) {
  struct stat sx {}, sy {};
  return fstat(x, &sx) == 0 && fstat(y, &sy) == 0 && sx.st_dev == sy.st_dev && sx.st_ino == sy.st_ino;
}

int open_fd_count() {
  int n = 0;
  for (int fd = 0; fd < 1024; ++fd) n += fcntl(fd, F_GETFD) >= 0;
  return n;
}

// Sends msg from one end, with fd attached unless it is -1, and receives it
// at the other into buf.
gpo::util::Received pass(const SocketPair& sp, std::string_view msg, int fd, char* buf, size_t cap) {
  const ssize_t sent = fd >= 0 ? send_with_fd(sp.a.get(), msg.data(), msg.size(), fd)
                               : send(sp.a.get(), msg.data(), msg.size(), 0);
  EXPECT_EQ(sent, ssize_t(msg.size()));
  return recv_with_fd(sp.b.get(), buf, cap);
}

TEST(FdPassing, TheDescriptorArrivesAndRefersToTheSameFile) {
  SocketPair sp;
  UniqueFd sent = memfd_with("slab");
  char buf[64]{};
  const gpo::util::Received r = pass(sp, "register", sent.get(), buf, sizeof buf);
  ASSERT_EQ(r.len, ssize_t(8));
  EXPECT_EQ(std::string_view(buf, 8), "register");
  EXPECT_FALSE(r.truncated);
  ASSERT_TRUE(r.fd.valid());
  EXPECT_NE(r.fd.get(), sent.get()) << "a new descriptor in the receiver";
  EXPECT_TRUE(same_file(r.fd.get(), sent.get()));
  EXPECT_EQ(fcntl(r.fd.get(), F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
  // The same open file: what one side wrote, the other reads, at the offset both share.
  char back[8]{};
  EXPECT_EQ(pread(r.fd.get(), back, 4, 0), 4);
  EXPECT_STREQ(back, "slab");
  EXPECT_EQ(lseek(sent.get(), 0, SEEK_CUR), lseek(r.fd.get(), 0, SEEK_CUR));
}

TEST(FdPassing, AMessageWithoutADescriptorComesWithNone) {
  SocketPair sp;
  char buf[64]{};
  const gpo::util::Received r = pass(sp, "doorbell", -1, buf, sizeof buf);
  EXPECT_EQ(r.len, ssize_t(8));
  EXPECT_EQ(std::string_view(buf, 8), "doorbell");
  EXPECT_FALSE(r.fd.valid());
  EXPECT_FALSE(r.truncated);
}

TEST(FdPassing, ALongerMessageIsTruncatedAndItsDescriptorStillArrives) {
  SocketPair sp;
  UniqueFd sent = memfd_with("x");
  char buf[4]{};
  gpo::util::Received r = pass(sp, "0123456789abcdef", sent.get(), buf, sizeof buf);
  EXPECT_EQ(r.len, ssize_t(sizeof buf)) << "only what fits";
  EXPECT_TRUE(r.truncated);
  EXPECT_EQ(std::string_view(buf, 4), "0123");
  ASSERT_TRUE(r.fd.valid());
  EXPECT_TRUE(same_file(r.fd.get(), sent.get()));
  // SOCK_SEQPACKET: the rest of that message is gone, the next one is whole.
  r = pass(sp, "next", -1, buf, sizeof buf);
  EXPECT_EQ(r.len, 4);
  EXPECT_EQ(std::string_view(buf, 4), "next");
  EXPECT_FALSE(r.truncated);
}

// A peer that attaches several descriptors leaves the receiver holding one.
TEST(FdPassing, ExtraDescriptorsAreClosed) {
  SocketPair sp;
  UniqueFd f1 = memfd_with("1"), f2 = memfd_with("2"), f3 = memfd_with("3");
  const int fds[3] = {f1.get(), f2.get(), f3.get()};
  char msg = 'm';
  alignas(cmsghdr) char ctl[CMSG_SPACE(sizeof fds)]{};
  iovec iov{&msg, 1};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = ctl;
  mh.msg_controllen = sizeof ctl;
  cmsghdr* cm = CMSG_FIRSTHDR(&mh);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(sizeof fds);
  std::memcpy(CMSG_DATA(cm), fds, sizeof fds);
  ASSERT_EQ(sendmsg(sp.a.get(), &mh, 0), 1);

  const int before = open_fd_count();
  char buf[8];
  gpo::util::Received r = recv_with_fd(sp.b.get(), buf, sizeof buf);
  EXPECT_EQ(r.len, 1);
  ASSERT_TRUE(r.fd.valid());
  EXPECT_TRUE(same_file(r.fd.get(), f1.get())) << "the first one is kept";
  EXPECT_EQ(open_fd_count(), before + 1) << "the other two were closed";
}

TEST(FdPassing, EndOfStreamAndAGonePeer) {
  SocketPair sp;
  UniqueFd f = memfd_with("x");
  sp.a.reset();
  char buf[8];
  gpo::util::Received r = recv_with_fd(sp.b.get(), buf, sizeof buf);
  EXPECT_EQ(r.len, 0) << "the peer closed";
  EXPECT_FALSE(r.fd.valid());
  // Sending to a closed peer fails with EPIPE instead of raising SIGPIPE.
  errno = 0;
  EXPECT_EQ(send_with_fd(sp.b.get(), "m", 1, f.get()), -1);
  EXPECT_EQ(errno, EPIPE);
}

TEST(FdPassing, NothingWaitingWithDontWait) {
  SocketPair sp;
  char buf[8];
  errno = 0;
  gpo::util::Received r = recv_with_fd(sp.b.get(), buf, sizeof buf, MSG_DONTWAIT);
  EXPECT_EQ(r.len, -1);
  EXPECT_EQ(errno, EAGAIN);
  EXPECT_FALSE(r.fd.valid());
}

TEST(UniqueFd, ClosesOnResetAndMoveAndNotOnRelease) {
  int raw = memfd_create("unique", MFD_CLOEXEC);
  ASSERT_GE(raw, 0);
  {
    UniqueFd a(raw);
    UniqueFd b(std::move(a));
    EXPECT_FALSE(a.valid());
    EXPECT_EQ(b.get(), raw);
    EXPECT_GE(fcntl(raw, F_GETFD), 0) << "a move does not close";
  }
  EXPECT_EQ(fcntl(raw, F_GETFD), -1) << "closed when its owner went";
  raw = memfd_create("unique", MFD_CLOEXEC);
  {
    UniqueFd a(raw);
    EXPECT_EQ(a.release(), raw);
  }
  EXPECT_GE(fcntl(raw, F_GETFD), 0) << "released: the caller owns it";
  UniqueFd c(raw);
  c = UniqueFd();
  EXPECT_EQ(fcntl(raw, F_GETFD), -1) << "assigning over it closes it";
}

}  // namespace
