// Differential: the same Ethernet frame through parse_frame() (the agent's
// parser) and through the XDP program (bpf/xdp_filter.bpf.c, BPF_PROG_TEST_RUN).
// The agent installs flow verdicts under flow_key(parse_frame()) and XDP looks
// them up under the key it computes, so they must agree. "Agree", precisely
// (kernels/classify/frame.h states the rules both follow):
//   1. parse_frame says kNotIp  <=>  XDP counts the frame as non_ip.
//   2. parse_frame says kOk     =>   XDP keys the frame, and a verdict installed
//                                    under flow_key(parse_frame()) is the one it
//                                    finds (a DROP verdict: XDP_DROP, cache_drop).
//      A first fragment is the exception: parse_frame reads it like any
//      packet, XDP never decides a fragment from the cache (only the
//      reassembled datagram tells what the rules say), so it is a fragment
//      there (its fragment policy) or, when it hides its L4 header, unparsed.
//   3. parse_frame says kFragment => XDP treats it as a fragment.
//   4. XDP cannot parse it        => parse_frame says kMalformed, or it is a
//                                    first fragment.
// parse_frame may refuse what XDP keys (kMalformed for a lying IP length: the
// frame then gets the default verdict, never one under another key).
// Needs root (BPF); exits 77 (skipped) without it. As root, an XDP program
// that does not load is a failure.
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <vector>

#include "kernels/classify/frame.h"
#include "loader/xdp_loader.h"

namespace {

gpo::loader::XdpFilter* g_filter = nullptr;

enum class Xdp { non_ip, unkeyed, fragment, keyed_miss, cache_drop, other };

// One run from a zeroed stats map; which counter the frame landed in.
Xdp run(const std::vector<uint8_t>& frame) {
  const int ncpu = libbpf_num_possible_cpus();
  std::vector<gpo_xdp_stats> zero(size_t(ncpu > 0 ? ncpu : 1));
  uint32_t k0 = 0;
  if (bpf_map_update_elem(g_filter->stats_fd(), &k0, zero.data(), BPF_ANY) != 0) std::abort();
  std::vector<uint8_t> out(frame.size() + 256);
  LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = frame.data(), .data_out = out.data(),
              .data_size_in = uint32_t(frame.size()), .data_size_out = uint32_t(out.size()));
  if (bpf_prog_test_run_opts(g_filter->filter_prog_fd(), &opts) != 0) {
    std::fprintf(stderr, "BPF_PROG_TEST_RUN: %s\n", std::strerror(errno));
    std::abort();
  }
  const gpo_xdp_stats st = g_filter->read_stats();
  if (st.non_ip_pass.packets) return Xdp::non_ip;
  if (st.parse_fail_drop.packets) return Xdp::unkeyed;
  if (st.frag_drop.packets) return Xdp::fragment;
  if (st.no_agent_pass.packets) return Xdp::keyed_miss;
  if (st.cache_drop.packets && opts.retval == XDP_DROP) return Xdp::cache_drop;
  return Xdp::other;
}

// A first fragment as parse_frame located it: IPv4 with MF set, or IPv6 with a
// Fragment header in its chain (offset 0, else parse_frame said kFragment).
bool is_first_fragment(const std::vector<uint8_t>& f, const gpo::classify::ParsedFrame& p) {
  const uint8_t* ip = f.data() + p.l3_offset;
  if (p.ip_version == 4) return (ip[6] & 0x20) != 0;
  uint8_t next = ip[6];
  const uint8_t* cur = ip + 40;
  const uint8_t* l4 = f.data() + p.l4_offset;
  while (cur < l4) {
    if (next == 44) return true;
    const uint8_t len_units = cur[1];
    const uint8_t nh = cur[0];
    cur += next == 51 ? (len_units + 2) * 4 : (len_units + 1) * 8;
    next = nh;
  }
  return false;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  if (geteuid() != 0) {
    std::printf("SKIP: the XDP differential target needs root (BPF_PROG_TEST_RUN)\n");
    std::exit(77);
  }
  gpo::loader::XdpOptions o;
  o.pin_dir = "";  // never a running agent's pinned maps
  try {
    g_filter = gpo::loader::XdpFilter::load(o).release();
  } catch (const std::exception& e) {
    std::fprintf(stderr, "root, yet the XDP program did not load: %s\n", e.what());
    std::abort();
  }
  // Unparsed frames and fragments dropped, misses passed (no AF_XDP socket):
  // each outcome its own counter.
  gpo_xdp_config cfg{};
  cfg.fail_policy = GPO_ACT_PASS;
  cfg.unparsed_policy = GPO_ACT_DROP;
  cfg.non_ip_policy = GPO_ACT_PASS;
  cfg.frag_policy = GPO_FRAG_DROP;
  g_filter->set_config(cfg);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  // BPF_PROG_TEST_RUN takes a frame of at least an Ethernet header; an MTU's worth is enough.
  if (size < 14 || size > 1514) return 0;
  const std::vector<uint8_t> frame(data, data + size);
  const gpo::classify::ParsedFrame p = gpo::classify::parse_frame(frame.data(), uint32_t(size));
  g_filter->flush_flows();
  const Xdp x = run(frame);
  using S = gpo::classify::ParseStatus;
  if ((p.status == S::kNotIp) != (x == Xdp::non_ip)) std::abort();                        // 1
  if (p.status == S::kFragment && x != Xdp::fragment) std::abort();                       // 3
  if (x == Xdp::unkeyed && p.status != S::kMalformed && !p.ok()) std::abort();            // 4
  if (x == Xdp::other) std::abort();
  if (p.ok() && (x == Xdp::fragment || x == Xdp::unkeyed)) {                               // 2, first fragments
    if (!is_first_fragment(frame, p)) std::abort();
  } else if (p.ok()) {                                                                     // 2
    if (x != Xdp::keyed_miss) std::abort();
    g_filter->install_verdict(gpo::classify::flow_key(p), GPO_ACT_DROP, 1);
    if (run(frame) != Xdp::cache_drop) std::abort();
    g_filter->flush_flows();
  }
  return 0;
}
