// CPU baselines the packet-filter benchmarks put next to the GPU: Hyperscan
// (multi-pattern payload scanning) and DPDK's rte_acl (5-tuple ACL), on one
// core and on N threads, over the same patterns / rules and the same
// payloads / packets the GPU gets.
//
// Neither library is needed to build or run the agent: both are loaded with
// dlopen() on first use (libhs.so.5 from Debian's libhyperscan5; librte_acl.so.23
// and librte_eal.so.23 from librte-acl23, DPDK 22.11). Linking them would make
// every agent binary depend on two libraries the GPU machine and most users
// lack, for a benchmark row. When a library is missing the result says so
// (ran = false, why_not = "not run: libhs.so.5 not found ..."), and the
// benchmark prints that instead of a number.
//
// Each call also returns what it found on one pass (match counts, optional
// per-item results) so the benchmark and the tests can check that the baseline
// agrees with the CPU matcher / CPU classifier before trusting its rate.
#pragma once
#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "kernels/classify/classify.h"
#include "kernels/classify/tables.h"
#include "kernels/match/match.h"
#include "kernels/match/match_gpu.h"

namespace gpo::bench {

struct BaselineResult {
  bool ran = false;
  std::string why_not;        // when !ran: "not run: <reason>"
  unsigned threads = 0;       // threads that ran the measured passes
  double build_seconds = 0;   // Hyperscan database compile / rte_acl build
  double seconds = 0;         // wall time of the measured passes
  uint64_t items = 0;         // payloads scanned / packets classified in `seconds`
  uint64_t bytes = 0;         // payload bytes scanned (Hyperscan) / frame bytes (rte_acl) in `seconds`
  uint64_t matches = 0;       // one pass: (payload, pattern) pairs found / packets that matched a rule
  uint64_t skipped_items = 0; // rte_acl: packets it cannot classify (not IPv4, did not parse)
  uint64_t skipped_rules = 0; // rte_acl: rules it cannot express (see rte_acl_classify)
  std::string note;           // what the figure covers (algorithm picked, expansions, ...)

  double items_per_second() const { return seconds > 0 ? double(items) / seconds : 0; }
  double bytes_per_second() const { return seconds > 0 ? double(bytes) / seconds : 0; }
};

// True when the library can be loaded; otherwise *why is the "not run: ..." line.
bool hyperscan_available(std::string* why = nullptr);
bool rte_acl_available(std::string* why = nullptr);

// Hyperscan block mode over payloads[i] (slices of data, each cut to its
// first `depth` bytes), one database of all patterns: literals through
// hs_compile_lit_multi (bytes as they are, NUL and hex bytes included: no
// regex escaping needed), HS_FLAG_CASELESS for nocase, HS_FLAG_SINGLEMATCH
// (each pattern reported once per payload, which is all the classifier needs).
// Payloads are split evenly over `threads` threads (each its own scratch);
// passes repeat until min_seconds. hit_bits, when given, receives one pass's
// per-payload bitsets in DeviceMatcher's format (bitset_words = (patterns+31)/32).
BaselineResult hyperscan_scan(std::span<const match::Pattern> patterns, std::span<const uint8_t> data,
                              std::span<const match::gpu::PayloadRef> payloads, uint32_t depth, unsigned threads,
                              double min_seconds, std::vector<uint32_t>* hit_bits = nullptr);

// rte_acl over the header part of the rule tables, IPv4 only. Each field set
// (lists, negated entries, negated lists: the exact addr_set_match /
// port_set_match semantics) becomes the set of values it matches, as ranges;
// address ranges become the fewest CIDRs. One ACL rule per (protocol, src
// CIDR, dst CIDR, sport range, dport range), and the swapped ones for `<>`;
// priority by file order so the highest priority match is the first match.
// The 5-tuples are extracted from the frames with classify::parse_frame before
// timing (as DPDK applications hand rte_acl a pointer into the packet); the
// rate is rte_acl_classify alone, in bursts of 64. Left out, counted in
// skipped_*: IPv6 packets (rte_acl needs a second context with 128-bit
// fields, not built), frames that do not parse, and rules it cannot express:
// `content` (payload) and protocol sets with "other" protocols short of `ip`.
// IPv6 address entries never match an IPv4 packet and add no ACL rule. Not
// run when the expansion passes 4M ACL rules. sids, when given, receives one
// pass's per-frame result: the sid of the first matching rule, 0 for none
// (the default policy), UINT32_MAX for a skipped frame. Verdicts agree with
// the CPU classifier's rule_id when skipped_rules == 0.
BaselineResult rte_acl_classify(const classify::RuleTables& tables, std::span<const classify::Frame> frames,
                                unsigned threads, double min_seconds, std::vector<uint32_t>* sids = nullptr);

}  // namespace gpo::bench
