#include "afxdp/flow_inspector.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

#include "kernels/classify/contents.h"
#include "kernels/classify/cpu_classifier.h"
#include "kernels/classify/decide.h"
#include "kernels/match/match.h"

namespace gpo::afxdp {

namespace {

constexpr uint8_t kTcp = 6;
constexpr uint8_t kUdp = 17;
constexpr uint8_t kSyn = 0x02, kRst = 0x04, kAck = 0x10;
// Handshake bits of Flow::handshake.
constexpr uint8_t kHsSyn = 1, kHsSynAck = 2, kHsAck = 4;

uint32_t rd32(const uint8_t* p) { return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3]; }

// The flow key and which endpoint sent the packet.
gpo_flow_key key_of(const classify::ParsedFrame& p, bool& src_is_a) {
  gpo_flow_key k;
  src_is_a = gpo_flow_key_make(&k, p.src, p.dst, htons(p.sport), htons(p.dport), p.proto) != 0;
  return k;
}

uint8_t tcp_flags(const uint8_t* frame, const classify::ParsedFrame& p) {
  return p.proto == kTcp ? frame[p.l4_offset + 13] : 0;
}

}  // namespace

size_t FlowInspector::KeyHash::operator()(const gpo_flow_key& k) const noexcept {
  const auto* p = reinterpret_cast<const uint8_t*>(&k);
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (size_t i = 0; i < sizeof k; i++) h = (h ^ p[i]) * 1099511628211ull;
  return size_t(h);
}

bool FlowInspector::KeyEq::operator()(const gpo_flow_key& a, const gpo_flow_key& b) const noexcept {
  return std::memcmp(&a, &b, sizeof a) == 0;
}

FlowInspector::FlowInspector(std::shared_ptr<const RuleSnapshot> rules, InspectorConfig cfg)
    : rules_(std::move(rules)), cfg_(cfg) {
  if (cfg_.depth == 0) cfg_.depth = 1;
  if (cfg_.max_flows == 0) cfg_.max_flows = 1;
}

uint64_t FlowInspector::client_flags(const uint8_t* frame, const classify::ParsedFrame& p) {
  bool src_is_a;
  key_of(p, src_is_a);
  bool sender_is_client;
  if (p.proto == kTcp) {
    const uint8_t fl = tcp_flags(frame, p);
    if (!(fl & kSyn)) return 0;  // mid-stream: who opened it is not known
    sender_is_client = !(fl & kAck);
  } else {
    sender_is_client = true;  // the first datagram the agent sees opens the flow
  }
  return sender_is_client == src_is_a ? GPO_FLOW_CLIENT_A : GPO_FLOW_CLIENT_B;
}

uint64_t FlowInspector::flags_of(const Flow& f) const {
  return f.client == 0 ? GPO_FLOW_CLIENT_A : f.client == 1 ? GPO_FLOW_CLIENT_B : 0;
}

uint64_t FlowInspector::idle_ns(uint8_t proto) const {
  return proto == kTcp ? cfg_.tcp_idle_ns : proto == kUdp ? cfg_.udp_idle_ns : cfg_.other_idle_ns;
}

FlowFacts FlowInspector::facts(const uint8_t* frame, const classify::ParsedFrame& p) const {
  FlowFacts out;
  if (!p.ok()) return out;
  bool src_is_a;
  gpo_flow_key k = key_of(p, src_is_a);
  auto it = flows_.find(k);
  if (it != flows_.end() && it->second.client >= 0) {
    const Flow& f = it->second;
    out.side_known = true;
    out.to_server = (f.client == 0) == src_is_a;
    out.established = p.proto == kTcp ? f.handshake == (kHsSyn | kHsSynAck | kHsAck)
                                      : (f.seen_from[0] && f.seen_from[1]);
    return out;
  }
  uint64_t cf = client_flags(frame, p);
  if (cf) {
    out.side_known = true;
    out.to_server = (cf == GPO_FLOW_CLIENT_A) == src_is_a;
  }
  return out;
}

void FlowInspector::scan(Stream& s, const uint8_t* bytes, size_t n) const {
  const match::Matcher& m = rules_->tables->matcher;
  if (s.seen.size() * 64 < m.num_patterns()) s.seen.resize((m.num_patterns() + 63) / 64, 0);
  auto mark = [&](uint32_t id, size_t) { s.seen[id / 64] |= uint64_t(1) << (id % 64); };
  match::scan_automaton_from(m.exact, s.st_exact, bytes, n, mark);
  match::scan_automaton_from(m.folded, s.st_folded, bytes, n, mark);
}

