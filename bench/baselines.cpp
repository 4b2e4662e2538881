// Hyperscan and rte_acl baselines, loaded with dlopen (see baselines.h).
#include "bench/baselines.h"

#include <dlfcn.h>
#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <mutex>
#include <thread>

#include "kernels/classify/frame.h"

#if __has_include(<hs/hs.h>)
#include <hs/hs.h>
#define GPO_HAVE_HS_HEADER 1
#endif

namespace gpo::bench {
namespace {

using Clock = std::chrono::steady_clock;

double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// Runs work(thread, begin, end) over [0, n) split in `threads` slices, `passes`
// times, repeating with more passes until min_seconds; returns seconds and passes.
template <typename Work>
std::pair<double, uint64_t> timed_passes(size_t n, unsigned threads, double min_seconds, Work&& work) {
  threads = std::max(1u, std::min<unsigned>(threads, unsigned(std::max<size_t>(n, 1))));
  uint64_t passes = 1;
  for (;;) {
    auto t0 = Clock::now();
    auto run = [&](unsigned t) {
      const size_t b = n * t / threads, e = n * (t + 1) / threads;
      for (uint64_t p = 0; p < passes; ++p) work(t, b, e);
    };
    if (threads == 1) {
      run(0);
    } else {
      std::vector<std::thread> pool;
      for (unsigned t = 0; t < threads; ++t) pool.emplace_back(run, t);
      for (auto& th : pool) th.join();
    }
    double s = since(t0);
    if (s >= min_seconds || passes >= (1ull << 30)) return {s, passes};
    passes = std::max<uint64_t>(passes * 2, uint64_t(double(passes) * min_seconds * 1.2 / std::max(s, 1e-6)));
  }
}

// ---- Hyperscan ---------------------------------------------------------------

#ifdef GPO_HAVE_HS_HEADER
struct HsApi {
  void* lib = nullptr;
  std::string error;
  decltype(&hs_compile_lit_multi) compile_lit_multi = nullptr;
  decltype(&hs_free_compile_error) free_compile_error = nullptr;
  decltype(&hs_alloc_scratch) alloc_scratch = nullptr;
  decltype(&hs_clone_scratch) clone_scratch = nullptr;
  decltype(&hs_free_scratch) free_scratch = nullptr;
  decltype(&hs_free_database) free_database = nullptr;
  decltype(&hs_scan) scan = nullptr;
  decltype(&hs_valid_platform) valid_platform = nullptr;
  decltype(&hs_version) version = nullptr;
};

const HsApi& hs_api() {
  static HsApi api;
  static std::once_flag once;
  std::call_once(once, [] {
    api.lib = dlopen("libhs.so.5", RTLD_NOW | RTLD_LOCAL);
    if (!api.lib) {
      api.error = std::string("not run: libhs.so.5 not found (") + dlerror() + "); install libhyperscan5";
      return;
    }
    bool ok = true;
    auto sym = [&](auto& fn, const char* name) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(api.lib, name));
      ok = ok && fn;
    };
    sym(api.compile_lit_multi, "hs_compile_lit_multi");
    sym(api.free_compile_error, "hs_free_compile_error");
    sym(api.alloc_scratch, "hs_alloc_scratch");
    sym(api.clone_scratch, "hs_clone_scratch");
    sym(api.free_scratch, "hs_free_scratch");
    sym(api.free_database, "hs_free_database");
    sym(api.scan, "hs_scan");
    sym(api.valid_platform, "hs_valid_platform");
    sym(api.version, "hs_version");
    if (!ok) {
      api.error = "not run: libhs.so.5 lacks a function this benchmark uses (Hyperscan >= 5.2 needed)";
    } else if (api.valid_platform() != HS_SUCCESS) {
      api.error = "not run: Hyperscan does not support this CPU (needs SSSE3)";
      ok = false;
    }
    if (!ok) {
      dlclose(api.lib);
      api.lib = nullptr;
    }
  });
  return api;
}

