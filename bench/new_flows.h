// A generator of new flows for the packet filter's miss path: every frame a
// UDP datagram of a 5-tuple not seen before (sources 198.19.0.0/16, ports
// 1024-65535), sent from an AF_PACKET socket with sendmmsg (hundreds of
// frames per system call, no qdisc), paced, bounded in count and in time.
// For `bench xdp` and the flood tests; only ever aimed at a veth inside a
// test namespace (198.18.0.0/15 addresses).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace gpo::bench {

struct NewFlowOptions {
  int fd = -1;       // an AF_PACKET SOCK_RAW socket made in the sender's namespace (-1: make one here)
  int ifindex = 0;   // the interface to send out of, in that namespace
  uint8_t src_mac[6] = {2, 0, 0, 0, 0, 1};
  uint8_t dst_mac[6] = {2, 0, 0, 0, 0, 2};
  std::string dst_ip = "198.18.0.2";
  uint16_t dst_port = 9;
  uint64_t first = 0;     // index of the first flow: a later run with a higher one sends fresh tuples
  uint32_t payload = 18;  // UDP payload bytes (18: a 64-byte frame with the FCS)
  uint32_t batch = 256;   // frames per sendmmsg
};

class NewFlowGenerator {
 public:
  explicit NewFlowGenerator(const NewFlowOptions& o);  // throws std::runtime_error
  ~NewFlowGenerator();
  NewFlowGenerator(const NewFlowGenerator&) = delete;
  NewFlowGenerator& operator=(const NewFlowGenerator&) = delete;

  struct Result {
    uint64_t sent = 0;     // frames the kernel took (a full veth ring drops some after that)
    double seconds = 0;
    double rate() const { return seconds > 0 ? double(sent) / seconds : 0; }
  };
  // count new flows at `pps` (0: as fast as the socket takes them), for at
  // most max_seconds. Flow indices continue from one call to the next.
  Result send(uint64_t count, double pps, double max_seconds);

  // The frame of flow `index` (Ethernet, IPv4 with its checksum, UDP without).
  static std::vector<uint8_t> frame(const NewFlowOptions& o, uint64_t index);
  // Its source address and port.
  static std::string source_ip(uint64_t index);
  static uint16_t source_port(uint64_t index);

 private:
  NewFlowOptions o_;
  int fd_ = -1;
  bool own_fd_ = false;
  uint64_t next_ = 0;
};

}  // namespace gpo::bench