int FlowInspector::search(const Stream* s, const classify::RuleEntry& r) const {
  const classify::RuleTables& t = *rules_->tables;
  const auto* buf = s ? reinterpret_cast<const uint8_t*>(s->data.data()) : nullptr;
  const uint32_t n = s ? uint32_t(s->data.size()) : 0;
  // The classifiers' search first, the exact sweep (linear in the stream's
  // bytes) when it runs out of budget: the stream always gets an answer.
  uint32_t starts[classify::kMaxChainLevels];
  uint32_t budget = classify::CpuClassifier::kSearchBudget;
  int got = classify::contents_search(&t.contents[r.content_first], r.content_count, t.content_bytes.data(), buf, n, n,
                                      starts, classify::kMaxChainLevels, budget);
  if (got < 0) got = classify::contents_exact(&t.contents[r.content_first], r.content_count, t.content_bytes.data(), buf, n, n);
  return got;
}

FlowInspector::Seg FlowInspector::append(Flow& f, Stream& s, const uint8_t* bytes, size_t n) {
  const size_t room = cfg_.depth > s.data.size() ? size_t(cfg_.depth - s.data.size()) : 0;
  const size_t take = std::min(n, room);
  if (bytes_ + take > cfg_.memcap) return Seg::memcap;
  scan(s, bytes, take);
  s.data.append(reinterpret_cast<const char*>(bytes), take);
  f.bytes += take;
  bytes_ += take;
  return s.data.size() >= cfg_.depth ? Seg::depth : Seg::ok;
}

FlowInspector::Seg FlowInspector::segment(Flow& f, Stream& s, uint32_t seq, uint8_t fl, const uint8_t* payload,
                                          uint32_t len) {
  uint32_t data_seq = seq;
  if (fl & kSyn) {
    data_seq = seq + 1;  // the SYN takes one sequence number
    if (!s.started) {
      s.started = true;
      s.base = data_seq;
    }
  }
  if (!s.started) {
    s.started = true;
    s.base = data_seq;
    c_.midstream++;
  }
  if (len == 0) return Seg::ok;
  const int64_t rel = int32_t(data_seq - s.base);
  if (rel < 0) {
    c_.before_start++;
    return Seg::before_start;
  }
  const uint64_t end = uint64_t(rel) + len;
  const uint64_t have = s.data.size();
  // Every byte already seen at these sequence numbers must be the same.
  if (uint64_t(rel) < have) {
    const size_t n = size_t(std::min<uint64_t>(end, have) - uint64_t(rel));
    if (std::memcmp(s.data.data() + rel, payload, n) != 0) {
      c_.conflicts++;
      return Seg::conflict;
    }
  }
  // Held pieces may overlap each other (equal where they do): check them all.
  for (auto it = s.ooo.begin(); it != s.ooo.end() && it->first < end; ++it) {
    const uint64_t lo = std::max<uint64_t>(it->first, uint64_t(rel));
    const uint64_t hi = std::min<uint64_t>(it->first + it->second.size(), end);
    if (lo < hi && std::memcmp(it->second.data() + (lo - it->first), payload + (lo - uint64_t(rel)), hi - lo) != 0) {
      c_.conflicts++;
      return Seg::conflict;
    }
  }
  if (end <= have) {
    c_.retransmits++;
    return Seg::ok;
  }
  if (uint64_t(rel) <= have) {
    c_.in_order++;
    Seg r = append(f, s, payload + (have - uint64_t(rel)), size_t(end - have));
    // Held segments that now continue the stream.
    while (r == Seg::ok && !s.ooo.empty() && s.ooo.begin()->first <= s.data.size()) {
      auto it = s.ooo.begin();
      const uint64_t at = s.data.size();
      const uint64_t piece_end = it->first + it->second.size();
      if (piece_end > at)
        r = append(f, s, reinterpret_cast<const uint8_t*>(it->second.data()) + (at - it->first), size_t(piece_end - at));
      f.bytes -= it->second.size();
      bytes_ -= it->second.size();
      s.ooo.erase(it);
    }
    return r;
  }
  // Ahead of a gap: delivered, and kept for when the gap closes. Past the
  // depth nothing is inspected anyway.
  c_.out_of_order++;
  if (uint64_t(rel) >= cfg_.depth) return Seg::ok;
  if (s.ooo.size() >= cfg_.max_ooo_segments) {
    c_.ooo_full++;
    return Seg::ooo_full;
  }
  if (bytes_ + len > cfg_.memcap) return Seg::memcap;
  auto [it, fresh] = s.ooo.emplace(uint32_t(rel), std::string(reinterpret_cast<const char*>(payload), len));
  if (!fresh) {
    // Same start, verified equal where they overlap: keep the longer one.
    if (it->second.size() >= len) return Seg::ok;
    f.bytes -= it->second.size();
    bytes_ -= it->second.size();
    it->second.assign(reinterpret_cast<const char*>(payload), len);
  }
  f.bytes += len;
  bytes_ += len;
  return Seg::ok;
}