struct HsScanCtx {
  uint32_t* bits;  // null: count only
  uint64_t count;
};

int on_hs_match(unsigned id, unsigned long long, unsigned long long, unsigned, void* ctx) {
  auto* c = static_cast<HsScanCtx*>(ctx);
  ++c->count;
  if (c->bits) c->bits[id >> 5] |= 1u << (id & 31);
  return 0;
}
#endif

// ---- rte_acl (DPDK 22.11, ABI 23) ---------------------------------------------
// Declared here, not included: the headers come with libdpdk-dev, which pulls
// in some 200 packages for five structs. These match rte_acl.h of DPDK 22.11.

constexpr int kAclMaxFields = 64;
enum { kAclFieldMask = 0, kAclFieldRange = 1, kAclFieldBitmask = 2 };
constexpr int32_t kAclMaxPriority = (1 << 29) - 1;

union AclFieldTypes {
  uint8_t u8;
  uint16_t u16;
  uint32_t u32;
  uint64_t u64;
};
struct AclFieldDef {
  uint8_t type, size, field_index, input_index;
  uint32_t offset;
};
struct AclConfig {
  uint32_t num_categories;
  uint32_t num_fields;
  AclFieldDef defs[kAclMaxFields];
  size_t max_size;
};
struct AclField {
  AclFieldTypes value;
  AclFieldTypes mask_range;
};
struct AclRuleData {
  uint32_t category_mask;
  int32_t priority;
  uint32_t userdata;
};
constexpr int kAclFields = 5;
struct AclRule {  // RTE_ACL_RULE_DEF(, 5)
  AclRuleData data;
  AclField field[kAclFields];
};
struct AclParam {
  const char* name;
  int socket_id;
  uint32_t rule_size;
  uint32_t max_rule_num;
};
struct rte_acl_ctx;

// The key rte_acl reads: protocol, addresses and ports in network byte order,
// laid out in 4-byte input groups as DPDK's ipv4 5-tuple examples do.
struct AclKey {
  uint8_t proto;
  uint8_t pad[3];
  uint32_t src;
  uint32_t dst;
  uint16_t sport;
  uint16_t dport;
};

struct AclApi {
  void* eal = nullptr;
  void* acl = nullptr;
  std::string error;
  int (*eal_init)(int, char**) = nullptr;
  rte_acl_ctx* (*create)(const AclParam*) = nullptr;
  int (*add_rules)(rte_acl_ctx*, const void*, uint32_t) = nullptr;
  int (*build)(rte_acl_ctx*, const AclConfig*) = nullptr;
  int (*classify)(const rte_acl_ctx*, const uint8_t**, uint32_t*, uint32_t, uint32_t) = nullptr;
  void (*free_ctx)(rte_acl_ctx*) = nullptr;
};

