#include "afxdp/flow_inspector.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>

#include "kernels/classify/contents.h"
#include "kernels/classify/classify_cpu.h"
#include "kernels/classify/decide.h"
#include "kernels/match/match.h"

namespace gpo::afxdp {

void InspectStateDeleter::operator()(InspectState* s) const { delete s; }

namespace {

constexpr uint8_t kTcp = 6;
constexpr uint8_t kSyn = 0x02, kRst = 0x04;

uint32_t rd32(const uint8_t* p) { return uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3]; }

}  // namespace

bool StreamMemory::take(size_t n) {
  size_t cur = used_.load(std::memory_order_relaxed);
  do {
    if (cur + n > cap_) return false;
  } while (!used_.compare_exchange_weak(cur, cur + n, std::memory_order_relaxed));
  return true;
}

FlowInspector::FlowInspector(FlowTracker& flows, std::shared_ptr<const RuleSnapshot> rules, InspectorConfig cfg,
                             StreamMemory* memory)
    : flows_(flows), rules_(std::move(rules)), cfg_(cfg) {
  if (!memory) own_mem_ = std::make_unique<StreamMemory>(cfg_.memcap);
  mem_ = memory ? memory : own_mem_.get();
  if (cfg_.depth == 0) cfg_.depth = 1;
  flows_.set_on_leave([this](Flow& f, FlowTracker::Leave why) {
    InspectState& st = *f.inspect;
    release(st);
    if (why == FlowTracker::Leave::kExpired) {
      c_.expired++;
      return;
    }
    // Pushed out of a full table: what the depth policy says is cached.
    c_.evicted++;
    if (install_)
      install_(f.key, cfg_.depth_policy == DepthPolicy::drop ? uint8_t(GPO_ACT_DROP) : st.last_action, st.last_rule,
               f.client_flag());
  });
}

FlowInspector::~FlowInspector() {
  // The table may outlive this: its entries keep no state of ours.
  std::vector<Flow*> open;
  flows_.for_each_inspected([&](Flow& f) { open.push_back(&f); });
  for (Flow* f : open) {
    release(*f->inspect);
    flows_.end_inspection(*f);
  }
  flows_.set_on_leave(nullptr);
}

void FlowInspector::release(InspectState& st) {
  mem_->give(st.bytes);
  bytes_ -= st.bytes;
  st.bytes = 0;
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
  if (got < 0)
    got = classify::contents_exact(&t.contents[r.content_first], r.content_count, t.content_bytes.data(), buf, n, n);
  return got;
}

FlowInspector::Seg FlowInspector::append(InspectState& f, Stream& s, const uint8_t* bytes, size_t n) {
  const size_t room = cfg_.depth > s.data.size() ? size_t(cfg_.depth - s.data.size()) : 0;
  const size_t take = std::min(n, room);
  if (!mem_->take(take)) return Seg::memcap;
  scan(s, bytes, take);
  s.data.append(reinterpret_cast<const char*>(bytes), take);
  f.bytes += take;
  bytes_ += take;
  return s.data.size() >= cfg_.depth ? Seg::depth : Seg::ok;
}

FlowInspector::Seg FlowInspector::segment(InspectState& f, Stream& s, uint32_t seq, uint8_t fl,
                                          const uint8_t* payload, uint32_t len) {
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
      mem_->give(it->second.size());
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
  if (!mem_->take(len)) return Seg::memcap;
  auto [it, fresh] = s.ooo.emplace(uint32_t(rel), std::string(reinterpret_cast<const char*>(payload), len));
  if (!fresh) {
    // Same start, verified equal where they overlap: keep the longer one.
    if (it->second.size() >= len) {
      mem_->give(len);
      return Seg::ok;
    }
    f.bytes -= it->second.size();
    bytes_ -= it->second.size();
    mem_->give(it->second.size());
    it->second.assign(reinterpret_cast<const char*>(payload), len);
  }
  f.bytes += len;
  bytes_ += len;
  return Seg::ok;
}

FlowDecision FlowInspector::leave(Flow& f, uint8_t action, uint32_t rule_id, uint64_t now_ns) {
  FlowDecision d;
  d.action = action;
  d.rule_id = rule_id;
  d.deliver = action != GPO_ACT_DROP;
  d.install = true;
  d.flags = f.client_flag();
  if (f.inspect) {
    release(*f.inspect);
    flows_.end_inspection(f);
  }
  f.decided = true;
  f.action = action;
  f.rule_id = rule_id;
  f.decided_ns = now_ns;
  return d;
}