// The cache holds one verdict for both directions. A pass decided by a
// packet of one direction may only be cached when no content rule can still
// decide the other direction (a rule on the server's replies, say): decide()
// on the reversed tuple, with what that direction's stream holds so far.
bool FlowInspector::other_side_open(const Flow* f, int from, const classify::ParsedFrame& p, uint8_t flow) const {
  const classify::ParsedFrame r = classify::reversed(p);
  // The other direction's packets: the other side of the flow.
  uint8_t rflow = flow & classify::kFlowEstablished;
  if (flow & classify::kFlowToServer) rflow |= classify::kFlowToClient;
  if (flow & classify::kFlowToClient) rflow |= classify::kFlowToServer;
  const Stream* s = f ? &f->dir[1 - from] : nullptr;
  auto present = [&](uint32_t id) -> int {
    return s && id / 64 < s->seen.size() && (s->seen[id / 64] >> (id % 64)) & 1 ? 1 : 0;
  };
  classify::Verdict rv;
  classify::decide(rules_->acl.view(), rules_->rules_view(), r, rflow, present, [&](const classify::RuleEntry& r) { return search(s, r); }, rv);
  return !rv.cacheable;
}

FlowDecision FlowInspector::leave(Flow& f, uint8_t action, uint32_t rule_id) {
  FlowDecision d;
  d.action = action;
  d.rule_id = rule_id;
  d.deliver = action != GPO_ACT_DROP;
  d.install = true;
  d.flags = flags_of(f);
  forget(f.key);
  return d;
}

void FlowInspector::forget(const gpo_flow_key& k) {
  auto it = flows_.find(k);
  if (it == flows_.end()) return;
  bytes_ -= it->second.bytes;
  lru_.erase(it->second.lru);
  flows_.erase(it);
}

