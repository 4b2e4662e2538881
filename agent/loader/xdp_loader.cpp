#include "loader/xdp_loader.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/capability.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>

#include "util/log.h"
#include "xdp_filter.skel.h"

namespace gpo::loader {

namespace {

constexpr unsigned long kBpfFsMagic = 0xcafe4a11;

// libbpf's own messages (verifier log included) go to our debug level.
int libbpf_to_log(enum libbpf_print_level lvl, const char* fmt_, va_list ap) {
  if (lvl == LIBBPF_DEBUG || log::level() < log::Level::debug) return 0;
  char buf[4096];
  int n = vsnprintf(buf, sizeof(buf), fmt_, ap);
  std::string_view msg(buf);
  while (!msg.empty() && msg.back() == '\n') msg.remove_suffix(1);
  log::debug("libbpf: {}", msg);
  return n;
}

[[noreturn]] void fail(XdpError::Kind k, const std::string& msg) { throw XdpError(k, msg); }

std::string err_str(int err) { return std::strerror(err < 0 ? -err : err); }

uint64_t monotonic_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);  // bpf_ktime_get_ns() uses the same clock
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

// The kernel adds BPF_F_RDONLY_PROG to every devmap it creates, and libbpf 1.1
// then refuses to reuse the pinned tx_ports ("parameter mismatch"). So that
// map is pinned and reused here, by hand; the others through LIBBPF_PIN_BY_NAME.
constexpr uint32_t kBpfFRdonlyProg = 1u << 7;

bool pin_compatible(bpf_map* map, int fd) {
  bpf_map_info info{};
  uint32_t len = sizeof(info);
  return bpf_obj_get_info_by_fd(fd, &info, &len) == 0 && info.type == bpf_map__type(map) &&
         info.key_size == bpf_map__key_size(map) && info.value_size == bpf_map__value_size(map) &&
         info.max_entries == bpf_map__max_entries(map) &&
         (info.map_flags & ~kBpfFRdonlyProg) == (bpf_map__map_flags(map) & ~kBpfFRdonlyProg);
}

// A map pinned by an older build with another layout would make the load fail;
// such a pin is stale: remove it and say so. Reuses tx_ports (see above).
void prepare_pins(::xdp_filter* skel, const std::string& dir) {
  bpf_map* map;
  bpf_object__for_each_map(map, skel->obj) {
    std::string path = dir + "/" + bpf_map__name(map);
    bool by_hand = map == skel->maps.tx_ports;
    if (by_hand) bpf_map__set_pin_path(map, nullptr);
    int fd = bpf_obj_get(path.c_str());
    if (fd < 0) continue;
    if (!pin_compatible(map, fd)) {
      log::warn("xdp: pinned map {} has another layout (older agent?); removing it", path);
      unlink(path.c_str());
    } else if (by_hand && bpf_map__reuse_fd(map, fd) != 0) {
      log::warn("xdp: cannot reuse pinned map {}: {}; replacing it", path, std::strerror(errno));
      unlink(path.c_str());
    }
    close(fd);  // reuse_fd took its own duplicate
  }
}

}  // namespace

const char* action_name(uint8_t action) {
  switch (action) {
    case GPO_ACT_PASS: return "pass";
    case GPO_ACT_DROP: return "drop";
    case GPO_ACT_ALERT: return "alert";
  }
  return "unknown";
}

bool have_bpf_privileges() {
  if (geteuid() == 0) return true;
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2]{};
  if (syscall(SYS_capget, &hdr, data) != 0) return false;
  auto has = [&](int cap) { return (data[cap / 32].effective >> (cap % 32)) & 1u; };
  constexpr int kCapBpf = 39;  // not in every linux/capability.h
  return has(CAP_SYS_ADMIN) || (has(kCapBpf) && has(CAP_NET_ADMIN));
}

void ensure_bpffs() {
  struct statfs st{};
  if (statfs("/sys/fs/bpf", &st) == 0 && st.f_type == kBpfFsMagic) return;
  mkdir("/sys/fs/bpf", 0755);
  if (mount("bpf", "/sys/fs/bpf", "bpf", 0, "mode=0700") != 0)
    fail(errno == EPERM ? XdpError::Kind::privilege : XdpError::Kind::unsupported,
         "xdp: no bpf filesystem at /sys/fs/bpf and mounting one failed (" + err_str(errno) +
             "); mount it with `mount -t bpf bpf /sys/fs/bpf`");
  log::info("xdp: mounted a bpf filesystem at /sys/fs/bpf (it was not mounted)");
}

