#include "common/netns.h"

#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <linux/if_ether.h>
#include <linux/if_link.h>
#include <linux/if_packet.h>
#include <netinet/ip_icmp.h>
#include <linux/ethtool.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace gpo::test {

namespace {

std::atomic<int> g_counter{0};

void check(const ProcResult& r, const std::string& what) {
  if (r.exit_code != 0) throw std::runtime_error(what + " failed: " + r.out);
}

int open_netns(const std::string& name) {
  std::string path = "/run/netns/" + name;
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) throw std::runtime_error("open " + path + ": " + std::strerror(errno));
  return fd;
}

}  // namespace

ProcResult ip(const std::vector<std::string>& args, double timeout_s) {
  std::vector<std::string> argv{"ip"};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_proc(argv, timeout_s);
}

NetNs::NetNs(const std::string& tag) {
  name_ = "gpo-" + tag + "-" + std::to_string(getpid()) + "-" + std::to_string(g_counter++);
  check(ip({"netns", "add", name_}), "ip netns add " + name_);
  try {
    check(exec({"ip", "link", "set", "lo", "up"}), "lo up in " + name_);
    // IPv6 off before any veth exists, so no autoconf traffic reaches XDP.
    check(exec({"sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"}), "disable IPv6 in " + name_);
    check(exec({"sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"}), "disable IPv6 in " + name_);
  } catch (...) {
    ip({"netns", "del", name_});
    throw;
  }
}

NetNs::~NetNs() {
  // Deleting the namespace removes its veths (and their peers) and detaches XDP.
  ip({"netns", "del", name_});
}

ProcResult NetNs::exec(const std::vector<std::string>& argv, double timeout_s) const {
  std::vector<std::string> full{"ip", "netns", "exec", name_};
  full.insert(full.end(), argv.begin(), argv.end());
  return run_proc(full, timeout_s);
}

NetNs::Enter::Enter(const NetNs& ns) {
  orig = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
  if (orig < 0) throw std::runtime_error(std::string("open own netns: ") + std::strerror(errno));
  int fd = open_netns(ns.name());
  int rc = setns(fd, CLONE_NEWNET);
  int e = errno;
  close(fd);
  if (rc != 0) {
    close(orig);
    throw std::runtime_error("setns " + ns.name() + ": " + std::strerror(e));
  }
}

NetNs::Enter::~Enter() {
  if (orig >= 0) {
    setns(orig, CLONE_NEWNET);
    close(orig);
  }
}

int NetNs::socket(int domain, int type, int protocol) const {
  return within([&] { return ::socket(domain, type | SOCK_CLOEXEC, protocol); });
}

int NetNs::ifindex(const std::string& iface) const {
  return within([&] { return int(if_nametoindex(iface.c_str())); });
}

std::string veth_mac(int mac_tag, int side) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "02:00:00:00:%02x:%02x", mac_tag & 0xff, side & 0xff);
  return buf;
}

void make_veth(const NetNs& a, const std::string& a_if, const NetNs& b, const std::string& b_if, int mac_tag,
               int queues) {
  std::vector<std::string> args{"link", "add", "name", a_if, "address", veth_mac(mac_tag, 1), "netns", a.name()};
  const std::vector<std::string> q{"numrxqueues", std::to_string(queues), "numtxqueues", std::to_string(queues)};
  if (queues > 1) args.insert(args.end(), q.begin(), q.end());
  for (const char* x : {"type", "veth", "peer", "name"}) args.push_back(x);
  args.push_back(b_if);
  for (auto x : {std::string("address"), veth_mac(mac_tag, 2), std::string("netns"), b.name()}) args.push_back(x);
  if (queues > 1) args.insert(args.end(), q.begin(), q.end());
  check(ip(args), "veth " + a_if + "<->" + b_if);
  check(a.exec({"ip", "link", "set", a_if, "up"}), "link up " + a_if);
  check(b.exec({"ip", "link", "set", b_if, "up"}), "link up " + b_if);
}