FlowDecision FlowInspector::decide(const uint8_t* frame, const classify::ParsedFrame& p, const classify::Verdict& v,
                                   uint8_t flow, uint64_t now_ns) {
  bool src_is_a;
  const gpo_flow_key key = key_of(p, src_is_a);
  auto it = flows_.find(key);
  if (it == flows_.end()) {
    if (v.cacheable && (v.action == GPO_ACT_DROP || !other_side_open(nullptr, 0, p, flow))) {
      // Decided by this packet alone, both ways: nothing to follow.
      FlowDecision d;
      d.action = v.action;
      d.rule_id = v.rule_id;
      d.deliver = v.action != GPO_ACT_DROP;
      d.install = true;
      d.flags = client_flags(frame, p);
      return d;
    }
    if (flows_.size() >= cfg_.max_flows && !lru_.empty()) {
      auto old = flows_.find(lru_.back());
      c_.evicted++;
      if (install_) install_(old->first, cfg_.depth_policy == DepthPolicy::drop ? uint8_t(GPO_ACT_DROP)
                                                                                 : old->second.last_action,
                             old->second.last_rule, flags_of(old->second));
      forget(old->first);
    }
    it = flows_.emplace(key, Flow{}).first;
    Flow& f = it->second;
    f.key = key;
    lru_.push_front(key);
    f.lru = lru_.begin();
    uint64_t cf = client_flags(frame, p);
    f.client = cf == GPO_FLOW_CLIENT_A ? 0 : cf == GPO_FLOW_CLIENT_B ? 1 : -1;
    c_.started++;
  } else {
    lru_.splice(lru_.begin(), lru_, it->second.lru);
  }
  Flow& f = it->second;
  f.last_ns = now_ns;
  f.packets++;
  const int from = src_is_a ? 0 : 1;
  f.seen_from[from] = true;

  // A packet whose own payload already decides a drop: no need to wait for
  // the stream (it would find the same).
  if (v.cacheable && v.action == GPO_ACT_DROP) {
    c_.decided++;
    return leave(f, v.action, v.rule_id);
  }

  bool reached = false;
  if (p.proto != kTcp) {
    f.inspected += p.payload_len;
    if (v.cacheable && !other_side_open(&f, from, p, flow)) {
      c_.decided++;
      return leave(f, v.action, v.rule_id);
    }
    f.last_action = v.action;
    f.last_rule = v.rule_id;
    reached = f.inspected >= cfg_.depth;
    if (reached) c_.depth++;
  } else {
    const uint8_t* l4 = frame + p.l4_offset;
    const uint8_t fl = l4[13];
    const int to = 1 - from;
    if ((fl & kSyn) && !(fl & kAck) && f.client == from) f.handshake |= kHsSyn;
    if ((fl & kSyn) && (fl & kAck) && f.client == to) f.handshake |= kHsSynAck;
    if (!(fl & kSyn) && (fl & kAck) && f.client == from && (f.handshake & kHsSynAck)) f.handshake |= kHsAck;
    Seg r = segment(f, f.dir[from], rd32(l4 + 4), fl, frame + p.payload_offset, p.payload_len);
    if (r == Seg::conflict || r == Seg::ooo_full || r == Seg::before_start) {
      FlowDecision d;  // this segment goes nowhere; the flow stays under inspection
      d.action = GPO_ACT_DROP;
      d.rule_id = f.last_rule;
      d.deliver = false;
      return d;
    }
    const Stream& s = f.dir[from];
    classify::Verdict sv;
    auto present = [&](uint32_t id) -> int {
      return id / 64 < s.seen.size() && (s.seen[id / 64] >> (id % 64)) & 1 ? 1 : 0;
    };
    classify::decide(rules_->acl.view(), rules_->rules_view(), p, flow, present, [&](const classify::RuleEntry& r) { return search(&s, r); }, sv);
    if (sv.cacheable && (sv.action == GPO_ACT_DROP || !other_side_open(&f, from, p, flow))) {
      c_.decided++;
      return leave(f, sv.action, sv.rule_id);
    }
    f.last_action = sv.action;
    f.last_rule = sv.rule_id;
    if (r == Seg::depth) c_.depth++;
    if (r == Seg::memcap) c_.memcap++;
    reached = r == Seg::depth || r == Seg::memcap;
    if (!reached && (fl & kRst)) {
      // The connection is torn down: nothing more to reassemble.
      FlowDecision d;
      d.action = sv.action;
      d.rule_id = sv.rule_id;
      d.deliver = sv.action != GPO_ACT_DROP;
      forget(key);
      return d;
    }
  }
  if (!reached && cfg_.inspect_packets && f.packets >= cfg_.inspect_packets) {
    c_.depth++;
    reached = true;
  }
  if (reached)
    return leave(f, cfg_.depth_policy == DepthPolicy::drop ? uint8_t(GPO_ACT_DROP) : f.last_action, f.last_rule);
  FlowDecision d;
  d.action = f.last_action;
  d.rule_id = f.last_rule;
  d.deliver = f.last_action != GPO_ACT_DROP;
  return d;
}

void FlowInspector::expire(uint64_t now_ns) {
  while (!lru_.empty()) {
    auto it = flows_.find(lru_.back());
    const Flow& f = it->second;
    // The list is in last-seen order: stop at the first flow still fresh
    // (timeouts differ per protocol; a stale flow behind a fresh one of
    // another protocol waits for the next sweep).
    if (!(now_ns > f.last_ns && now_ns - f.last_ns > idle_ns(f.key.proto))) break;
    c_.expired++;
    forget(it->first);
  }
}

void FlowInspector::set_rules(std::shared_ptr<const RuleSnapshot> rules) {
  rules_ = std::move(rules);
  for (auto& [k, f] : flows_)
    for (Stream& s : f.dir) {
      s.st_exact = s.st_folded = 0;
      s.seen.assign(0, 0);
      scan(s, reinterpret_cast<const uint8_t*>(s.data.data()), s.data.size());
    }
}

void FlowInspector::clear() {
  flows_.clear();
  lru_.clear();
  bytes_ = 0;
}

}  // namespace gpo::afxdp