std::string attached_prog_name(int ifindex, uint32_t* prog_id, bool* native) {
  LIBBPF_OPTS(bpf_xdp_query_opts, q);
  if (prog_id) *prog_id = 0;
  if (bpf_xdp_query(ifindex, 0, &q) != 0 || q.prog_id == 0) {
    // attach_mode MULTI (several at once) leaves prog_id 0: report the driver one.
    if (q.drv_prog_id == 0 && q.skb_prog_id == 0) return "";
  }
  uint32_t id = q.prog_id ? q.prog_id : (q.drv_prog_id ? q.drv_prog_id : q.skb_prog_id);
  if (prog_id) *prog_id = id;
  if (native) *native = q.attach_mode == XDP_ATTACHED_DRV || (q.prog_id == 0 && q.drv_prog_id != 0);
  int fd = bpf_prog_get_fd_by_id(id);
  if (fd < 0) return "?";
  bpf_prog_info info{};
  uint32_t len = sizeof(info);
  std::string name = bpf_obj_get_info_by_fd(fd, &info, &len) == 0 ? info.name : "?";
  close(fd);
  return name;
}

gpo_xdp_stats sum_stats(int stats_fd) {
  int ncpu = libbpf_num_possible_cpus();
  if (ncpu <= 0) fail(XdpError::Kind::failure, "xdp: cannot count possible CPUs: " + err_str(ncpu));
  std::vector<gpo_xdp_stats> per_cpu(ncpu);
  uint32_t zero = 0;
  if (bpf_map_lookup_elem(stats_fd, &zero, per_cpu.data()) != 0)
    fail(XdpError::Kind::failure, "xdp: reading the stats map failed: " + err_str(errno));
  gpo_xdp_stats sum{};
  constexpr size_t n = sizeof(gpo_xdp_stats) / sizeof(gpo_counter);
  auto* out = reinterpret_cast<gpo_counter*>(&sum);
  for (const auto& s : per_cpu) {
    auto* in = reinterpret_cast<const gpo_counter*>(&s);
    for (size_t i = 0; i < n; i++) {
      out[i].packets += in[i].packets;
      out[i].bytes += in[i].bytes;
    }
  }
  return sum;
}

void XdpFilter::open_and_load(const XdpOptions& opts) {
  if (!have_bpf_privileges())
    fail(XdpError::Kind::privilege,
         "xdp: loading the packet filter needs root (or CAP_BPF and CAP_NET_ADMIN); run it with sudo");
  pin_dir_ = opts.pin_dir;
  fail_policy_ = opts.fail_policy;
  unparsed_policy_ = opts.unparsed_policy;
  inline_ = opts.ifaces.size() == 2;

  libbpf_set_print(libbpf_to_log);
  LIBBPF_OPTS(bpf_object_open_opts, oo);
  if (!pin_dir_.empty()) {
    ensure_bpffs();
    if (mkdir(pin_dir_.c_str(), 0700) != 0 && errno != EEXIST)
      fail(XdpError::Kind::failure, "xdp: cannot create pin directory " + pin_dir_ + ": " + err_str(errno));
    // pin_root_path + "/" + map name is where LIBBPF_PIN_BY_NAME pins.
    oo.pin_root_path = pin_dir_.c_str();
  }
  skel_ = xdp_filter__open_opts(&oo);
  if (!skel_) fail(XdpError::Kind::failure, "xdp: opening the BPF object failed: " + err_str(errno));
  if (pin_dir_.empty()) {
    bpf_map* map;
    bpf_object__for_each_map(map, skel_->obj) bpf_map__set_pin_path(map, nullptr);
  } else {
    prepare_pins(skel_, pin_dir_);
  }
  int err = xdp_filter__load(skel_);
  if (err) {
    int e = -err;
    xdp_filter__destroy(skel_);
    skel_ = nullptr;
    if (e == EPERM)
      fail(XdpError::Kind::privilege, "xdp: the kernel refused to load the filter (EPERM): needs CAP_BPF and CAP_NET_ADMIN");
    fail(XdpError::Kind::unsupported,
         "xdp: loading xdp_filter failed: " + err_str(e) + " (run with --log-level debug for the verifier log)");
  }
  if (!pin_dir_.empty()) {
    std::string path = pin_dir_ + "/tx_ports";
    if (access(path.c_str(), F_OK) != 0 && bpf_map__pin(skel_->maps.tx_ports, path.c_str()) != 0)
      fail(XdpError::Kind::failure, "xdp: pinning " + path + " failed: " + err_str(errno));
  }
  set_config({opts.fail_policy, opts.unparsed_policy, uint8_t(inline_ ? 1 : 0), 0,
              inline_ && ifindexes_.size() > 1 ? uint32_t(ifindexes_[1]) : 0u});
}

