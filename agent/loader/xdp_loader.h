// Loads bpf/xdp_filter.bpf.c (libbpf skeleton), pins its maps under
// /sys/fs/bpf/gpuoffload/ and attaches xdp_filter to one interface (host mode)
// or two (inline mode: IFACE and its PEER port). docs/xdp.md describes the
// program's policy table; this is the agent's handle on it.
#pragma once
#include <cstdint>
#include <memory>
#include <stdexcept>
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
  uint8_t fail_policy = GPO_ACT_PASS;      // miss and no AF_XDP socket bound (agent gone)
  uint8_t unparsed_policy = GPO_ACT_PASS;  // truncated/malformed IP packets, non-first fragments
  enum class Mode { native, generic, auto_ } mode = Mode::auto_;
  // Where the maps are pinned. Tests use their own directory so they never
  // touch a running agent's maps; "" = do not pin at all.
  std::string pin_dir = GPO_PIN_DIR;
};

struct AttachedIface {
  std::string name;
  int ifindex = 0;
  bool native = false;  // false = generic (skb) mode
};

class XdpFilter {
 public:
  // Loads, pins, writes config, fills tx_ports (inline) and attaches.
  // Throws XdpError (a std::runtime_error) with a one-line message.
  static std::unique_ptr<XdpFilter> attach(const XdpOptions&);
  // Loads, pins and writes config but attaches nothing: for BPF_PROG_TEST_RUN
  // tests and tools. opts.ifaces may be empty; inline_mode is set when it has 2.
  static std::unique_ptr<XdpFilter> load(const XdpOptions&);

  ~XdpFilter();  // detaches the programs it attached; pinned maps stay (flow cache survives restarts)
  XdpFilter(const XdpFilter&) = delete;
  XdpFilter& operator=(const XdpFilter&) = delete;

  int xsks_fd() const;
  int flows_fd() const;
  int stats_fd() const;
  int config_fd() const;
  int tx_ports_fd() const;
  int filter_prog_fd() const;
  int inject_prog_fd() const;
  const std::vector<int>& ifindexes() const { return ifindexes_; }
  const std::vector<AttachedIface>& attached() const { return attached_; }
  bool inline_mode() const { return inline_; }
  const std::string& pin_dir() const { return pin_dir_; }

  gpo_xdp_stats read_stats() const;  // summed over CPUs
  void install_verdict(const gpo_flow_key&, uint8_t action, uint32_t rule_id);
  size_t flush_flows();  // empties the flow cache (e.g. after a rules reload); returns entries removed
  void set_config(const gpo_xdp_config&);

  // "xdp_filter on veth0 (ifindex 5, native), host mode, fail-open, unparsed: pass"
  std::string describe() const;

 private:
  XdpFilter() = default;
  void open_and_load(const XdpOptions&);
  void attach_one(int ifindex, const std::string& name, XdpOptions::Mode mode);

  ::xdp_filter* skel_ = nullptr;
  std::vector<int> ifindexes_;
  std::vector<AttachedIface> attached_;
  bool inline_ = false;
  uint8_t fail_policy_ = GPO_ACT_PASS;
  uint8_t unparsed_policy_ = GPO_ACT_PASS;
  std::string pin_dir_;
};

// Shared with `status`, which works from the pinned maps only.
gpo_xdp_stats sum_stats(int stats_fd);       // throws XdpError on lookup failure
const char* action_name(uint8_t action);     // "pass", "drop", "alert"
// Makes sure a bpf filesystem is mounted at /sys/fs/bpf (mounts one if not,
// and says so); throws XdpError when it cannot.
void ensure_bpffs();
// root, or CAP_BPF + CAP_NET_ADMIN (or CAP_SYS_ADMIN) in the effective set.
bool have_bpf_privileges();
// Name of the XDP program attached to ifindex (any mode), "" when none;
// prog_id gets its id, native whether it runs in driver mode.
std::string attached_prog_name(int ifindex, uint32_t* prog_id = nullptr, bool* native = nullptr);

}  // namespace gpo::loader
