#include "kernels/classify/acl.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <unordered_map>

namespace gpo::classify::acl {
namespace {

// Build-time values are 128-bit for every field; each field's domain is [0, max].
U128 add1(const U128& a) { return a.lo == ~0ull ? U128{a.hi + 1, 0} : U128{a.hi, a.lo + 1}; }
U128 sub1(const U128& a) { return a.lo == 0 ? U128{a.hi - 1, ~0ull} : U128{a.hi, a.lo - 1}; }

struct Range {
  U128 lo, hi;  // inclusive
};

struct Item {  // one entry of a field set, projected onto the field's domain
  bool empty;   // contains no value of this domain (still counts as a positive entry)
  bool negated;
  Range r;
};

// Values where the set matches: (no positive entry, or one contains it) and
// no negated entry contains it, inverted when `negated`. A sweep over the
// entries' edges, so long lists cost n log n.
std::vector<Range> set_ranges(const std::vector<Item>& items, bool negated, const U128& max) {
  struct Ev {
    U128 at;
    int dpos, dneg;
  };
  std::vector<Ev> ev;
  int pos_total = 0;
  for (const Item& it : items) {
    if (!it.negated) ++pos_total;
    if (it.empty) continue;
    ev.push_back({it.r.lo, it.negated ? 0 : 1, it.negated ? 1 : 0});
    if (!(it.r.hi == max)) ev.push_back({add1(it.r.hi), it.negated ? 0 : -1, it.negated ? -1 : 0});
  }
  std::sort(ev.begin(), ev.end(), [](const Ev& a, const Ev& b) { return a.at < b.at; });
  std::vector<Range> out;
  size_t i = 0;
  int pos = 0, neg = 0;
  U128 cur{};
  for (;;) {
    while (i < ev.size() && ev[i].at == cur) {
      pos += ev[i].dpos;
      neg += ev[i].dneg;
      ++i;
    }
    const bool last = i == ev.size();
    const U128 end = last ? max : sub1(ev[i].at);
    bool m = (pos_total == 0 || pos > 0) && neg == 0;
    if (m != negated) {
      if (!out.empty() && add1(out.back().hi) == cur) out.back().hi = end;
      else out.push_back({cur, end});
    }
    if (last) break;
    cur = ev[i].at;
  }
  return out;
}

constexpr uint8_t kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

bool prefix_bits_equal(const uint8_t* a, const uint8_t* b, unsigned bits) {
  unsigned full = bits / 8, rem = bits % 8;
  for (unsigned i = 0; i < full; ++i)
    if (a[i] != b[i]) return false;
  if (rem == 0) return true;
  uint8_t mask = uint8_t(0xff << (8 - rem));
  return (a[full] & mask) == (b[full] & mask);
}

// An address entry seen from IPv4 packets (v4-mapped addresses, domain 2^32).
Item v4_item(const AddrEntry& e) {
  Item it{true, bool(e.negated), {}};
  if (e.family != 0 && e.family != 4) return it;
  const unsigned p = e.prefix_len;
  if (!prefix_bits_equal(e.addr, kMapped, std::min(p, 96u))) return it;
  it.empty = false;
  if (p <= 96) {
    it.r = {U128{0, 0}, U128{0, 0xffffffffull}};
  } else {
    uint32_t v = be32(e.addr + 12);
    unsigned host = 128 - p;
    uint32_t mask = ~((uint32_t(1) << host) - 1);  // host bits: 0..31
    it.r = {U128{0, v & mask}, U128{0, (v & mask) | ~mask}};
  }
  return it;
}

// An address entry seen from IPv6 packets (domain 2^128).
Item v6_item(const AddrEntry& e) {
  Item it{true, bool(e.negated), {}};
  if (e.family != 0 && e.family != 6) return it;
  it.empty = false;
  const unsigned p = e.prefix_len;
  U128 a = be128(e.addr);
  U128 mask;
  mask.hi = p >= 64 ? ~0ull : (p == 0 ? 0 : ~0ull << (64 - p));
  mask.lo = p <= 64 ? 0 : (p == 128 ? ~0ull : ~0ull << (128 - p));
  it.r.lo = {a.hi & mask.hi, a.lo & mask.lo};
  it.r.hi = {it.r.lo.hi | ~mask.hi, it.r.lo.lo | ~mask.lo};
  return it;
}

U128 domain_max(Field f) {
  switch (f) {
    case kSrc4:
    case kDst4: return {0, 0xffffffffull};
    case kSrc6:
    case kDst6: return {~0ull, ~0ull};
    case kSport:
    case kDport: return {0, 65535};
    default: return {0, 4};
  }
}

// The ranges of one slot in one field.
std::vector<Range> slot_ranges(const RuleTables& t, const RuleEntry& r, bool rev, Field f) {
  const U128 max = domain_max(f);
  std::vector<Item> items;
  const FieldSet* s = nullptr;
  switch (f) {
    case kSrc4:
    case kSrc6: s = rev ? &r.dst : &r.src; break;
    case kDst4:
    case kDst6: s = rev ? &r.src : &r.dst; break;
    case kSport: s = rev ? &r.dport : &r.sport; break;
    case kDport: s = rev ? &r.sport : &r.dport; break;
    default: {
      std::vector<Range> out;
      for (uint32_t c = 0; c < 5; ++c)
        if (r.proto_mask & (1u << c)) out.push_back({U128{0, c}, U128{0, c}});
      return out;
    }
  }
  for (uint32_t i = s->first; i < s->first + s->count; ++i) {
    if (f == kSport || f == kDport) {
      const PortEntry& e = t.ports[i];
      items.push_back({e.lo > e.hi, bool(e.negated), {U128{0, e.lo}, U128{0, e.hi}}});
    } else if (f == kSrc4 || f == kDst4) {
      items.push_back(v4_item(t.addrs[i]));
    } else {
      items.push_back(v6_item(t.addrs[i]));
    }
  }
  return set_ranges(items, s->negated, max);
}

void build_field(const RuleTables& t, const Index& idx, Field f, FieldIndex& out) {
  const U128 max = domain_max(f);
  const uint32_t ns = idx.num_slots, nc = idx.num_chunks;
  std::vector<std::vector<Range>> ranges(ns);
  std::vector<U128> starts{U128{}};
  for (uint32_t s = 0; s < ns; ++s) {
    const RuleEntry& r = t.rules[idx.slot_rule[s]];
    const bool rev = s > 0 && idx.slot_rule[s - 1] == idx.slot_rule[s];
    ranges[s] = slot_ranges(t, r, rev, f);
    for (const Range& g : ranges[s]) {
      starts.push_back(g.lo);
      if (!(g.hi == max)) starts.push_back(add1(g.hi));
    }
  }
  std::sort(starts.begin(), starts.end());
  starts.erase(std::unique(starts.begin(), starts.end()), starts.end());
  const uint32_t ni = uint32_t(starts.size());
  out.num_intervals = ni;
  auto index_of = [&](const U128& x) {
    return uint32_t(std::lower_bound(starts.begin(), starts.end(), x) - starts.begin());
  };

  // Toggle events per chunk: (interval where a slot's range starts or ends, slot).
  std::vector<std::vector<std::pair<uint32_t, uint32_t>>> events(nc);
  for (uint32_t s = 0; s < ns; ++s)
    for (const Range& g : ranges[s]) {
      events[s / kChunkSlots].push_back({index_of(g.lo), s % kChunkSlots});
      if (!(g.hi == max)) events[s / kChunkSlots].push_back({index_of(add1(g.hi)), s % kChunkSlots});
    }
  ranges.clear();
  ranges.shrink_to_fit();

  out.class_of.assign(size_t(ni) * nc, 0);
  std::unordered_map<std::string, uint32_t> classes;
  auto intern = [&](const uint64_t* w) {
    std::string key(reinterpret_cast<const char*>(w), kWordsPerChunk * 8);
    auto [it, fresh] = classes.emplace(std::move(key), out.num_classes);
    if (fresh) {
      uint32_t summ = 0;
      for (uint32_t i = 0; i < kWordsPerChunk; ++i) {
        out.words.push_back(w[i]);
        if (w[i]) summ |= 1u << i;
      }
      out.summary.push_back(summ);
      ++out.num_classes;
    }
    return it->second;
  };
  for (uint32_t c = 0; c < nc; ++c) {
    auto& ev = events[c];
    std::sort(ev.begin(), ev.end());
    uint64_t cur[kWordsPerChunk] = {};
    size_t e = 0;
    uint32_t iv = 0;
    while (iv < ni) {
      while (e < ev.size() && ev[e].first == iv) {
        cur[ev[e].second / 64] ^= 1ull << (ev[e].second % 64);
        ++e;
      }
      const uint32_t next = e < ev.size() ? ev[e].first : ni;
      const uint32_t id = intern(cur);
      for (uint32_t j = iv; j < next; ++j) out.class_of[size_t(j) * nc + c] = id;
      iv = next;
    }
    ev.clear();
    ev.shrink_to_fit();
  }

  if (f == kSrc4 || f == kDst4 || f == kSrc6 || f == kDst6) {
    // hint16[k]: the interval holding the first value with top 16 bits k.
    const bool v4 = f == kSrc4 || f == kDst4;
    out.hint16.resize(65537);
    uint32_t iv = 0;
    for (uint32_t k = 0; k < 65536; ++k) {
      const U128 first = v4 ? U128{0, uint64_t(k) << 16} : U128{uint64_t(k) << 48, 0};
      while (iv + 1 < ni && !(first < starts[iv + 1])) ++iv;
      out.hint16[k] = iv;
    }
    out.hint16[65536] = ni - 1;
  }
  switch (f) {
    case kSrc4:
    case kDst4:
      out.starts32.resize(ni);
      for (uint32_t i = 0; i < ni; ++i) out.starts32[i] = uint32_t(starts[i].lo);
      break;
    case kSrc6:
    case kDst6: out.starts128 = std::move(starts); break;
    default: {
      const uint32_t n = uint32_t(max.lo) + 1;
      out.direct.resize(n);
      uint32_t iv = 0;
      for (uint32_t v = 0; v < n; ++v) {
        while (iv + 1 < ni && starts[iv + 1].lo <= v) ++iv;
        out.direct[v] = iv;
      }
    }
  }
}

FieldView field_view(const FieldIndex& f) {
  FieldView v;
  v.num_intervals = f.num_intervals;
  v.starts32 = f.starts32.data();
  v.starts128 = f.starts128.data();
  v.hint16 = f.hint16.data();
  v.direct = f.direct.data();
  v.class_of = f.class_of.data();
  v.words = f.words.data();
  v.summary = f.summary.data();
  return v;
}

}  // namespace

Index build(const RuleTables& t) {
  Index idx;
  for (uint32_t r = 0; r < t.rules.size(); ++r) {
    idx.slot_rule.push_back(r);
    if (t.rules[r].bidirectional) idx.slot_rule.push_back(r);
  }
  idx.num_slots = uint32_t(idx.slot_rule.size());
  idx.num_chunks = (idx.num_slots + kChunkSlots - 1) / kChunkSlots;
  for (int f = 0; f < kNumFields; ++f) build_field(t, idx, Field(f), idx.f[f]);
  return idx;
}

View Index::view() const {
  View v;
  v.num_slots = num_slots;
  v.num_chunks = num_chunks;
  v.slot_rule = slot_rule.data();
  for (int f = 0; f < kNumFields; ++f) v.f[f] = field_view(this->f[f]);
  return v;
}

size_t Index::bytes() const {
  size_t n = slot_rule.size() * 4;
  for (const FieldIndex& x : f) n += x.bytes();
  return n;
}

}  // namespace gpo::classify::acl