std::unique_ptr<XdpFilter> XdpFilter::load(const XdpOptions& opts) {
  std::unique_ptr<XdpFilter> f(new XdpFilter());
  f->open_and_load(opts);
  return f;
}

void XdpFilter::attach_one(int ifindex, const std::string& name, XdpOptions::Mode mode) {
  uint32_t old_id = 0;
  bool old_native = false;
  std::string old = attached_prog_name(ifindex, &old_id, &old_native);
  if (!old.empty()) {
    if (old != "xdp_filter")
      fail(XdpError::Kind::usage,
           fmt::format("xdp: {} already has XDP program '{}' (id {}) attached and it is not ours; refusing to "
                       "replace it (detach it with `ip link set dev {} xdp off` or pick another interface)",
                       name, old, old_id, name));
    // Left by an agent that did not shut down cleanly: take its place.
    log::info("xdp: replacing xdp_filter (prog id {}) left on {} by a previous agent", old_id, name);
    int old_fd = bpf_prog_get_fd_by_id(old_id);
    LIBBPF_OPTS(bpf_xdp_attach_opts, ao, .old_prog_fd = old_fd);
    uint32_t flags = (old_native ? XDP_FLAGS_DRV_MODE : XDP_FLAGS_SKB_MODE) | XDP_FLAGS_REPLACE;
    if (old_fd < 0 || bpf_xdp_detach(ifindex, flags, &ao) != 0)
      log::warn("xdp: could not detach the old xdp_filter from {}: {}", name, err_str(errno));
    if (old_fd >= 0) close(old_fd);
  }

  int prog = filter_prog_fd();
  auto try_attach = [&](uint32_t mode_flag) {
    return bpf_xdp_attach(ifindex, prog, mode_flag | XDP_FLAGS_UPDATE_IF_NOEXIST, nullptr);
  };
  bool native = mode != XdpOptions::Mode::generic;
  int err = try_attach(native ? XDP_FLAGS_DRV_MODE : XDP_FLAGS_SKB_MODE);
  if (err && native && mode == XdpOptions::Mode::auto_ && err != -EBUSY && err != -EEXIST && err != -EPERM) {
    log::info("xdp: {} has no native XDP support ({}); using generic mode", name, err_str(err));
    native = false;
    err = try_attach(XDP_FLAGS_SKB_MODE);
  }
  if (err) {
    XdpError::Kind k = err == -EPERM ? XdpError::Kind::privilege
                       : (err == -EBUSY || err == -EEXIST) ? XdpError::Kind::usage
                                                           : XdpError::Kind::unsupported;
    fail(k, fmt::format("xdp: attaching xdp_filter to {} in {} mode failed: {}{}", name,
                        native ? "native" : "generic", err_str(err),
                        (err == -EBUSY || err == -EEXIST) ? " (another XDP program was attached meanwhile)"
                        : mode == XdpOptions::Mode::native ? " (try --xdp-mode generic)"
                                                           : ""));
  }
  attached_.push_back({name, ifindex, native});
  log::info("xdp: attached xdp_filter to {} (ifindex {}) in {} mode", name, ifindex, native ? "native" : "generic");
}

std::unique_ptr<XdpFilter> XdpFilter::attach(const XdpOptions& opts) {
  if (opts.ifaces.empty() || opts.ifaces.size() > 2)
    fail(XdpError::Kind::usage, "xdp: give one interface (host mode) or two (inline mode: IFACE,PEER)");
  if (opts.ifaces.size() == 2 && opts.ifaces[0] == opts.ifaces[1])
    fail(XdpError::Kind::usage, "xdp: inline mode needs two different interfaces, got " + opts.ifaces[0] + " twice");
  std::vector<int> idx;
  for (const auto& name : opts.ifaces) {
    int i = int(if_nametoindex(name.c_str()));
    if (i == 0)
      fail(XdpError::Kind::usage, "xdp: no network interface named '" + name + "' (see `ip link`)");
    idx.push_back(i);
  }
  std::unique_ptr<XdpFilter> f(new XdpFilter());
  f->ifindexes_ = idx;  // before loading: the config names the peer port
  f->open_and_load(opts);

  // tx_ports: each port of an inline pair forwards to the other; host mode
  // clears entries a previous inline run left in the pinned map.
  int tx = f->tx_ports_fd();
  uint32_t key, next;
  std::vector<uint32_t> stale;
  for (int r = bpf_map_get_next_key(tx, nullptr, &key); r == 0; r = bpf_map_get_next_key(tx, &key, &next), key = next)
    stale.push_back(key);
  for (uint32_t k : stale) bpf_map_delete_elem(tx, &k);
  if (f->inline_) {
    for (int d = 0; d < 2; d++) {
      uint32_t in = uint32_t(idx[d]), out = uint32_t(idx[1 - d]);
      if (bpf_map_update_elem(tx, &in, &out, BPF_ANY) != 0)
        fail(XdpError::Kind::failure, fmt::format("xdp: cannot add {} -> {} to tx_ports: {}", opts.ifaces[d],
                                                  opts.ifaces[1 - d], err_str(errno)));
    }
  }
  for (size_t i = 0; i < idx.size(); i++) f->attach_one(idx[i], opts.ifaces[i], opts.mode);
  log::info("xdp: {}", f->describe());
  return f;
}