FlowDecision FlowInspector::decide(const uint8_t* frame, const classify::ParsedFrame& p, const classify::Verdict& v,
                                   uint8_t flow, uint64_t now_ns) {
  gpo_flow_key key;
  const bool src_is_a = gpo_flow_key_make(&key, p.src, p.dst, htons(p.sport), htons(p.dport), p.proto) != 0;
  Flow* fp = flows_.find(key);
  if (!fp) {
    // Pushed out of the table since the packet was observed (a full table):
    // it starts over, as a flow seen mid-way.
    flows_.observe(p, frame, now_ns);
    fp = flows_.find(key);
  }
  Flow& f = *fp;
  if (f.decided && !f.inspect) {
    // Decided already: a packet that was on its way before the verdict was
    // cached gets that verdict. Long after the install, the cache has lost
    // the entry (its LRU pushed it out): it is cached again.
    FlowDecision d;
    d.action = f.action;
    d.rule_id = f.rule_id;
    d.deliver = f.action != GPO_ACT_DROP;
    d.flags = f.client_flag();
    d.already_decided = true;
    if (now_ns - f.decided_ns > kReinstallAfterNs) {
      d.install = true;
      f.decided_ns = now_ns;
    }
    return d;
  }
  if (!f.inspect) {
    if (v.cacheable) return leave(f, v.action, v.rule_id, now_ns);  // decided by this packet, both ways
    flows_.start_inspection(f, std::unique_ptr<InspectState, InspectStateDeleter>(new InspectState));
    f.decided = false;
    c_.started++;
  }
  InspectState& st = *f.inspect;
  const bool route = st.packets == 0 || now_ns - st.routed_ns > kReinstallAfterNs;
  if (route) st.routed_ns = now_ns;
  st.packets++;
  const int from = src_is_a ? 0 : 1;

  // A packet whose own payload already decides a drop: no need to wait for
  // the stream (it would find the same).
  if (v.cacheable && v.action == GPO_ACT_DROP) {
    c_.decided++;
    return leave(f, v.action, v.rule_id, now_ns);
  }

  bool reached = false;
  if (p.proto != kTcp) {
    st.inspected += p.payload_len;
    if (v.cacheable) {
      c_.decided++;
      return leave(f, v.action, v.rule_id, now_ns);
    }
    st.last_action = v.action;
    st.last_rule = v.rule_id;
    reached = st.inspected >= cfg_.depth;
    if (reached) c_.depth++;
  } else {
    const uint8_t* l4 = frame + p.l4_offset;
    const uint8_t fl = l4[13];
    Seg r = segment(st, st.dir[from], rd32(l4 + 4), fl, frame + p.payload_offset, p.payload_len);
    if (r == Seg::conflict || r == Seg::ooo_full || r == Seg::before_start) {
      FlowDecision d;  // this segment goes nowhere; the flow stays under inspection
      d.action = GPO_ACT_DROP;
      d.rule_id = st.last_rule;
      d.deliver = false;
      return d;
    }
    const Stream& s = st.dir[from];
    classify::Verdict sv;
    auto present = [&](uint32_t id) -> int {
      return id / 64 < s.seen.size() && (s.seen[id / 64] >> (id % 64)) & 1 ? 1 : 0;
    };
    classify::decide(rules_->acl.view(), rules_->rules_view(), p, flow, present,
                     [&](const classify::RuleEntry& rule) { return search(&s, rule); }, sv);
    if (sv.cacheable) {
      c_.decided++;
      return leave(f, sv.action, sv.rule_id, now_ns);
    }
    st.last_action = sv.action;
    st.last_rule = sv.rule_id;
    if (r == Seg::depth) c_.depth++;
    if (r == Seg::memcap) c_.memcap++;
    reached = r == Seg::depth || r == Seg::memcap;
    if (!reached && (fl & kRst)) {
      // The connection is torn down: nothing more to reassemble.
      FlowDecision d;
      d.action = sv.action;
      d.rule_id = sv.rule_id;
      d.deliver = sv.action != GPO_ACT_DROP;
      release(st);
      flows_.end_inspection(f);
      return d;
    }
  }
  if (!reached && cfg_.inspect_packets && st.packets >= cfg_.inspect_packets) {
    c_.depth++;
    reached = true;
  }
  if (reached)
    return leave(f, cfg_.depth_policy == DepthPolicy::drop ? uint8_t(GPO_ACT_DROP) : st.last_action, st.last_rule,
                 now_ns);
  FlowDecision d;
  d.action = st.last_action;
  d.rule_id = st.last_rule;
  d.deliver = st.last_action != GPO_ACT_DROP;
  d.flags = f.client_flag();
  d.route_to_agent = route;
  return d;
}

void FlowInspector::set_rules(std::shared_ptr<const RuleSnapshot> rules) {
  rules_ = std::move(rules);
  flows_.for_each_inspected([this](Flow& f) {
    for (Stream& s : f.inspect->dir) {
      s.st_exact = s.st_folded = 0;
      s.seen.assign(0, 0);
      scan(s, reinterpret_cast<const uint8_t*>(s.data.data()), s.data.size());
    }
  });
}

}  // namespace gpo::afxdp
