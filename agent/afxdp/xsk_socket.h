// One AF_XDP socket on one rx queue of one interface, with its own UMEM, on
// libxdp's xsk API. The XDP program is not ours to load (the loader owns it):
// the socket is created with XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD and the caller
// puts fd() into the program's XSKMAP at queue().
//
// UMEM layout: the first rx_frames frames belong to the fill/rx side and go
// round fill -> rx -> (agent) -> fill; the rest are a free list for TX.
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

struct xsk_umem;
struct xsk_socket;

namespace gpo::afxdp {

enum class BindMode { auto_, zero_copy, copy };

struct XskConfig {
  std::string ifname;
  uint32_t queue = 0;
  uint32_t rx_frames = 2048;  // frames owned by the fill/rx rings
  uint32_t tx_frames = 1024;  // frames owned by the TX side
  uint32_t ring_size = 2048;  // rx/tx/fill/completion ring entries (power of two)
  BindMode mode = BindMode::auto_;  // auto: zero-copy, then copy (logged)
};

// A received frame still owned by the agent until recycle(addr).
struct RxFrame {
  uint64_t addr = 0;  // UMEM address (what goes back on the fill ring)
  uint8_t* data = nullptr;
  uint32_t len = 0;
};

class XskSocket {
 public:
  static std::unique_ptr<XskSocket> open(const XskConfig& cfg);  // throws std::runtime_error
  ~XskSocket();
  XskSocket(const XskSocket&) = delete;
  XskSocket& operator=(const XskSocket&) = delete;

  int fd() const;
  const std::string& ifname() const { return cfg_.ifname; }
  int ifindex() const { return ifindex_; }
  uint32_t queue() const { return cfg_.queue; }
  bool zero_copy() const { return zero_copy_; }

  // Takes up to max received frames off the rx ring (non-blocking).
  size_t receive(size_t max, std::vector<RxFrame>& out);
  // Gives rx frames back to the kernel through the fill ring.
  void recycle(const std::vector<uint64_t>& addrs);
  // Frames ever put on the fill ring (the rx frames at open, then each
  // recycled one): what the kernel may take without dropping.
  uint64_t fill_total() const { return fill_total_; }
  uint32_t rx_frames() const { return cfg_.rx_frames; }
  void recycle(uint64_t addr) { recycle(std::vector<uint64_t>{addr}); }
  // Copies a frame into a TX frame of this socket's UMEM and queues it; false
  // when no TX frame or ring slot is free (the caller counts a tx drop).
  bool queue_tx(const uint8_t* data, uint32_t len);
  // Kicks the kernel to send what queue_tx queued and reaps completions.
  // Returns false when descriptors are still waiting in the TX ring (the
  // kernel refused more for now): call again later.
  bool flush_tx();
  // The kernel's per-socket counters (getsockopt XDP_STATISTICS): frames it
  // dropped because the rx ring was full, the fill ring empty, or invalid descs.
  struct KernelStats {
    uint64_t rx_dropped = 0, rx_invalid = 0, rx_ring_full = 0, fill_ring_empty = 0, tx_invalid = 0;
  };
  KernelStats kernel_stats() const;
  // Frames currently in flight on TX (queued, not yet completed).
  uint32_t tx_in_flight() const { return tx_outstanding_; }

 private:
  XskSocket() = default;
  void reap_completions();

  XskConfig cfg_;
  int ifindex_ = 0;
  bool zero_copy_ = false;
  void* area_ = nullptr;
  size_t area_size_ = 0;
  uint32_t frame_size_ = 0;
  xsk_umem* umem_ = nullptr;
  xsk_socket* xsk_ = nullptr;
  // Rings live in libxdp structs; kept opaque here so users need not include xsk.h.
  struct Rings;
  std::unique_ptr<Rings> rings_;
  std::vector<uint64_t> tx_free_;
  uint32_t tx_outstanding_ = 0;
  uint64_t fill_total_ = 0;
  uint32_t tx_pending_kick_ = 0;
};

// Number of rx queues of an interface in the current network namespace
// (ETHTOOL_GCHANNELS, then /sys/class/net/IF/queues, else 1).
uint32_t rx_queue_count(const std::string& ifname);

}  // namespace gpo::afxdp