const AclApi& acl_api() {
  static AclApi api;
  static std::once_flag once;
  std::call_once(once, [] {
    api.eal = dlopen("librte_eal.so.23", RTLD_NOW | RTLD_GLOBAL);
    if (!api.eal) {
      api.error = std::string("not run: librte_eal.so.23 not found (") + dlerror() + "); install librte-acl23";
      return;
    }
    api.acl = dlopen("librte_acl.so.23", RTLD_NOW | RTLD_GLOBAL);
    if (!api.acl) {
      api.error = std::string("not run: librte_acl.so.23 not found (") + dlerror() + "); install librte-acl23";
      return;
    }
    api.eal_init = reinterpret_cast<int (*)(int, char**)>(dlsym(api.eal, "rte_eal_init"));
    api.create = reinterpret_cast<rte_acl_ctx* (*)(const AclParam*)>(dlsym(api.acl, "rte_acl_create"));
    api.add_rules = reinterpret_cast<int (*)(rte_acl_ctx*, const void*, uint32_t)>(dlsym(api.acl, "rte_acl_add_rules"));
    api.build = reinterpret_cast<int (*)(rte_acl_ctx*, const AclConfig*)>(dlsym(api.acl, "rte_acl_build"));
    api.classify = reinterpret_cast<int (*)(const rte_acl_ctx*, const uint8_t**, uint32_t*, uint32_t, uint32_t)>(
        dlsym(api.acl, "rte_acl_classify"));
    api.free_ctx = reinterpret_cast<void (*)(rte_acl_ctx*)>(dlsym(api.acl, "rte_acl_free"));
    if (!api.eal_init || !api.create || !api.add_rules || !api.build || !api.classify || !api.free_ctx) {
      api.error = "not run: librte_acl.so.23 lacks a function this benchmark uses";
      return;
    }
    // EAL without hugepages, PCI or shared files; it pins the calling thread
    // to lcore 0, so restore this thread's affinity afterwards (the N-thread
    // measurements must not all land on one core).
    cpu_set_t saved;
    CPU_ZERO(&saved);
    const bool have_aff = pthread_getaffinity_np(pthread_self(), sizeof saved, &saved) == 0;
    const char* args[] = {"gpo-bench", "--no-huge", "-m", "2048", "--no-pci", "--no-shconf", "--no-telemetry",
                          "-l", "0", "--log-level=4", "--force-max-simd-bitwidth=512"};
    std::vector<char*> argv;
    for (const char* a : args) argv.push_back(const_cast<char*>(a));
    argv.push_back(nullptr);
    const int rc = api.eal_init(int(argv.size() - 1), argv.data());
    if (have_aff) pthread_setaffinity_np(pthread_self(), sizeof saved, &saved);
    if (rc < 0) {
      api.error = "not run: rte_eal_init failed (--no-huge --no-shconf; see the EAL lines above)";
      return;
    }
    api.error.clear();
  });
  return api;
}

// Sets of values as sorted, disjoint, inclusive ranges.
using Ranges = std::vector<std::pair<uint64_t, uint64_t>>;

Ranges normalize(Ranges v) {
  std::sort(v.begin(), v.end());
  Ranges out;
  for (auto [lo, hi] : v) {
    if (!out.empty() && lo <= out.back().second + 1) out.back().second = std::max(out.back().second, hi);
    else out.push_back({lo, hi});
  }
  return out;
}

Ranges complement(const Ranges& v, uint64_t max) {  // v normalized, within [0, max]
  Ranges out;
  uint64_t next = 0;
  for (auto [lo, hi] : v) {
    if (lo > next) out.push_back({next, lo - 1});
    next = hi + 1;
  }
  if (next <= max) out.push_back({next, max});
  return out;
}

Ranges subtract(const Ranges& a, const Ranges& b, uint64_t max) {  // a \ b
  Ranges nb = complement(b, max), out;
  for (auto [alo, ahi] : a)
    for (auto [blo, bhi] : nb) {
      const uint64_t lo = std::max(alo, blo), hi = std::min(ahi, bhi);
      if (lo <= hi) out.push_back({lo, hi});
    }
  return normalize(out);
}

// The values of a field that match a FieldSet, exactly as addr_set_match /
// port_set_match decide: (no positive entry, or in one) and in no negated
// entry, inverted for a negated set. `entry(i, lo, hi)` gives entry i's range
// and returns false when the entry can never match (an IPv6 entry for an IPv4
// packet), `neg(i)` whether it is negated.
template <typename Entry, typename Neg>
Ranges field_ranges(const classify::FieldSet& s, uint64_t max, Entry&& entry, Neg&& neg) {
  Ranges pos, negs;
  bool any_pos = false;
  for (uint32_t i = s.first; i < s.first + s.count; ++i) {
    uint64_t lo = 0, hi = 0;
    const bool can = entry(i, lo, hi);
    if (neg(i)) {
      if (can) negs.push_back({lo, hi});
    } else {
      any_pos = true;  // even an entry of the other family: the list "has a positive entry"
      if (can) pos.push_back({lo, hi});
    }
  }
  Ranges base = any_pos ? normalize(pos) : Ranges{{0, max}};
  Ranges m = subtract(base, normalize(negs), max);
  return s.negated ? complement(m, max) : m;
}

