#include "afxdp/flow_state.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/classify/classify.h"

namespace gpo::afxdp {
namespace {

constexpr uint8_t kFin = 0x01, kSyn = 0x02, kRst = 0x04, kAck = 0x10;

uint32_t rd32(const uint8_t* p) { return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3]; }

}  // namespace

size_t FlowTracker::KeyHash::operator()(const gpo_flow_key& k) const noexcept {
  const auto* p = reinterpret_cast<const uint8_t*>(&k);
  uint64_t h = 1469598103934665603ull;  // FNV-1a over the zero-padded key
  for (size_t i = 0; i < sizeof k; i++) h = (h ^ p[i]) * 1099511628211ull;
  return size_t(h);
}

bool FlowTracker::KeyEq::operator()(const gpo_flow_key& a, const gpo_flow_key& b) const noexcept {
  return std::memcmp(&a, &b, sizeof a) == 0;
}

void FlowTracker::forget(const gpo_flow_key& key) { flows_.erase(key); }

void FlowTracker::make_room(uint64_t now_ns) {
  for (auto it = flows_.begin(); it != flows_.end();)
    it = now_ns - it->second.last_ns > idle_ns_ ? flows_.erase(it) : std::next(it);
  if (flows_.size() < max_flows_) return;
  // Still full: drop the oldest eighth.
  std::vector<uint64_t> ages;
  ages.reserve(flows_.size());
  for (auto& [k, s] : flows_) ages.push_back(s.last_ns);
  auto cut = ages.begin() + long(ages.size() / 8);
  std::nth_element(ages.begin(), cut, ages.end());
  const uint64_t limit = *cut;
  for (auto it = flows_.begin(); it != flows_.end();) it = it->second.last_ns <= limit ? flows_.erase(it) : std::next(it);
}

uint8_t FlowTracker::observe(const classify::ParsedFrame& p, const uint8_t* frame, uint64_t now_ns) {
  if (!p.ok()) return 0;
  const gpo_flow_key key = classify::flow_key(p);
  const bool from_a = std::memcmp(p.src, key.addr_a, 16) == 0 && htons(p.sport) == key.port_a;
  auto it = flows_.find(key);
  if (it != flows_.end() && now_ns - it->second.last_ns > idle_ns_) {
    flows_.erase(it);  // idle too long: a new flow
    it = flows_.end();
  }
  const bool tcp = p.proto == 6;
  const uint8_t flags = tcp ? p.tcp_flags : 0;
  if (it == flows_.end()) {
    if (flows_.size() >= max_flows_) make_room(now_ns);
    State s;
    // The sender is the client, unless a TCP SYN/ACK comes first (sent by the server).
    const bool syn_ack = tcp && (flags & (kSyn | kAck)) == (kSyn | kAck);
    s.client_is_a = syn_ack ? !from_a : from_a;
    if (tcp) s.tcp = (flags & (kSyn | kAck | kRst)) == kSyn ? Tcp::kNone : Tcp::kNever;
    it = flows_.emplace(key, s).first;
  }
  State& s = it->second;
  s.last_ns = now_ns;
  const bool to_server = from_a == s.client_is_a;
  uint8_t bits = to_server ? classify::kFlowToServer : classify::kFlowToClient;

  if (tcp) {
    if (s.tcp == Tcp::kEstablished) bits |= classify::kFlowEstablished;  // before this packet
    const uint32_t seq = rd32(frame + p.l4_offset + 4), ack = rd32(frame + p.l4_offset + 8);
    if (flags & kRst) {
      if (s.tcp != Tcp::kEstablished) s.tcp = Tcp::kNever;
    } else if (s.tcp == Tcp::kNone) {
      if (to_server && (flags & (kSyn | kAck)) == kSyn) {
        s.client_isn = seq;
        s.tcp = Tcp::kSynSent;
      }
    } else if (s.tcp == Tcp::kSynSent) {
      if (to_server && (flags & (kSyn | kAck)) == kSyn) {
        s.client_isn = seq;  // a retransmitted (or new) SYN
      } else if (!to_server && (flags & (kSyn | kAck)) == (kSyn | kAck) && ack == s.client_isn + 1) {
        s.server_isn = seq;
        s.tcp = Tcp::kSynAckSent;
      }
    } else if (s.tcp == Tcp::kSynAckSent) {
      if (to_server && (flags & (kSyn | kAck | kFin)) == kAck && ack == s.server_isn + 1) s.tcp = Tcp::kEstablished;
    }
    return bits;
  }
  (to_server ? s.seen_to_server : s.seen_to_client) = true;
  if (s.seen_to_server && s.seen_to_client) bits |= classify::kFlowEstablished;
  return bits;
}

}  // namespace gpo::afxdp
