// IPv4 and IPv6 fragment reassembly in the agent, so the rules decide whole
// datagrams: a port or content rule cannot be walked around by splitting a
// packet into fragments. XDP sends every fragment here (config.frag_policy =
// reassemble); the agent copies it, recycles its frame, and once a datagram is
// complete classifies the reassembled packet. Pass: the original fragments
// are delivered (re-injected or sent out of the peer port) as they came, and
// the receiver reassembles exactly the bytes that were inspected. Drop: none is.
//
// Bounded, as an inline device must be (the kernel's ipfrag_* limits, the
// spirit of RFC 5722 and RFC 1858):
//  - memcap: bytes of fragment copies held over all datagrams; past it a new
//    fragment drops its datagram;
//  - max_datagrams in reassembly at once, max_fragments per datagram;
//  - timeout: an incomplete datagram is dropped (its fragments never leave);
//  - overlapping fragments drop the whole datagram (RFC 5722 for IPv6, and
//    the only safe answer for IPv4: receivers resolve overlaps differently),
//    and later fragments of it until the timeout; an exact duplicate (same
//    offset, length and bytes) is only not delivered twice;
//  - a datagram longer than 65535 bytes, a non-last fragment whose length is
//    not a multiple of 8, fragments past the end the last one set: dropped.
#pragma once
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace gpo::afxdp {

struct ReassemblyLimits {
  size_t memcap = 16u << 20;
  uint32_t max_datagrams = 4096;
  uint32_t max_fragments = 64;
  uint64_t timeout_ns = 30ull * 1000000000ull;
};

struct ReassemblyCounters {
  uint64_t fragments = 0;   // fragments taken in
  uint64_t datagrams = 0;   // datagrams completed (and then classified)
  uint64_t duplicates = 0;  // exact duplicates, not delivered twice
  uint64_t overlaps = 0;    // datagrams dropped for overlapping fragments
  uint64_t timeouts = 0;    // incomplete datagrams dropped at the timeout
  uint64_t over_limit = 0;  // datagrams dropped by memcap, max_datagrams or max_fragments
  uint64_t invalid = 0;     // fragments dropped: bad length or offset, past the end, unparsable
  uint64_t dropped_fragments = 0;  // fragments that will never be delivered (all causes above)
};

// A complete datagram: the unfragmented packet for the rules, and the
// fragments to deliver when it passes.
struct Datagram {
  std::vector<uint8_t> frame;                   // L2 header + IP header (no fragmentation) + payload
  std::vector<std::vector<uint8_t>> fragments;  // the frames as they arrived, duplicates left out
};

// Is this L2 frame an IPv4 or IPv6 fragment (first or not)?
bool is_ip_fragment(const uint8_t* frame, uint32_t len);

class FragmentReassembler {
 public:
  enum class Result { kHeld, kComplete, kDropped };

  explicit FragmentReassembler(ReassemblyLimits limits = {}) : lim_(limits) {}
  // Takes a copy of the fragment. kComplete: out holds the datagram (and the
  // reassembler forgets it).
  Result add(const uint8_t* frame, uint32_t len, uint64_t now_ns, Datagram& out);
  // Drops datagrams whose first fragment is older than the timeout.
  void expire(uint64_t now_ns);
  const ReassemblyCounters& counters() const { return c_; }
  size_t bytes_held() const { return bytes_; }
  size_t datagrams_held() const { return held_.size(); }
  const ReassemblyLimits& limits() const { return lim_; }

 private:
  struct Pending {
    uint64_t first_ns = 0;
    bool poisoned = false;            // overlap or limit: drop every fragment until the timeout
    std::vector<uint8_t> head;        // from the offset-0 fragment: L2 + IP header(s) before the payload
    uint32_t l3 = 0;                  // where the IP header starts in head
    size_t next_proto_at = 0;         // IPv6: where in head the byte naming the fragment header sits
    uint8_t next_proto = 0;           // IPv6: the fragment header's next header
    int64_t total = -1;               // payload length, known from the last fragment
    std::map<uint32_t, std::vector<uint8_t>> pieces;  // payload offset -> bytes
    std::vector<std::vector<uint8_t>> frames;
    size_t bytes = 0;
  };
  void poison(Pending& p, uint64_t& counter);
  bool build(Pending& p, Datagram& out) const;

  ReassemblyLimits lim_;
  ReassemblyCounters c_;
  std::unordered_map<std::string, Pending> held_;  // key: version, addresses, id, protocol, VLAN tags
  size_t bytes_ = 0;
};

}  // namespace gpo::afxdp