XdpFilter::~XdpFilter() {
  if (skel_) {
    int prog = filter_prog_fd();
    for (const auto& a : attached_) {
      // REPLACE with our fd: detach only if our program is still the one attached.
      LIBBPF_OPTS(bpf_xdp_attach_opts, ao, .old_prog_fd = prog);
      uint32_t flags = (a.native ? XDP_FLAGS_DRV_MODE : XDP_FLAGS_SKB_MODE) | XDP_FLAGS_REPLACE;
      if (bpf_xdp_detach(a.ifindex, flags, &ao) == 0)
        log::info("xdp: detached xdp_filter from {} (ifindex {})", a.name, a.ifindex);
      else
        log::debug("xdp: detach from {} failed: {}", a.name, err_str(errno));
    }
    xdp_filter__destroy(skel_);
  }
}

int XdpFilter::xsks_fd() const { return bpf_map__fd(skel_->maps.xsks); }
int XdpFilter::flows_fd() const { return bpf_map__fd(skel_->maps.flows); }
int XdpFilter::stats_fd() const { return bpf_map__fd(skel_->maps.stats); }
int XdpFilter::config_fd() const { return bpf_map__fd(skel_->maps.config); }
int XdpFilter::tx_ports_fd() const { return bpf_map__fd(skel_->maps.tx_ports); }
int XdpFilter::filter_prog_fd() const { return bpf_program__fd(skel_->progs.xdp_filter); }
int XdpFilter::inject_prog_fd() const { return bpf_program__fd(skel_->progs.xdp_inject); }

gpo_xdp_stats XdpFilter::read_stats() const { return sum_stats(stats_fd()); }

void XdpFilter::install_verdict(const gpo_flow_key& key, uint8_t action, uint32_t rule_id) {
  gpo_flow_verdict v{};
  v.rule_id = rule_id;
  v.action = action;
  v.last_seen_ns = monotonic_ns();
  if (bpf_map_update_elem(flows_fd(), &key, &v, BPF_ANY) != 0)
    fail(XdpError::Kind::failure, "xdp: installing a flow verdict failed: " + err_str(errno));
}

size_t XdpFilter::flush_flows() {
  int fd = flows_fd();
  size_t n = 0;
  gpo_flow_key key;
  // Delete the first key until none is left: safe while XDP adds entries too.
  for (size_t guard = 0; guard < 4 * GPO_FLOW_CACHE_ENTRIES; guard++) {
    if (bpf_map_get_next_key(fd, nullptr, &key) != 0) break;
    if (bpf_map_delete_elem(fd, &key) == 0) n++;
  }
  return n;
}

void XdpFilter::set_config(const gpo_xdp_config& cfg) {
  uint32_t zero = 0;
  if (bpf_map_update_elem(config_fd(), &zero, &cfg, BPF_ANY) != 0)
    fail(XdpError::Kind::failure, "xdp: writing the config map failed: " + err_str(errno));
  fail_policy_ = cfg.fail_policy;
  unparsed_policy_ = cfg.unparsed_policy;
}

std::string XdpFilter::describe() const {
  std::string where;
  for (const auto& a : attached_)
    where += fmt::format("{}{} (ifindex {}, {})", where.empty() ? "" : " and ", a.name, a.ifindex,
                         a.native ? "native" : "generic");
  if (where.empty()) where = "no interface";
  return fmt::format("xdp_filter on {}, {} mode, {} when no socket, unparsed: {}, maps in {}", where,
                     inline_ ? "inline" : "host", fail_policy_ == GPO_ACT_DROP ? "fail-closed" : "fail-open",
                     action_name(unparsed_policy_), pin_dir_.empty() ? "(not pinned)" : pin_dir_);
}

}  // namespace gpo::loader
