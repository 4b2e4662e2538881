#include "afxdp/xsk_socket.h"

#include <linux/ethtool.h>
#include <linux/if_xdp.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>
#include <xdp/xsk.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <stdexcept>

#include "util/log.h"

namespace gpo::afxdp {

struct XskSocket::Rings {
  xsk_ring_prod fill{};
  xsk_ring_cons comp{};
  xsk_ring_cons rx{};
  xsk_ring_prod tx{};
};

namespace {

std::string err_str(int e) { return std::strerror(e < 0 ? -e : e); }

const char* mode_name(BindMode m) {
  switch (m) {
    case BindMode::zero_copy: return "zero-copy";
    case BindMode::copy: return "copy";
    default: return "auto";
  }
}

}  // namespace

std::unique_ptr<XskSocket> XskSocket::open(const XskConfig& cfg) {
  std::unique_ptr<XskSocket> s(new XskSocket());
  s->cfg_ = cfg;
  s->rings_ = std::make_unique<Rings>();
  s->ifindex_ = int(if_nametoindex(cfg.ifname.c_str()));
  if (s->ifindex_ == 0)
    throw std::runtime_error("AF_XDP: interface " + cfg.ifname + " not found in this network namespace");
  s->frame_size_ = XSK_UMEM__DEFAULT_FRAME_SIZE;
  const uint32_t frames = cfg.rx_frames + cfg.tx_frames;
  s->area_size_ = size_t(frames) * s->frame_size_;
  s->area_ = mmap(nullptr, s->area_size_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (s->area_ == MAP_FAILED) {
    s->area_ = nullptr;
    throw std::runtime_error("AF_XDP: cannot map " + std::to_string(s->area_size_) + " bytes of UMEM: " +
                             err_str(errno));
  }

  // Zero-copy first (drivers that support it), then copy mode (veth, generic
  // XDP). Each attempt gets a fresh UMEM: a failed bind may leave it half set up.
  std::vector<BindMode> tries;
  if (cfg.mode == BindMode::auto_) tries = {BindMode::zero_copy, BindMode::copy};
  else tries = {cfg.mode};
  int last_err = 0;
  for (BindMode m : tries) {
    xsk_umem_config ucfg{};
    ucfg.fill_size = cfg.ring_size;
    ucfg.comp_size = cfg.ring_size;
    ucfg.frame_size = s->frame_size_;
    ucfg.frame_headroom = 0;
    ucfg.flags = 0;
    int rc = xsk_umem__create(&s->umem_, s->area_, s->area_size_, &s->rings_->fill, &s->rings_->comp, &ucfg);
    if (rc != 0) throw std::runtime_error("AF_XDP: xsk_umem__create failed: " + err_str(rc));
    xsk_socket_config scfg{};
    scfg.rx_size = cfg.ring_size;
    scfg.tx_size = cfg.ring_size;
    scfg.libxdp_flags = XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD;
    scfg.xdp_flags = 0;
    scfg.bind_flags = uint16_t((m == BindMode::zero_copy ? XDP_ZEROCOPY : XDP_COPY) | XDP_USE_NEED_WAKEUP);
    rc = xsk_socket__create(&s->xsk_, cfg.ifname.c_str(), cfg.queue, s->umem_, &s->rings_->rx, &s->rings_->tx,
                            &scfg);
    if (rc == 0) {
      s->zero_copy_ = m == BindMode::zero_copy;
      break;
    }
    last_err = rc;
    s->xsk_ = nullptr;
    xsk_umem__delete(s->umem_);
    s->umem_ = nullptr;
    if (m == BindMode::zero_copy && tries.size() > 1)
      log::info("AF_XDP {} queue {}: zero-copy not supported ({}), falling back to copy mode", cfg.ifname,
                cfg.queue, err_str(rc));
  }
  if (!s->xsk_)
    throw std::runtime_error("AF_XDP: cannot bind a socket to " + cfg.ifname + " queue " +
                             std::to_string(cfg.queue) + " in " + mode_name(cfg.mode) + " mode: " +
                             err_str(last_err));

  // All rx frames start on the fill ring; TX frames start free.
  uint32_t idx = 0;
  uint32_t got = xsk_ring_prod__reserve(&s->rings_->fill, cfg.rx_frames, &idx);
  if (got != cfg.rx_frames)
    throw std::runtime_error("AF_XDP: fill ring smaller than " + std::to_string(cfg.rx_frames) + " frames");
  for (uint32_t i = 0; i < got; i++)
    *xsk_ring_prod__fill_addr(&s->rings_->fill, idx + i) = uint64_t(i) * s->frame_size_;
  xsk_ring_prod__submit(&s->rings_->fill, got);
  s->fill_total_ = got;
  for (uint32_t i = 0; i < cfg.tx_frames; i++)
    s->tx_free_.push_back(uint64_t(cfg.rx_frames + i) * s->frame_size_);
  return s;
}

XskSocket::~XskSocket() {
  if (xsk_) xsk_socket__delete(xsk_);
  if (umem_) xsk_umem__delete(umem_);
  if (area_) munmap(area_, area_size_);
}

int XskSocket::fd() const { return xsk_socket__fd(xsk_); }

size_t XskSocket::receive(size_t max, std::vector<RxFrame>& out) {
  uint32_t idx = 0;
  uint32_t n = xsk_ring_cons__peek(&rings_->rx, uint32_t(max), &idx);
  for (uint32_t i = 0; i < n; i++) {
    const xdp_desc* d = xsk_ring_cons__rx_desc(&rings_->rx, idx + i);
    RxFrame f;
    f.addr = d->addr;
    f.data = static_cast<uint8_t*>(xsk_umem__get_data(area_, d->addr));
    f.len = d->len;
    out.push_back(f);
  }
  if (n) xsk_ring_cons__release(&rings_->rx, n);
  return n;
}

void XskSocket::recycle(const std::vector<uint64_t>& addrs) {
  if (addrs.empty()) return;
  uint32_t idx = 0;
  // The fill ring holds every rx frame, so there is always room for the ones we hold.
  uint32_t got = xsk_ring_prod__reserve(&rings_->fill, uint32_t(addrs.size()), &idx);
  for (uint32_t i = 0; i < got; i++)
    *xsk_ring_prod__fill_addr(&rings_->fill, idx + i) = addrs[i] & ~uint64_t(frame_size_ - 1);
  xsk_ring_prod__submit(&rings_->fill, got);
  fill_total_ += got;
  if (got != addrs.size()) log::warn("AF_XDP {}: fill ring full, {} frames lost", cfg_.ifname, addrs.size() - got);
  if (xsk_ring_prod__needs_wakeup(&rings_->fill))
    recvfrom(fd(), nullptr, 0, MSG_DONTWAIT, nullptr, nullptr);
}

bool XskSocket::queue_tx(const uint8_t* data, uint32_t len) {
  if (tx_free_.empty()) reap_completions();
  if (tx_free_.empty() || len > frame_size_) return false;
  uint32_t idx = 0;
  if (xsk_ring_prod__reserve(&rings_->tx, 1, &idx) != 1) return false;
  uint64_t addr = tx_free_.back();
  tx_free_.pop_back();
  std::memcpy(xsk_umem__get_data(area_, addr), data, len);
  xdp_desc* d = xsk_ring_prod__tx_desc(&rings_->tx, idx);
  d->addr = addr;
  d->len = len;
  d->options = 0;
  xsk_ring_prod__submit(&rings_->tx, 1);
  tx_outstanding_++;
  tx_pending_kick_++;
  return true;
}

// Copy mode (veth, generic XDP) transmits inside sendto(), but at most 32
// frames per call (the kernel's TX batch, TX_BATCH_SIZE in net/xdp/xsk.c).
// One kick per batch therefore left every frame past the 32nd in the TX ring
// until the next kick, which never came when the flow had moved to the XDP
// fast path: inline mode lost them. So kick until the kernel has taken every
// queued descriptor. Zero-copy drivers are only woken by the kick and send
// on their own time: one kick is enough there.
bool XskSocket::flush_tx() {
  auto queued = [&] {
    const uint32_t cons = __atomic_load_n(rings_->tx.consumer, __ATOMIC_ACQUIRE);
    return *rings_->tx.producer - cons;
  };
  if (tx_pending_kick_ || xsk_ring_prod__needs_wakeup(&rings_->tx)) {
    const int max_kicks = zero_copy_ ? 1 : int(cfg_.ring_size / 32 + 4);
    for (int k = 0; k < max_kicks; k++) {
      if (sendto(fd(), nullptr, 0, MSG_DONTWAIT, nullptr, 0) < 0) {
        if (errno == EAGAIN || errno == EBUSY || errno == ENOBUFS) {
          reap_completions();  // completion ring full is one cause: make room, retry
        } else {
          if (errno != ENETDOWN) log::debug("AF_XDP {}: tx kick: {}", cfg_.ifname, err_str(errno));
          break;
        }
      }
      if (zero_copy_ || queued() == 0) break;
    }
    tx_pending_kick_ = 0;
  }
  reap_completions();
  return zero_copy_ || queued() == 0;
}

void XskSocket::reap_completions() {
  uint32_t idx = 0;
  uint32_t n = xsk_ring_cons__peek(&rings_->comp, cfg_.ring_size, &idx);
  for (uint32_t i = 0; i < n; i++) tx_free_.push_back(*xsk_ring_cons__comp_addr(&rings_->comp, idx + i));
  if (n) xsk_ring_cons__release(&rings_->comp, n);
  tx_outstanding_ -= n < tx_outstanding_ ? n : tx_outstanding_;
}

XskSocket::KernelStats XskSocket::kernel_stats() const {
  KernelStats k;
  xdp_statistics st{};
  socklen_t len = sizeof st;
  if (getsockopt(fd(), SOL_XDP, XDP_STATISTICS, &st, &len) == 0) {
    k.rx_dropped = st.rx_dropped;
    k.rx_invalid = st.rx_invalid_descs;
    k.tx_invalid = st.tx_invalid_descs;
    if (len >= sizeof st) {  // the ring counters came with Linux 5.9
      k.rx_ring_full = st.rx_ring_full;
      k.fill_ring_empty = st.rx_fill_ring_empty_descs;
    }
  }
  return k;
}

uint32_t rx_queue_count(const std::string& ifname) {
  int sock = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (sock >= 0) {
    ethtool_channels ch{};
    ch.cmd = ETHTOOL_GCHANNELS;
    ifreq ifr{};
    std::strncpy(ifr.ifr_name, ifname.c_str(), IFNAMSIZ - 1);
    ifr.ifr_data = reinterpret_cast<char*>(&ch);
    int rc = ioctl(sock, SIOCETHTOOL, &ifr);
    close(sock);
    if (rc == 0 && ch.combined_count + ch.rx_count > 0) return ch.combined_count + ch.rx_count;
  }
  // sysfs shows the namespace that mounted it; only trust it as a fallback.
  std::error_code ec;
  uint32_t n = 0;
  for (auto& e : std::filesystem::directory_iterator("/sys/class/net/" + ifname + "/queues", ec))
    if (e.path().filename().string().rfind("rx-", 0) == 0) n++;
  return n ? n : 1;
}

}  // namespace gpo::afxdp
