// Flow state for rules with `flow:` (docs/rules.md): per flow, which side
// started it (the client) and whether it is established, so every packet the
// agent classifies carries classify::FlowBits (to_server / to_client,
// established) in its Frame.
//
// Suricata's meaning, which the rules were written for:
//  - The client is the sender of the flow's first packet, except that a TCP
//    SYN/ACK seen first makes its receiver the client.
//  - TCP is established once the three-way handshake completed BEFORE this
//    packet: SYN (client), SYN/ACK acknowledging it (server), ACK
//    acknowledging that (client); the handshake's last ACK itself is not yet
//    established, the packets after it are. A flow picked up mid-stream (its
//    first packet no SYN) or reset during the handshake never becomes
//    established (Suricata's default, stream.midstream: false).
//  - Other protocols are established once both directions were seen, this
//    packet included (a UDP reply is established).
//
// The packet path calls observe() for every packet it classifies, in arrival
// order. Entries idle longer than idle_ns are dropped (a flow seen again after
// that starts over, as a mid-stream pickup) and the table is bounded
// (max_flows, oldest evicted first), so flows the XDP cache decides need no
// call; forget() is for a path that knows a flow ended. It is not called on
// a cache install: packets of the flow already on their way to the agent
// must still get the flow's direction.
#pragma once
#include <cstddef>
#include <cstdint>
#include <unordered_map>

#include "bpf/xdp_filter.h"
#include "kernels/classify/frame.h"

namespace gpo::afxdp {

class FlowTracker {
 public:
  explicit FlowTracker(size_t max_flows = 65536, uint64_t idle_ns = 120'000'000'000ull)
      : max_flows_(max_flows == 0 ? 1 : max_flows), idle_ns_(idle_ns) {}

  // The packet's classify::FlowBits, after which the flow's state includes
  // it. frame: the frame `p` was parsed from (TCP sequence numbers). 0 for a
  // frame that did not parse.
  uint8_t observe(const classify::ParsedFrame& p, const uint8_t* frame, uint64_t now_ns);
  void forget(const gpo_flow_key& key);
  size_t size() const { return flows_.size(); }

 private:
  enum class Tcp : uint8_t { kNone, kSynSent, kSynAckSent, kEstablished, kNever };
  struct State {
    bool client_is_a = true;  // the client is the key's (addr_a, port_a) side
    Tcp tcp = Tcp::kNone;
    bool seen_to_server = false, seen_to_client = false;
    uint32_t client_isn = 0, server_isn = 0;
    uint64_t last_ns = 0;
  };
  struct KeyHash {
    size_t operator()(const gpo_flow_key& k) const noexcept;
  };
  struct KeyEq {
    bool operator()(const gpo_flow_key& a, const gpo_flow_key& b) const noexcept;
  };
  void make_room(uint64_t now_ns);

  size_t max_flows_;
  uint64_t idle_ns_;
  std::unordered_map<gpo_flow_key, State, KeyHash, KeyEq> flows_;
};

}  // namespace gpo::afxdp