// A range of IPv4 addresses as the fewest CIDRs (address, prefix length).
void to_cidrs(uint64_t lo, uint64_t hi, std::vector<std::pair<uint32_t, uint32_t>>& out) {
  while (lo <= hi) {
    uint32_t len = 32;
    // Widen while the block stays aligned at lo and inside [lo, hi].
    while (len > 0) {
      const uint64_t size = 1ull << (32 - (len - 1));
      if ((lo & (size - 1)) != 0 || lo + size - 1 > hi) break;
      --len;
    }
    out.push_back({uint32_t(lo), len});
    lo += 1ull << (32 - len);
  }
}

// One rule of the tables as ACL rules (IPv4): one per (protocol, src CIDR,
// dst CIDR, sport range, dport range) of its matching sets, both directions
// for `<>`. Returns false when it cannot be expressed (contents; "other"
// protocols) or the expansion passes `cap`.
bool expand_rule(const classify::RuleTables& t, const classify::RuleEntry& r, int32_t priority, uint32_t userdata,
                 std::vector<AclRule>& out, size_t cap) {
  using namespace classify;
  if (r.content_count != 0) return false;
  std::vector<uint8_t> protos;
  if ((r.proto_mask & kProtoAnyIp) == kProtoAnyIp) {
    protos.push_back(0);  // any: mask 0
  } else {
    if (r.proto_mask & kProtoOther) return false;
    if (r.proto_mask & kProtoTcp) protos.push_back(6);
    if (r.proto_mask & kProtoUdp) protos.push_back(17);
    if (r.proto_mask & kProtoIcmp4) protos.push_back(1);
    if (r.proto_mask & kProtoIcmp6) protos.push_back(58);
  }
  auto addr_entry = [&](uint32_t i, uint64_t& lo, uint64_t& hi) {
    const AddrEntry& e = t.addrs[i];
    if (e.family == 6) return false;
    if (e.family == 0) {
      lo = 0, hi = 0xffffffffull;
      return true;
    }
    const uint32_t a = uint32_t(e.addr[12]) << 24 | uint32_t(e.addr[13]) << 16 | uint32_t(e.addr[14]) << 8 | e.addr[15];
    const uint32_t len = e.prefix_len >= 96 ? uint32_t(e.prefix_len - 96) : 0u;
    lo = a;
    hi = uint64_t(a) + ((1ull << (32 - len)) - 1);
    return true;
  };
  auto addr_neg = [&](uint32_t i) { return t.addrs[i].negated != 0; };
  auto port_entry = [&](uint32_t i, uint64_t& lo, uint64_t& hi) {
    lo = t.ports[i].lo, hi = t.ports[i].hi;
    return true;
  };
  auto port_neg = [&](uint32_t i) { return t.ports[i].negated != 0; };
  auto cidrs = [&](const FieldSet& s) {
    std::vector<std::pair<uint32_t, uint32_t>> v;
    for (auto [lo, hi] : field_ranges(s, 0xffffffffull, addr_entry, addr_neg)) to_cidrs(lo, hi, v);
    return v;
  };
  const auto src = cidrs(r.src), dst = cidrs(r.dst);
  const Ranges sp = field_ranges(r.sport, 65535, port_entry, port_neg);
  const Ranges dp = field_ranges(r.dport, 65535, port_entry, port_neg);
  for (int dir = 0; dir < (r.bidirectional ? 2 : 1); ++dir) {
    const auto& S = dir ? dst : src;
    const auto& D = dir ? src : dst;
    const auto& SP = dir ? dp : sp;
    const auto& DP = dir ? sp : dp;
    if (out.size() + protos.size() * S.size() * D.size() * SP.size() * DP.size() > cap) return false;
    for (uint8_t pr : protos)
      for (auto [saddr, slen] : S)
        for (auto [daddr, dlen] : D)
          for (auto [slo, shi] : SP)
            for (auto [dlo, dhi] : DP) {
              AclRule a{};
              a.data.category_mask = 1;
              a.data.priority = priority;
              a.data.userdata = userdata;
              a.field[0].value.u8 = pr;
              a.field[0].mask_range.u8 = pr ? 0xff : 0;
              a.field[1].value.u32 = saddr;
              a.field[1].mask_range.u32 = slen;
              a.field[2].value.u32 = daddr;
              a.field[2].mask_range.u32 = dlen;
              a.field[3].value.u16 = uint16_t(slo);
              a.field[3].mask_range.u16 = uint16_t(shi);
              a.field[4].value.u16 = uint16_t(dlo);
              a.field[4].mask_range.u16 = uint16_t(dhi);
              out.push_back(a);
            }
  }
  return true;
}

}  // namespace