void add_addr(const NetNs& ns, const std::string& iface, const std::string& cidr) {
  check(ns.exec({"ip", "addr", "add", cidr, "dev", iface}), "addr " + cidr + " on " + iface);
}

void add_neigh(const NetNs& ns, const std::string& iface, const std::string& addr, const std::string& mac) {
  check(ns.exec({"ip", "neigh", "replace", addr, "lladdr", mac, "dev", iface, "nud", "permanent"}),
        "neigh " + addr + " on " + iface);
}

void set_tx_checksum(const NetNs& ns, const std::string& iface, bool on) {
  int fd = ns.socket(AF_INET, SOCK_DGRAM);
  if (fd < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  ethtool_value v{};
  v.cmd = ETHTOOL_STXCSUM;
  v.data = on ? 1 : 0;
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, iface.c_str(), IFNAMSIZ - 1);
  ifr.ifr_data = reinterpret_cast<char*>(&v);
  int rc = ioctl(fd, SIOCETHTOOL, &ifr);
  int e = errno;
  close(fd);
  if (rc != 0) throw std::runtime_error("tx checksum offload " + iface + ": " + std::strerror(e));
}

NsProcess::NsProcess(const NetNs& ns, const std::vector<std::string>& argv, const std::string& log_path)
    : log_path_(log_path) {
  int nsfd = open_netns(ns.name());
  int logfd = open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (logfd < 0) {
    close(nsfd);
    throw std::runtime_error("open " + log_path + ": " + std::strerror(errno));
  }
  pid_ = fork();
  if (pid_ == 0) {
    if (setns(nsfd, CLONE_NEWNET) != 0) _exit(126);
    dup2(logfd, 1);
    dup2(logfd, 2);
    std::vector<char*> args;
    for (auto& s : argv) args.push_back(const_cast<char*>(s.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  close(nsfd);
  close(logfd);
  if (pid_ < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
}

NsProcess::~NsProcess() {
  if (running()) {
    kill(pid_, SIGKILL);
    wait(std::chrono::seconds(5));
  }
}

std::string NsProcess::log() const {
  std::ifstream in(log_path_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool NsProcess::wait_for_log(const std::string& needle, std::chrono::milliseconds timeout) const {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (std::chrono::steady_clock::now() < deadline) {
    if (log().find(needle) != std::string::npos) return true;
    // Exited (not reaped, so wait() still sees it)? Then one last look.
    siginfo_t si{};
    if (status_ != -1 || (waitid(P_PID, id_t(pid_), &si, WEXITED | WNOHANG | WNOWAIT) == 0 && si.si_pid == pid_))
      return log().find(needle) != std::string::npos;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return false;
}

void NsProcess::signal(int sig) const {
  if (pid_ > 0 && status_ == -1) kill(pid_, sig);
}

bool NsProcess::running() {
  if (pid_ <= 0 || status_ != -1) return false;
  int st = 0;
  pid_t r = waitpid(pid_, &st, WNOHANG);
  if (r == pid_) {
    status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return false;
  }
  return r == 0;
}

int NsProcess::wait(std::chrono::milliseconds timeout) {
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (running()) {
    if (std::chrono::steady_clock::now() >= deadline) return -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return status_;
}

void attach_xdp_pass(const NetNs& ns, const std::string& iface) {
  bpf_insn insns[2] = {};
  insns[0].code = BPF_ALU64 | BPF_MOV | BPF_K;
  insns[0].dst_reg = BPF_REG_0;
  insns[0].imm = XDP_PASS;
  insns[1].code = BPF_JMP | BPF_EXIT;
  int fd = bpf_prog_load(BPF_PROG_TYPE_XDP, "gpo_test_pass", "GPL", insns, 2, nullptr);
  if (fd < 0) throw std::runtime_error(std::string("load XDP_PASS program: ") + std::strerror(errno));
  int rc = ns.within([&] { return bpf_xdp_attach(ns.ifindex(iface), fd, XDP_FLAGS_DRV_MODE, nullptr); });
  close(fd);
  if (rc != 0) throw std::runtime_error("attach XDP_PASS on " + iface + ": " + std::strerror(-rc));
}

uint64_t snmp_counter(const NetNs& ns, const std::string& proto, const std::string& field) {
  // /proc/thread-self/net follows the calling thread's network namespace.
  std::string text = ns.within([] {
    std::ifstream in("/proc/thread-self/net/snmp");
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  });
  std::istringstream lines(text);
  std::string names, values;
  while (std::getline(lines, names) && std::getline(lines, values)) {
    if (names.rfind(proto + ":", 0) != 0) continue;
    std::istringstream n(names), v(values);
    std::string name, value;
    while (n >> name && v >> value)
      if (name == field) return std::stoull(value);
  }
  throw std::runtime_error("no " + proto + " " + field + " in /proc/net/snmp");
}

void send_frame(const NetNs& ns, const std::string& iface, const std::vector<uint8_t>& frame) {
  int fd = ns.socket(AF_PACKET, SOCK_RAW, 0);
  if (fd < 0) throw std::runtime_error(std::string("AF_PACKET socket: ") + std::strerror(errno));
  sockaddr_ll sa{};
  sa.sll_family = AF_PACKET;
  sa.sll_ifindex = ns.ifindex(iface);
  sa.sll_halen = 6;
  std::memcpy(sa.sll_addr, frame.data(), 6);
  ssize_t n = sendto(fd, frame.data(), frame.size(), 0, reinterpret_cast<sockaddr*>(&sa), sizeof sa);
  int e = errno;
  close(fd);
  if (n != ssize_t(frame.size())) throw std::runtime_error("send frame on " + iface + ": " + std::strerror(e));
}

FrameCapture::FrameCapture(const NetNs& ns, const std::string& iface) {
  fd_ = ns.socket(AF_PACKET, SOCK_RAW | SOCK_NONBLOCK, htons(ETH_P_ALL));
  if (fd_ < 0) throw std::runtime_error(std::string("AF_PACKET socket: ") + std::strerror(errno));
  int one = 1;
  setsockopt(fd_, SOL_PACKET, PACKET_AUXDATA, &one, sizeof one);
  sockaddr_ll sa{};
  sa.sll_family = AF_PACKET;
  sa.sll_protocol = htons(ETH_P_ALL);
  sa.sll_ifindex = ns.ifindex(iface);
  if (bind(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    int e = errno;
    close(fd_);
    throw std::runtime_error("bind capture on " + iface + ": " + std::strerror(e));
  }
}

FrameCapture::~FrameCapture() {
  if (fd_ >= 0) close(fd_);
}

std::vector<std::vector<uint8_t>> FrameCapture::collect(std::chrono::milliseconds timeout, size_t max) {
  std::vector<std::vector<uint8_t>> out;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  std::vector<uint8_t> buf(65536);
  while (out.size() < max) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{fd_, POLLIN, 0};
    int n = poll(&p, 1, int(left.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    iovec iov{buf.data(), buf.size()};
    alignas(tpacket_auxdata) char cbuf[CMSG_SPACE(sizeof(tpacket_auxdata))];
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = cbuf;
    mh.msg_controllen = sizeof cbuf;
    ssize_t got = recvmsg(fd_, &mh, MSG_DONTWAIT);
    if (got < 0) continue;
    std::vector<uint8_t> f(buf.begin(), buf.begin() + got);
    for (cmsghdr* c = CMSG_FIRSTHDR(&mh); c; c = CMSG_NXTHDR(&mh, c)) {
      if (c->cmsg_level != SOL_PACKET || c->cmsg_type != PACKET_AUXDATA) continue;
      auto* aux = reinterpret_cast<tpacket_auxdata*>(CMSG_DATA(c));
      if (!(aux->tp_status & TP_STATUS_VLAN_VALID) || f.size() < 12) continue;
      uint16_t tpid = (aux->tp_status & TP_STATUS_VLAN_TPID_VALID) ? aux->tp_vlan_tpid : 0x8100;
      uint8_t tag[4] = {uint8_t(tpid >> 8), uint8_t(tpid), uint8_t(aux->tp_vlan_tci >> 8), uint8_t(aux->tp_vlan_tci)};
      f.insert(f.begin() + 12, tag, tag + 4);
    }
    out.push_back(std::move(f));
  }
  return out;
}

bool frame_contains(const std::vector<uint8_t>& frame, const std::string& needle) {
  return std::search(frame.begin(), frame.end(), needle.begin(), needle.end()) != frame.end();
}

bool icmp_echo(const NetNs& ns, const std::string& src_ip, const std::string& dst_ip,
               std::chrono::milliseconds timeout, uint16_t seq) {
  int fd = ns.socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
  if (fd < 0) return false;
  sockaddr_in src{}, dst{};
  src.sin_family = dst.sin_family = AF_INET;
  inet_pton(AF_INET, src_ip.c_str(), &src.sin_addr);
  inet_pton(AF_INET, dst_ip.c_str(), &dst.sin_addr);
  bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof src);
  uint8_t pkt[16] = {8, 0, 0, 0, 0x47, 0x50, uint8_t(seq >> 8), uint8_t(seq), 'g', 'p', 'o', '-', 'p', 'i', 'n', 'g'};
  uint32_t sum = 0;
  for (size_t i = 0; i < sizeof pkt; i += 2) sum += uint32_t(pkt[i]) << 8 | pkt[i + 1];
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  pkt[2] = uint8_t(~sum >> 8);
  pkt[3] = uint8_t(~sum);
  bool ok = false;
  if (sendto(fd, pkt, sizeof pkt, 0, reinterpret_cast<sockaddr*>(&dst), sizeof dst) == ssize_t(sizeof pkt)) {
    auto deadline = std::chrono::steady_clock::now() + timeout;
    uint8_t buf[1500];
    while (!ok) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) break;
      pollfd p{fd, POLLIN, 0};
      if (poll(&p, 1, int(left.count())) <= 0) break;
      ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n < 28) continue;
      const uint8_t* icmp = buf + (buf[0] & 0x0f) * 4;  // raw ICMP sockets get the IP header
      ok = icmp[0] == 0 && icmp[4] == 0x47 && icmp[5] == 0x50 && icmp[6] == uint8_t(seq >> 8) &&
           icmp[7] == uint8_t(seq);
    }
  }
  close(fd);
  return ok;
}

int udp_bind(const NetNs& ns, const std::string& addr, uint16_t port) {
  int fd = ns.socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK);
  if (fd < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  inet_pton(AF_INET, addr.c_str(), &sa.sin_addr);
  if (bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) != 0) {
    int e = errno;
    close(fd);
    throw std::runtime_error("bind " + addr + ":" + std::to_string(port) + ": " + std::strerror(e));
  }
  return fd;
}

bool udp_send(const NetNs& ns, const std::string& src_ip, uint16_t src_port, const std::string& dst_ip,
              uint16_t dst_port, const std::string& payload) {
  int fd = ns.socket(AF_INET, SOCK_DGRAM);
  if (fd < 0) return false;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in src{}, dst{};
  src.sin_family = dst.sin_family = AF_INET;
  src.sin_port = htons(src_port);
  dst.sin_port = htons(dst_port);
  inet_pton(AF_INET, src_ip.c_str(), &src.sin_addr);
  inet_pton(AF_INET, dst_ip.c_str(), &dst.sin_addr);
  bool ok = bind(fd, reinterpret_cast<sockaddr*>(&src), sizeof src) == 0 &&
            sendto(fd, payload.data(), payload.size(), 0, reinterpret_cast<sockaddr*>(&dst), sizeof dst) ==
                ssize_t(payload.size());
  close(fd);
  return ok;
}

std::vector<std::string> udp_recv_all(int fd, std::chrono::milliseconds timeout, size_t max_count) {
  std::vector<std::string> out;
  auto deadline = std::chrono::steady_clock::now() + timeout;
  char buf[65536];
  while (out.size() < max_count) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{fd, POLLIN, 0};
    int n = poll(&p, 1, int(left.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    ssize_t got = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (got >= 0) out.emplace_back(buf, size_t(got));
  }
  return out;
}

}  // namespace gpo::test
