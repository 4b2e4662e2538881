// RAII test networks: network namespaces with unique names (pid + counter),
// veth pairs between them, addresses from 198.18.0.0/15, commands and sockets
// inside them, and processes started inside them. Everything created here is
// removed in destructors, also when a test fails half way.
//
// Processes are started in a namespace with setns(CLONE_NEWNET) only (like
// `nsenter --net`), not with `ip netns exec`: the latter also remounts /sys,
// which hides the host's bpffs and with it the agent's pinned maps.
#pragma once
#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "common/proc.h"

namespace gpo::test {

// Runs `ip ARGS...` in the root namespace; returns the result (exit_code 0 = ok).
ProcResult ip(const std::vector<std::string>& args, double timeout_s = 10.0);

class NetNs {
 public:
  // Creates namespace "gpo-TAG-PID-N" with lo up and IPv6 off (no router
  // solicitations or DAD packets that would count as traffic). Throws on failure.
  explicit NetNs(const std::string& tag);
  ~NetNs();
  NetNs(const NetNs&) = delete;
  NetNs& operator=(const NetNs&) = delete;

  const std::string& name() const { return name_; }
  // `ip netns exec NAME argv...` (fine for ip/sysctl; see above for bpffs).
  ProcResult exec(const std::vector<std::string>& argv, double timeout_s = 10.0) const;
  // A socket created inside this namespace (it stays there when used from anywhere).
  int socket(int domain, int type, int protocol = 0) const;
  // Runs fn with the calling thread inside this namespace.
  template <typename F>
  auto within(F fn) const {
    Enter e(*this);
    return fn();
  }
  // ifindex of IFACE inside this namespace (0 = none).
  int ifindex(const std::string& iface) const;

 private:
  struct Enter {
    explicit Enter(const NetNs& ns);
    ~Enter();
    int orig = -1;
  };
  std::string name_;
};

// A veth pair a_if (in a) <-> b_if (in b), both up, with fixed MACs
// 02:00:00:00:KK:01 / 02:00:00:00:KK:02 (KK = mac_tag), so tests can write
// static neighbour entries. Throws on failure. Removed with the namespaces.
// queues > 1: that many rx and tx queues on each end (`numrxqueues N numtxqueues N`).
void make_veth(const NetNs& a, const std::string& a_if, const NetNs& b, const std::string& b_if, int mac_tag,
               int queues = 1);
std::string veth_mac(int mac_tag, int side);  // side 1 = a, 2 = b
void add_addr(const NetNs& ns, const std::string& iface, const std::string& cidr);
// Turns the interface's TX checksum offload on or off (legacy ETHTOOL_STXCSUM).
// Off makes local senders write full checksums, as frames from a wire have.
void set_tx_checksum(const NetNs& ns, const std::string& iface, bool on);
void add_neigh(const NetNs& ns, const std::string& iface, const std::string& ip, const std::string& mac);

// A process started inside a namespace (setns only), its stdout and stderr in
// a log file. The destructor SIGKILLs it if it still runs.
class NsProcess {
 public:
  NsProcess(const NetNs& ns, const std::vector<std::string>& argv, const std::string& log_path);
  ~NsProcess();
  NsProcess(const NsProcess&) = delete;
  NsProcess& operator=(const NsProcess&) = delete;

  pid_t pid() const { return pid_; }
  std::string log() const;
  // Polls the log for needle, at most timeout; false when the process exits or time runs out.
  bool wait_for_log(const std::string& needle, std::chrono::milliseconds timeout) const;
  void signal(int sig) const;
  // Waits at most timeout for exit; returns the exit code, 128+signal, or -1 on timeout.
  int wait(std::chrono::milliseconds timeout);
  bool running();

 private:
  pid_t pid_ = -1;
  std::string log_path_;
  int status_ = -1;
};

// Attaches a one-instruction XDP_PASS program to iface (native mode). On veth,
// frames an XDP program redirects into a veth reach the far end only when
// that end runs NAPI (an XDP program there, or GRO): what docs/packet-filter.md
// asks of users who bridge veths. Throws on failure.
void attach_xdp_pass(const NetNs& ns, const std::string& iface);

// A counter of /proc/net/snmp (e.g. "Tcp", "InSegs") as the namespace sees it.
uint64_t snmp_counter(const NetNs& ns, const std::string& proto, const std::string& field);

// Raw frames: sends one L2 frame out of iface (AF_PACKET).
void send_frame(const NetNs& ns, const std::string& iface, const std::vector<uint8_t>& frame);

// Everything iface receives while it is open (AF_PACKET, all protocols).
class FrameCapture {
 public:
  FrameCapture(const NetNs& ns, const std::string& iface);
  ~FrameCapture();
  FrameCapture(const FrameCapture&) = delete;
  FrameCapture& operator=(const FrameCapture&) = delete;
  // Frames received until timeout or until max frames (VLAN tags the kernel
  // moved out of the data come back in place, so frames read as sent).
  std::vector<std::vector<uint8_t>> collect(std::chrono::milliseconds timeout, size_t max = 100000);

 private:
  int fd_ = -1;
};
// Does the byte string occur in the frame?
bool frame_contains(const std::vector<uint8_t>& frame, const std::string& needle);

// ICMP echo from src_ip to dst_ip (raw socket in ns); true when the reply
// comes within timeout.
bool icmp_echo(const NetNs& ns, const std::string& src_ip, const std::string& dst_ip,
               std::chrono::milliseconds timeout, uint16_t seq = 1);

// UDP helpers over sockets from NetNs::socket.
int udp_bind(const NetNs& ns, const std::string& ip, uint16_t port);  // nonblocking
// Sends payload from (src_ip, src_port) to (dst_ip, dst_port); src_port selects the flow.
bool udp_send(const NetNs& ns, const std::string& src_ip, uint16_t src_port, const std::string& dst_ip,
              uint16_t dst_port, const std::string& payload);
// Datagrams that arrive on fd within timeout (stops early after max_count).
std::vector<std::string> udp_recv_all(int fd, std::chrono::milliseconds timeout, size_t max_count = 1000);

}  // namespace gpo::test