bool hyperscan_available(std::string* why) {
#ifdef GPO_HAVE_HS_HEADER
  const HsApi& api = hs_api();
  if (why) *why = api.error;
  return api.lib != nullptr;
#else
  if (why) *why = "not run: built without Hyperscan headers (libhyperscan-dev)";
  return false;
#endif
}

bool rte_acl_available(std::string* why) {
  const AclApi& api = acl_api();
  if (why) *why = api.error;
  return api.error.empty();
}

BaselineResult hyperscan_scan(std::span<const match::Pattern> patterns, std::span<const uint8_t> data,
                              std::span<const match::gpu::PayloadRef> payloads, uint32_t depth, unsigned threads,
                              double min_seconds, std::vector<uint32_t>* hit_bits) {
  BaselineResult r;
#ifndef GPO_HAVE_HS_HEADER
  (void)patterns, (void)data, (void)payloads, (void)depth, (void)threads, (void)min_seconds, (void)hit_bits;
  hyperscan_available(&r.why_not);
  return r;
#else
  if (!hyperscan_available(&r.why_not)) return r;
  const HsApi& hs = hs_api();
  if (patterns.empty()) {
    r.why_not = "not run: no patterns (Hyperscan needs at least one)";
    return r;
  }
  for (const auto& p : payloads)
    if (size_t(p.offset) + p.len > data.size()) {
      r.why_not = "not run: payload outside the data buffer";
      return r;
    }
  std::vector<const char*> exprs;
  std::vector<size_t> lens;
  std::vector<unsigned> flags, ids;
  for (size_t i = 0; i < patterns.size(); ++i) {
    exprs.push_back(patterns[i].bytes.data());
    lens.push_back(patterns[i].bytes.size());
    flags.push_back(HS_FLAG_SINGLEMATCH | (patterns[i].nocase ? HS_FLAG_CASELESS : 0u));
    ids.push_back(unsigned(i));
  }
  hs_database_t* db = nullptr;
  hs_compile_error_t* err = nullptr;
  auto t0 = Clock::now();
  if (hs.compile_lit_multi(exprs.data(), flags.data(), ids.data(), lens.data(), unsigned(exprs.size()), HS_MODE_BLOCK,
                           nullptr, &db, &err) != HS_SUCCESS) {
    r.why_not = std::string("not run: hs_compile_lit_multi: ") + (err && err->message ? err->message : "failed");
    if (err) hs.free_compile_error(err);
    return r;
  }
  r.build_seconds = since(t0);
  threads = std::max(1u, threads);
  std::vector<hs_scratch_t*> scratch(threads, nullptr);
  bool ok = hs.alloc_scratch(db, &scratch[0]) == HS_SUCCESS;
  for (unsigned t = 1; t < threads && ok; ++t) ok = hs.clone_scratch(scratch[0], &scratch[t]) == HS_SUCCESS;
  auto cleanup = [&] {
    for (auto* s : scratch)
      if (s) hs.free_scratch(s);
    hs.free_database(db);
  };
  if (!ok) {
    r.why_not = "not run: hs_alloc_scratch failed";
    cleanup();
    return r;
  }
  uint64_t bytes_per_pass = 0;
  for (const auto& p : payloads) bytes_per_pass += std::min(p.len, depth);

  // One pass for the match count (and bitsets).
  const uint32_t words = uint32_t((patterns.size() + 31) / 32);
  if (hit_bits) hit_bits->assign(payloads.size() * words, 0);
  for (size_t i = 0; i < payloads.size(); ++i) {
    HsScanCtx c{hit_bits ? hit_bits->data() + i * words : nullptr, 0};
    const auto& p = payloads[i];
    hs.scan(db, reinterpret_cast<const char*>(data.data() + p.offset), std::min(p.len, depth), 0, scratch[0],
            on_hs_match, &c);
    r.matches += c.count;
  }

  std::atomic<bool> failed{false};
  auto [secs, passes] = timed_passes(payloads.size(), threads, min_seconds, [&](unsigned t, size_t b, size_t e) {
    HsScanCtx c{nullptr, 0};
    for (size_t i = b; i < e; ++i) {
      const auto& p = payloads[i];
      if (hs.scan(db, reinterpret_cast<const char*>(data.data() + p.offset), std::min(p.len, depth), 0, scratch[t],
                  on_hs_match, &c) != HS_SUCCESS)
        failed = true;
    }
  });
  cleanup();
  if (failed) {
    r.why_not = "not run: hs_scan failed";
    return r;
  }
  r.ran = true;
  r.threads = std::min<unsigned>(threads, unsigned(std::max<size_t>(payloads.size(), 1)));
  r.seconds = secs;
  r.items = passes * payloads.size();
  r.bytes = passes * bytes_per_pass;
  r.note = std::string("Hyperscan ") + hs.version() + ", block mode, literal database";
  return r;
#endif
}

