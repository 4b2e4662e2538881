#include "afxdp/flow_state.h"

#include <arpa/inet.h>

#include <cstring>

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

bool FlowTracker::Flow::established() const {
  return key.proto == 6 ? tcp == Tcp::kEstablished : seen_to_server && seen_to_client;
}

FlowTracker::FlowTracker(FlowTableConfig cfg) : cfg_(cfg) {
  if (cfg_.max_flows == 0) cfg_.max_flows = 1;
}

uint64_t FlowTracker::idle_ns(uint8_t proto) const {
  return proto == 6 ? cfg_.tcp_idle_ns : proto == 17 ? cfg_.udp_idle_ns : cfg_.other_idle_ns;
}

FlowTracker::Flow* FlowTracker::find(const gpo_flow_key& key) {
  auto it = flows_.find(key);
  return it == flows_.end() ? nullptr : &it->second;
}

void FlowTracker::touch(Flow& f) {
  auto& l = lru_of(f);
  l.splice(l.begin(), l, f.lru_pos);
}

void FlowTracker::erase(Table::iterator it, bool leaving, Leave why) {
  Flow& f = it->second;
  if (f.inspect && leaving && on_leave_) on_leave_(f, why);
  lru_of(f).erase(f.lru_pos);
  flows_.erase(it);
}

void FlowTracker::start_inspection(Flow& f, std::unique_ptr<InspectState, InspectStateDeleter> s) {
  if (f.inspect) {
    f.inspect = std::move(s);
    return;
  }
  plain_lru_.erase(f.lru_pos);
  f.inspect = std::move(s);
  inspect_lru_.push_front(&f);
  f.lru_pos = inspect_lru_.begin();
}

void FlowTracker::end_inspection(Flow& f) {
  if (!f.inspect) return;
  inspect_lru_.erase(f.lru_pos);
  f.inspect.reset();
  plain_lru_.push_front(&f);
  f.lru_pos = plain_lru_.begin();
}

void FlowTracker::forget(const gpo_flow_key& key) {
  auto it = flows_.find(key);
  if (it != flows_.end()) erase(it, false, Leave::kExpired);
}

void FlowTracker::make_room() {
  // The least recently seen flow that is not under inspection; only when
  // every entry is under inspection, the least recently seen of those.
  std::list<Flow*>& l = plain_lru_.empty() ? inspect_lru_ : plain_lru_;
  if (l.empty()) return;
  erase(flows_.find(l.back()->key), true, Leave::kEvicted);
}

void FlowTracker::expire(uint64_t now_ns) {
  // Each list is in last-seen order: stop at the first flow still fresh
  // (timeouts differ per protocol; a stale flow behind a fresh one of another
  // protocol waits for a later sweep, or is found stale by observe()).
  for (std::list<Flow*>* l : {&plain_lru_, &inspect_lru_}) {
    while (!l->empty()) {
      const Flow& f = *l->back();
      if (!(now_ns > f.last_ns && now_ns - f.last_ns > idle_ns(f.key.proto))) break;
      erase(flows_.find(f.key), true, Leave::kExpired);
    }
  }
}

void FlowTracker::clear_decisions() {
  for (auto& [k, f] : flows_) f.decided = false;
}

void FlowTracker::clear() {
  while (!flows_.empty()) erase(flows_.begin(), false, Leave::kExpired);
}

void FlowTracker::reset(Flow& f, const classify::ParsedFrame& p, bool from_a) {
  // The sender is the client, unless a TCP SYN/ACK comes first (sent by the server).
  const bool tcp = p.proto == 6;
  const uint8_t flags = tcp ? p.tcp_flags : 0;
  const bool syn_ack = tcp && (flags & (kSyn | kAck)) == (kSyn | kAck);
  f.client_is_a = syn_ack ? !from_a : from_a;
  f.tcp = tcp && (flags & (kSyn | kAck | kRst)) != kSyn ? Tcp::kNever : Tcp::kNone;
  f.seen_to_server = f.seen_to_client = false;
  f.client_isn = f.server_isn = 0;
  f.decided = false;
}

uint8_t FlowTracker::observe(const classify::ParsedFrame& p, const uint8_t* frame, uint64_t now_ns) {
  if (!p.ok()) return 0;
  gpo_flow_key key;
  const bool from_a =
      gpo_flow_key_make(&key, p.src, p.dst, htons(p.sport), htons(p.dport), p.proto) != 0;
  const bool tcp = p.proto == 6;
  const uint8_t flags = tcp ? p.tcp_flags : 0;
  const uint32_t seq = tcp ? rd32(frame + p.l4_offset + 4) : 0, ack = tcp ? rd32(frame + p.l4_offset + 8) : 0;

  auto it = flows_.find(key);
  bool fresh = it == flows_.end();
  if (!fresh && now_ns > it->second.last_ns && now_ns - it->second.last_ns > idle_ns(p.proto)) {
    erase(it, true, Leave::kExpired);  // idle too long: a new flow
    fresh = true;
  }
  if (fresh) {
    if (flows_.size() >= cfg_.max_flows) make_room();
    it = flows_.emplace(key, Flow{}).first;
    Flow& f = it->second;
    f.key = key;
    plain_lru_.push_front(&f);
    f.lru_pos = plain_lru_.begin();
    reset(f, p, from_a);
  }
  Flow& s = it->second;
  s.last_ns = now_ns;
  touch(s);
  if (!fresh && tcp && (flags & (kSyn | kAck | kRst)) == kSyn && s.tcp != Tcp::kNone && seq != s.client_isn) {
    // A new connection on the tuple of an old one: it starts over, inspection included.
    if (s.inspect && on_leave_) on_leave_(s, Leave::kExpired);
    end_inspection(s);
    reset(s, p, from_a);
  }
  const bool to_server = from_a == s.client_is_a;
  uint8_t bits = to_server ? classify::kFlowToServer : classify::kFlowToClient;

  if (tcp) {
    if (s.tcp == Tcp::kEstablished) bits |= classify::kFlowEstablished;  // before this packet
    if (flags & kRst) {
      if (s.tcp != Tcp::kEstablished) s.tcp = Tcp::kNever;
    } else if (s.tcp == Tcp::kNone) {
      if (to_server && (flags & (kSyn | kAck)) == kSyn) {
        s.client_isn = seq;
        s.tcp = Tcp::kSynSent;
      }
    } else if (s.tcp == Tcp::kSynSent) {
      if (to_server && (flags & (kSyn | kAck)) == kSyn) {
        // a retransmitted SYN (a new ISN started the flow over above)
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
