#include "bench/new_flows.h"

#include <arpa/inet.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <thread>

#include "afxdp/checksum.h"

namespace gpo::bench {

namespace {

constexpr uint64_t kPorts = 65536 - 1024;  // source ports 1024..65535 per address
constexpr uint64_t kAddrs = 65536;         // source addresses 198.19.0.0/16

}  // namespace

std::string NewFlowGenerator::source_ip(uint64_t index) {
  const uint64_t a = (index / kPorts) % kAddrs;
  return "198.19." + std::to_string(a >> 8) + "." + std::to_string(a & 0xff);
}

uint16_t NewFlowGenerator::source_port(uint64_t index) { return uint16_t(1024 + index % kPorts); }

std::vector<uint8_t> NewFlowGenerator::frame(const NewFlowOptions& o, uint64_t index) {
  std::vector<uint8_t> f(14 + 20 + 8 + o.payload, 0);
  std::memcpy(&f[0], o.dst_mac, 6);
  std::memcpy(&f[6], o.src_mac, 6);
  f[12] = 0x08;  // IPv4
  uint8_t* ip = &f[14];
  const uint16_t total = uint16_t(20 + 8 + o.payload);
  ip[0] = 0x45;
  ip[2] = uint8_t(total >> 8);
  ip[3] = uint8_t(total);
  ip[8] = 64;
  ip[9] = 17;
  const uint64_t a = (index / kPorts) % kAddrs;
  ip[12] = 198;
  ip[13] = 19;
  ip[14] = uint8_t(a >> 8);
  ip[15] = uint8_t(a);
  in_addr dst{};
  if (inet_pton(AF_INET, o.dst_ip.c_str(), &dst) != 1) throw std::runtime_error("bad destination " + o.dst_ip);
  std::memcpy(ip + 16, &dst, 4);
  afxdp::set_ipv4_header_checksum(ip);
  uint8_t* udp = ip + 20;
  const uint16_t sport = source_port(index);
  udp[0] = uint8_t(sport >> 8);
  udp[1] = uint8_t(sport);
  udp[2] = uint8_t(o.dst_port >> 8);
  udp[3] = uint8_t(o.dst_port);
  udp[4] = uint8_t((8 + o.payload) >> 8);
  udp[5] = uint8_t(8 + o.payload);  // checksum 0: none (IPv4)
  for (uint32_t i = 0; i < o.payload; i++) udp[8 + i] = uint8_t('a' + (index + i) % 26);
  return f;
}

NewFlowGenerator::NewFlowGenerator(const NewFlowOptions& o) : o_(o), next_(o.first) {
  if (o_.batch == 0) o_.batch = 1;
  fd_ = o.fd;
  if (fd_ < 0) {
    fd_ = socket(AF_PACKET, SOCK_RAW | SOCK_CLOEXEC, 0);
    if (fd_ < 0) throw std::runtime_error(std::string("AF_PACKET socket: ") + std::strerror(errno));
    own_fd_ = true;
  }
  int one = 1;
  setsockopt(fd_, SOL_PACKET, PACKET_QDISC_BYPASS, &one, sizeof one);  // best effort
  sockaddr_ll sa{};
  sa.sll_family = AF_PACKET;
  sa.sll_protocol = 0;  // send only
  sa.sll_ifindex = o.ifindex;
  if (bind(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    const int e = errno;
    if (own_fd_) close(fd_);
    throw std::runtime_error(std::string("binding the AF_PACKET socket: ") + std::strerror(e));
  }
}

NewFlowGenerator::~NewFlowGenerator() {
  if (own_fd_ && fd_ >= 0) close(fd_);
}

NewFlowGenerator::Result NewFlowGenerator::send(uint64_t count, double pps, double max_seconds) {
  const size_t len = 14 + 20 + 8 + o_.payload;
  std::vector<uint8_t> buf(size_t(o_.batch) * len);
  std::vector<iovec> iov(o_.batch);
  std::vector<mmsghdr> msgs(o_.batch);
  Result r;
  const auto t0 = std::chrono::steady_clock::now();
  const auto deadline = t0 + std::chrono::duration<double>(max_seconds);
  while (r.sent < count && std::chrono::steady_clock::now() < deadline) {
    if (pps > 0) std::this_thread::sleep_until(t0 + std::chrono::duration<double>(double(r.sent) / pps));
    const uint32_t n = uint32_t(std::min<uint64_t>(o_.batch, count - r.sent));
    for (uint32_t i = 0; i < n; i++) {
      auto f = frame(o_, next_ + i);
      std::memcpy(&buf[size_t(i) * len], f.data(), len);
      iov[i] = {&buf[size_t(i) * len], len};
      msgs[i] = {};
      msgs[i].msg_hdr.msg_iov = &iov[i];
      msgs[i].msg_hdr.msg_iovlen = 1;
    }
    int got = sendmmsg(fd_, msgs.data(), n, 0);
    if (got < 0) {
      if (errno == ENOBUFS || errno == EAGAIN || errno == EINTR) {
        std::this_thread::sleep_for(std::chrono::microseconds(50));
        continue;
      }
      throw std::runtime_error(std::string("sendmmsg: ") + std::strerror(errno));
    }
    next_ += uint64_t(got);
    r.sent += uint64_t(got);
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace gpo::bench