BaselineResult rte_acl_classify(const classify::RuleTables& tables, std::span<const classify::Frame> frames,
                                unsigned threads, double min_seconds, std::vector<uint32_t>* sids) {
  BaselineResult r;
  if (!rte_acl_available(&r.why_not)) return r;
  const AclApi& acl = acl_api();

  // Rules -> ACL rules; userdata = rule index + 1 (0 is rte_acl's "no match").
  constexpr size_t kMaxAclRules = 4'000'000;
  std::vector<AclRule> rules;
  for (size_t i = 0; i < tables.rules.size(); ++i) {
    const size_t before = rules.size();
    if (!expand_rule(tables, tables.rules[i], kAclMaxPriority - int32_t(i), uint32_t(i + 1), rules, kMaxAclRules)) {
      rules.resize(before);
      if (tables.rules[i].content_count == 0 && !(tables.rules[i].proto_mask & classify::kProtoOther &&
                                                  (tables.rules[i].proto_mask & classify::kProtoAnyIp) != classify::kProtoAnyIp)) {
        r.why_not = "not run: the rules expand to more than 4M rte_acl rules (CIDRs x port ranges per rule)";
        return r;
      }
      ++r.skipped_rules;
    }
  }

  // 5-tuples, untimed.
  std::vector<AclKey> keys;
  std::vector<uint32_t> key_frame;  // keys[k] is frames[key_frame[k]]
  uint64_t frame_bytes = 0;
  for (size_t i = 0; i < frames.size(); ++i) {
    const auto p = classify::parse_frame(frames[i].data, frames[i].len);
    if (!p.ok() || p.ip_version != 4) {
      ++r.skipped_items;
      continue;
    }
    AclKey k{};
    k.proto = p.proto;
    std::memcpy(&k.src, p.src + 12, 4);  // network byte order, as in the packet
    std::memcpy(&k.dst, p.dst + 12, 4);
    k.sport = uint16_t(p.sport >> 8 | p.sport << 8);
    k.dport = uint16_t(p.dport >> 8 | p.dport << 8);
    keys.push_back(k);
    key_frame.push_back(uint32_t(i));
    frame_bytes += frames[i].len;
  }
  std::vector<const uint8_t*> ptrs(keys.size());
  for (size_t k = 0; k < keys.size(); ++k) ptrs[k] = reinterpret_cast<const uint8_t*>(&keys[k]);

  static std::atomic<unsigned> ctx_seq{0};
  const std::string name = "gpo-bench-" + std::to_string(ctx_seq++);
  AclParam param{name.c_str(), -1, uint32_t(sizeof(AclRule)), uint32_t(std::max<size_t>(rules.size(), 1))};
  auto t0 = Clock::now();
  rte_acl_ctx* ctx = acl.create(&param);
  if (!ctx) {
    r.why_not = "not run: rte_acl_create failed";
    return r;
  }
  AclConfig cfg{};
  cfg.num_categories = 1;
  cfg.num_fields = kAclFields;
  cfg.defs[0] = {kAclFieldBitmask, 1, 0, 0, uint32_t(offsetof(AclKey, proto))};
  cfg.defs[1] = {kAclFieldMask, 4, 1, 1, uint32_t(offsetof(AclKey, src))};
  cfg.defs[2] = {kAclFieldMask, 4, 2, 2, uint32_t(offsetof(AclKey, dst))};
  cfg.defs[3] = {kAclFieldRange, 2, 3, 3, uint32_t(offsetof(AclKey, sport))};
  cfg.defs[4] = {kAclFieldRange, 2, 4, 3, uint32_t(offsetof(AclKey, dport))};
  cfg.max_size = 0;
  int rc = rules.empty() ? 0 : acl.add_rules(ctx, rules.data(), uint32_t(rules.size()));
  if (rc == 0) rc = acl.build(ctx, &cfg);
  r.build_seconds = since(t0);
  if (rc != 0) {
    acl.free_ctx(ctx);
    r.why_not = "not run: rte_acl add/build failed (rc " + std::to_string(rc) + ")";
    return r;
  }

  // One pass for the verdicts.
  std::vector<uint32_t> res(keys.size(), 0);
  if (!keys.empty()) acl.classify(ctx, ptrs.data(), res.data(), uint32_t(keys.size()), 1);
  if (sids) sids->assign(frames.size(), UINT32_MAX);
  for (size_t k = 0; k < keys.size(); ++k) {
    if (res[k] != 0) ++r.matches;
    if (sids) (*sids)[key_frame[k]] = res[k] == 0 ? 0 : tables.rules[res[k] - 1].sid;
  }

  // Timed: classify in bursts of 64 (as a DPDK rx loop does) per thread.
  threads = std::max(1u, threads);
  std::vector<std::vector<uint32_t>> out(threads, std::vector<uint32_t>(64));
  std::atomic<bool> failed{false};
  auto [secs, passes] = timed_passes(keys.size(), threads, min_seconds, [&](unsigned t, size_t b, size_t e) {
    for (size_t i = b; i < e; i += 64) {
      const uint32_t n = uint32_t(std::min<size_t>(64, e - i));
      if (acl.classify(ctx, ptrs.data() + i, out[t].data(), n, 1) != 0) failed = true;
    }
  });
  acl.free_ctx(ctx);
  if (failed) {
    r.why_not = "not run: rte_acl_classify failed";
    return r;
  }
  r.ran = true;
  r.threads = std::min<unsigned>(threads, unsigned(std::max<size_t>(keys.size(), 1)));
  r.seconds = secs;
  r.items = passes * keys.size();
  r.bytes = passes * frame_bytes;
  r.note = std::to_string(rules.size()) + " rte_acl rules from " + std::to_string(tables.rules.size() - r.skipped_rules) +
           " rules, IPv4, bursts of 64, DPDK 22.11 default algorithm";
  return r;
}

}  // namespace gpo::bench
