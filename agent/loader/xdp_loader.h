// Loads bpf/xdp_filter.bpf.c (libbpf skeleton), pins its maps under
// /sys/fs/bpf/gpuoffload/ and attaches xdp_filter to one interface (host mode)
// or two (inline mode: IFACE and its PEER port). docs/xdp.md describes the
// program's policy table; this is the agent's handle on it.
//
// The attachments are bpf_links pinned next to the maps (xdp_link_IFNAME), so
// they outlive the process: a crash, an uncaught exception or SIGKILL leaves
// the filter attached and its fail policy in force. A new XdpFilter adopts
// the pinned links of its interfaces (swapping its program in atomically);
// only detach() removes them, which `run` calls on a clean stop.
#pragma once
#include <cstdint>
#include <memory>
#include <stdexcept>
#include <span>
#include <string>
#include <vector>

#include "xdp_filter.h"

struct xdp_filter;  // the generated skeleton (xdp_filter.skel.h)

namespace gpo::loader {

// Thrown by XdpFilter; kind tells the CLI which exit code fits.
struct XdpError : std::runtime_error {
  enum class Kind { failure, usage, privilege, unsupported };
  Kind kind;
  XdpError(Kind k, const std::string& msg) : std::runtime_error(msg), kind(k) {}
};

struct XdpOptions {
  std::vector<std::string> ifaces;  // 1 = host mode, 2 = inline (IFACE, PEER)
  uint8_t fail_policy = GPO_ACT_PASS;      // a miss while the agent is gone (no socket, stale heartbeat)
  uint8_t unparsed_policy = GPO_ACT_PASS;  // malformed IP packets, tiny first fragments, long header chains
  uint8_t non_ip_policy = GPO_ACT_PASS;    // ARP, LLDP, ...: pass (inline: forwarded to the peer) or drop
  uint8_t frag_policy = GPO_FRAG_REASSEMBLE;
  // A miss the agent's socket has no room for (enum gpo_overload_policy);
  // OFF leaves it to the kernel, which drops it at the socket.
  uint8_t overload_policy = GPO_OVERLOAD_OFF;
  uint32_t credit_reserve = 0;  // socket room kept for flows under inspection
  // Heartbeat older than this: the agent counts as gone (0 = only a missing socket says so).
  uint32_t agent_timeout_ms = 0;
  // Idle timeouts of cached verdicts in seconds (0 = never).
  uint32_t tcp_timeout_s = 0, udp_timeout_s = 0, other_timeout_s = 0, tcp_closed_timeout_s = 0;
  enum class Mode { native, generic, auto_ } mode = Mode::auto_;
  // Where the maps are pinned. Tests use their own directory so they never
  // touch a running agent's maps; "" = do not pin at all.
  std::string pin_dir = GPO_PIN_DIR;
};

struct AttachedIface {
  std::string name;
  int ifindex = 0;
  bool native = false;  // false = generic (skb) mode
  int link_fd = -1;     // the pinned bpf_link; -1: attached through netlink (kernel < 5.9)
  std::string link_pin; // where the link is pinned ("" when not)
  bool adopted = false; // the link was left by an earlier agent and now runs our program
};

// Runs XDP program prog_fd once with BPF_F_TEST_XDP_LIVE_FRAMES on frame, as
// if it had arrived on ifindex's rx queue `queue` (found in the calling
// thread's network namespace). 0, or the errno of the failed run (the packet
// path calls it per packet: no text is made unless the caller wants it).
int test_run_live_frame(int prog_fd, int ifindex, uint32_t queue, std::span<const uint8_t> frame);

class XdpFilter {
 public:
  // Loads, pins, writes config, fills tx_ports (inline) and attaches.
  // Throws XdpError (a std::runtime_error) with a one-line message.
  static std::unique_ptr<XdpFilter> attach(const XdpOptions&);
  // Loads, pins and writes config but attaches nothing: for BPF_PROG_TEST_RUN
  // tests and tools. opts.ifaces may be empty; inline_mode is set when it has 2.
  static std::unique_ptr<XdpFilter> load(const XdpOptions&);

  // Closes its fds only: the pinned links keep the filter attached (and the
  // pinned maps keep the flow cache) for the next agent. See detach().
  ~XdpFilter();
  XdpFilter(const XdpFilter&) = delete;
  XdpFilter& operator=(const XdpFilter&) = delete;

  // Removes the filter from its interfaces (unpins and detaches the links):
  // a deliberate stop. Safe to call twice.
  void detach();

  int xsks_fd() const;
  int flows_fd() const;
  int stats_fd() const;
  int config_fd() const;
  int tx_ports_fd() const;
  int agent_fd() const;
  int credits_fd() const;
  // The credits map, mmapped (one struct gpo_xsk_credit per xsks slot): the
  // agent writes `granted`, XDP counts `sent`. Throws XdpError.
  gpo_xsk_credit* credits();
  int filter_prog_fd() const;
  int inject_prog_fd() const;
  // Whether this kernel runs xdp_inject with live frames on the first
  // interface (host mode's re-injection of every packet the agent passes):
  // one frame of a local experimental EtherType (0x88b5) addressed to no
  // host, which the stack drops. False with the errno text in *why.
  bool probe_reinjection(std::string* why) const;
  const std::vector<int>& ifindexes() const { return ifindexes_; }
  const std::vector<AttachedIface>& attached() const { return attached_; }
  bool inline_mode() const { return inline_; }
  const std::string& pin_dir() const { return pin_dir_; }

  gpo_xdp_stats read_stats() const;  // summed over CPUs
  // Installs (or changes) a flow's verdict. An entry that already holds the
  // same action and rule keeps its hit count and flags (no reset per packet).
  // flags: GPO_FLOW_CLIENT_A/B. Returns true when the map changed.
  bool install_verdict(const gpo_flow_key&, uint8_t action, uint32_t rule_id, uint64_t flags = 0);
  void remove_verdict(const gpo_flow_key&);
  // The agent's heartbeat (XDP treats a stale one as "agent gone").
  void heartbeat();
  size_t flush_flows();  // empties the flow cache (e.g. after a rules reload); returns entries removed
  void set_config(const gpo_xdp_config&);
  const gpo_xdp_config& config() const { return cfg_; }

  // "xdp_filter on veth0 (ifindex 5, native), host mode, fail-open, unparsed: pass"
  std::string describe() const;

 private:
  XdpFilter() = default;
  void open_and_load(const XdpOptions&);
  void attach_one(int ifindex, const std::string& name, XdpOptions::Mode mode);
  bool adopt_link(int ifindex, const std::string& name, const std::string& pin);
  void drop_stale_links();

  ::xdp_filter* skel_ = nullptr;
  void* credits_map_ = nullptr;
  size_t credits_len_ = 0;
  std::vector<int> ifindexes_;
  std::vector<AttachedIface> attached_;
  bool inline_ = false;
  gpo_xdp_config cfg_{};
  std::string pin_dir_;        // as this process reaches it (/proc/self/fd/N/... under `ip netns exec`)
  std::string pin_dir_shown_;  // as the user named it, for logs
  std::string shown(const std::string& path) const;
};

// Shared with `status`, which works from the pinned maps only.
gpo_xdp_stats sum_stats(int stats_fd);       // throws XdpError on lookup failure
const char* overload_name(uint8_t policy);   // "off", "pass", "drop"
// Makes sure a bpf filesystem is mounted at /sys/fs/bpf (mounts one if not,
// and says so); throws XdpError when it cannot.
void ensure_bpffs();
// Where a pin directory under /sys/fs/bpf really is for this process. Under
// `ip netns exec` (which remounts /sys in a private mount namespace, hiding
// the host's bpffs) it finds the host's bpffs through an ancestor process in
// the outer mount namespace and returns a /proc/self/fd/N/... path into it,
// so `status` and bpftool outside see the same maps. Other directories, and
// a /sys/fs/bpf that is a bpffs, come back as given (one is mounted when this
// mount namespace is the outer one and has none). Throws XdpError (usage),
// naming `nsenter --net`, when no host bpffs can be found.
std::string resolve_pin_dir(const std::string& dir);
// The pinned link path of an interface in a pin directory.
std::string link_pin_path(const std::string& pin_dir, const std::string& ifname);
// root, or CAP_BPF + CAP_NET_ADMIN (or CAP_SYS_ADMIN) in the effective set.
bool have_bpf_privileges();
// Name of the XDP program attached to ifindex (any mode), "" when none;
// prog_id gets its id, native whether it runs in driver mode.
std::string attached_prog_name(int ifindex, uint32_t* prog_id = nullptr, bool* native = nullptr);

}  // namespace gpo::loader
