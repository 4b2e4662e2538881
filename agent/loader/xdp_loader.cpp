#include "loader/xdp_loader.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/capability.h>
#include <linux/if_link.h>
#include <net/if.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <fcntl.h>

#include <cerrno>
#include <cstdarg>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>

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

const char* overload_name(uint8_t policy) {
  switch (policy) {
    case GPO_OVERLOAD_OFF: return "off";
    case GPO_OVERLOAD_PASS: return "pass";
    case GPO_OVERLOAD_DROP: return "drop";
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

namespace {

bool is_bpffs(const std::string& path) {
  struct statfs st{};
  return statfs(path.c_str(), &st) == 0 && st.f_type == kBpfFsMagic;
}

std::string ns_of(pid_t pid, const char* ns) {
  char buf[64] = {};
  std::string link = "/proc/" + std::to_string(pid) + "/ns/" + ns;
  ssize_t n = readlink(link.c_str(), buf, sizeof buf - 1);
  return n > 0 ? std::string(buf, size_t(n)) : std::string();
}

pid_t parent_of(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  std::getline(in, line);
  // pid (comm) state ppid ...: comm may hold spaces and parentheses.
  size_t close = line.rfind(')');
  if (close == std::string::npos) return 0;
  int ppid = 0;
  char state = 0;
  if (std::sscanf(line.c_str() + close + 1, " %c %d", &state, &ppid) != 2) return 0;
  return pid_t(ppid);
}

// An open O_PATH fd on the host's bpffs root, kept for the process lifetime
// (its owner may exit; the fd keeps the mount reachable).
int g_host_bpffs_fd = -1;

}  // namespace

std::string link_pin_path(const std::string& pin_dir, const std::string& ifname) {
  return pin_dir + "/xdp_link_" + ifname;
}

std::string resolve_pin_dir(const std::string& dir) {
  static const std::string kBpfRoot = "/sys/fs/bpf";
  const bool under_root = dir == kBpfRoot || dir.rfind(kBpfRoot + "/", 0) == 0;
  if (!under_root || is_bpffs(kBpfRoot)) return dir;
  const std::string rest = dir.substr(kBpfRoot.size());
  if (g_host_bpffs_fd >= 0) return "/proc/self/fd/" + std::to_string(g_host_bpffs_fd) + rest;
  // Not a bpffs here. In a mount namespace of our own (`ip netns exec`
  // unshares one and mounts a fresh /sys), the host's bpffs is still reachable
  // through an ancestor that lives in the outer namespace.
  const std::string own_mnt = ns_of(getpid(), "mnt");
  bool private_mnt = false;
  for (pid_t p = parent_of(getpid()), hops = 0; p > 0 && hops < 32; p = parent_of(p), hops++) {
    std::string mnt = ns_of(p, "mnt");
    if (mnt.empty() || mnt == own_mnt) continue;
    private_mnt = true;
    std::string root = "/proc/" + std::to_string(p) + "/root" + kBpfRoot;
    if (!is_bpffs(root)) continue;
    int fd = open(root.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) continue;
    g_host_bpffs_fd = fd;
    log::info("xdp: /sys/fs/bpf is not visible in this mount namespace (`ip netns exec` remounts /sys); using the "
              "bpffs of the outer namespace (through pid {}), so `status` and bpftool outside see the maps",
              p);
    return "/proc/self/fd/" + std::to_string(fd) + rest;
  }
  if (private_mnt)
    fail(XdpError::Kind::usage,
         "xdp: /sys/fs/bpf is not a bpf filesystem in this mount namespace (`ip netns exec` remounts /sys) and no "
         "bpffs of the outer namespace is reachable; maps pinned here would be invisible to `status` and bpftool. "
         "Run it with `nsenter --net=/run/netns/NAME gpuoffload-agent ...` instead of `ip netns exec`, or give "
         "--pin-dir on a mounted bpffs");
  ensure_bpffs();
  return dir;
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
  pin_dir_ = opts.pin_dir.empty() ? std::string() : resolve_pin_dir(opts.pin_dir);
  pin_dir_shown_ = opts.pin_dir;
  inline_ = opts.ifaces.size() == 2;

  libbpf_set_print(libbpf_to_log);
  LIBBPF_OPTS(bpf_object_open_opts, oo);
  if (!pin_dir_.empty()) {
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
  gpo_xdp_config c{};
  c.fail_policy = opts.fail_policy;
  c.unparsed_policy = opts.unparsed_policy;
  c.inline_mode = inline_ ? 1 : 0;
  c.non_ip_policy = opts.non_ip_policy;
  c.frag_policy = opts.frag_policy;
  c.overload_policy = opts.overload_policy;
  c.credit_reserve = opts.credit_reserve;
  c.peer_ifindex = inline_ && ifindexes_.size() > 1 ? uint32_t(ifindexes_[1]) : 0u;
  c.agent_timeout_ns = uint64_t(opts.agent_timeout_ms) * 1000000ull;
  c.tcp_timeout_ns = uint64_t(opts.tcp_timeout_s) * 1000000000ull;
  c.udp_timeout_ns = uint64_t(opts.udp_timeout_s) * 1000000000ull;
  c.other_timeout_ns = uint64_t(opts.other_timeout_s) * 1000000000ull;
  c.tcp_closed_timeout_ns = uint64_t(opts.tcp_closed_timeout_s) * 1000000000ull;
  // A beat before the config names a timeout: the agent must not look dead
  // between attach and its first timer tick.
  heartbeat();
  set_config(c);
}

std::unique_ptr<XdpFilter> XdpFilter::load(const XdpOptions& opts) {
  std::unique_ptr<XdpFilter> f(new XdpFilter());
  f->open_and_load(opts);
  return f;
}

// A link left pinned by an earlier agent: when it is an XDP link on this very
// interface, swap our program in (atomic: no packet goes unfiltered) and keep
// it. Anything else under that name is stale and removed.
bool XdpFilter::adopt_link(int ifindex, const std::string& name, const std::string& pin) {
  int fd = bpf_obj_get(pin.c_str());
  if (fd < 0) return false;
  bpf_link_info info{};
  uint32_t len = sizeof(info);
  bool ours = bpf_obj_get_info_by_fd(fd, &info, &len) == 0 && info.type == BPF_LINK_TYPE_XDP &&
              int(info.xdp.ifindex) == ifindex;
  if (!ours) {
    log::info("xdp: removing stale pinned link {} (its interface is gone or changed)", shown(pin));
    close(fd);
    unlink(pin.c_str());
    return false;
  }
  uint32_t old_prog = info.prog_id;
  if (bpf_link_update(fd, filter_prog_fd(), nullptr) != 0) {
    int e = errno;
    close(fd);
    fail(XdpError::Kind::failure,
         fmt::format("xdp: cannot put the new program into the pinned link {}: {}", shown(pin), err_str(e)));
  }
  bool native = true;
  attached_prog_name(ifindex, nullptr, &native);
  attached_.push_back({name, ifindex, native, fd, pin, true});
  log::info("xdp: adopted the pinned XDP link on {} (ifindex {}, {} mode) left by an earlier agent: prog id {} "
            "replaced in place, no packet went unfiltered",
            name, ifindex, native ? "native" : "generic", old_prog);
  return true;
}

void XdpFilter::attach_one(int ifindex, const std::string& name, XdpOptions::Mode mode) {
  const std::string pin = pin_dir_.empty() ? std::string() : link_pin_path(pin_dir_, name);
  if (!pin.empty() && adopt_link(ifindex, name, pin)) return;

  uint32_t old_id = 0;
  bool old_native = false;
  std::string old = attached_prog_name(ifindex, &old_id, &old_native);
  if (!old.empty()) {
    if (old != "xdp_filter")
      fail(XdpError::Kind::usage,
           fmt::format("xdp: {} already has XDP program '{}' (id {}) attached and it is not ours; refusing to "
                       "replace it (detach it with `ip link set dev {} xdp off` or pick another interface)",
                       name, old, old_id, name));
    // Left by an agent of another pin directory or an older build (netlink
    // attachment): take its place. A link held by another agent cannot be
    // detached this way, and the attach below then says so.
    log::info("xdp: replacing xdp_filter (prog id {}) left on {} by a previous agent", old_id, name);
    int old_fd = bpf_prog_get_fd_by_id(old_id);
    LIBBPF_OPTS(bpf_xdp_attach_opts, ao, .old_prog_fd = old_fd);
    uint32_t flags = (old_native ? XDP_FLAGS_DRV_MODE : XDP_FLAGS_SKB_MODE) | XDP_FLAGS_REPLACE;
    if (old_fd < 0 || bpf_xdp_detach(ifindex, flags, &ao) != 0)
      log::warn("xdp: could not detach the old xdp_filter from {}: {}", name, err_str(errno));
    if (old_fd >= 0) close(old_fd);
  }

  int prog = filter_prog_fd();
  bool use_links = true;
  int link_fd = -1;
  // A bpf_link first (Linux >= 5.9); netlink on older kernels.
  auto try_attach = [&](uint32_t mode_flag) -> int {
    if (use_links) {
      LIBBPF_OPTS(bpf_link_create_opts, lo, .flags = mode_flag);
      int fd = bpf_link_create(prog, ifindex, BPF_XDP, &lo);
      if (fd >= 0) {
        link_fd = fd;
        return 0;
      }
      int e = -errno;
      if (e != -EINVAL && e != -EOPNOTSUPP && e != -524 /* ENOTSUPP */) return e;
      log::warn("xdp: this kernel has no XDP links ({}); attaching through netlink: the filter still stays "
                "attached when the agent dies, but a restarted agent replaces it instead of adopting it",
                err_str(e));
      use_links = false;
    }
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
                        (err == -EBUSY || err == -EEXIST) ? " (another XDP program is attached, maybe through a "
                                                            "link of another agent)"
                        : mode == XdpOptions::Mode::native ? " (try --xdp-mode generic)"
                                                           : ""));
  }
  std::string pinned;
  if (link_fd >= 0 && !pin.empty()) {
    unlink(pin.c_str());
    if (bpf_obj_pin(link_fd, pin.c_str()) == 0) pinned = pin;
    else log::warn("xdp: pinning the XDP link at {} failed ({}): the filter will detach when the agent exits",
                   shown(pin), err_str(errno));
  }
  attached_.push_back({name, ifindex, native, link_fd, pinned, false});
  log::info("xdp: attached xdp_filter to {} (ifindex {}) in {} mode{}", name, ifindex, native ? "native" : "generic",
            link_fd < 0 ? " (netlink)" : pinned.empty() ? " (bpf_link, not pinned)" : " (bpf_link pinned at " + shown(pinned) + ")");
}

// Links pinned in our directory for interfaces this run does not filter: the
// user changed --xdp. Nothing would serve them, so they go.
void XdpFilter::drop_stale_links() {
  std::error_code ec;
  for (auto& e : std::filesystem::directory_iterator(pin_dir_, ec)) {
    std::string fname = e.path().filename().string();
    if (fname.rfind("xdp_link_", 0) != 0) continue;
    bool mine = false;
    for (const auto& a : attached_) mine |= a.link_pin == e.path().string();
    if (mine) continue;
    int fd = bpf_obj_get(e.path().c_str());
    if (fd >= 0) {
      bpf_link_detach(fd);
      close(fd);
    }
    unlink(e.path().c_str());
    log::info("xdp: removed the pinned link {} of an interface this run does not filter", shown(e.path().string()));
  }
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
  if (!f->pin_dir_.empty()) f->drop_stale_links();
  log::info("xdp: {}", f->describe());
  return f;
}

XdpFilter::~XdpFilter() {
  if (credits_map_) munmap(credits_map_, credits_len_);
  for (auto& a : attached_)
    if (a.link_fd >= 0) close(a.link_fd);  // a pinned link stays attached
  if (skel_) xdp_filter__destroy(skel_);
}

void XdpFilter::detach() {
  for (auto& a : attached_) {
    bool ok;
    if (a.link_fd >= 0) {
      if (!a.link_pin.empty()) unlink(a.link_pin.c_str());
      ok = bpf_link_detach(a.link_fd) == 0;
      close(a.link_fd);
      a.link_fd = -1;
    } else {
      // REPLACE with our fd: detach only if our program is still the one attached.
      LIBBPF_OPTS(bpf_xdp_attach_opts, ao, .old_prog_fd = filter_prog_fd());
      uint32_t flags = (a.native ? XDP_FLAGS_DRV_MODE : XDP_FLAGS_SKB_MODE) | XDP_FLAGS_REPLACE;
      ok = bpf_xdp_detach(a.ifindex, flags, &ao) == 0;
    }
    if (ok) log::info("xdp: detached xdp_filter from {} (ifindex {})", a.name, a.ifindex);
    else log::debug("xdp: detach from {} failed: {}", a.name, err_str(errno));
  }
  attached_.clear();
}

int XdpFilter::xsks_fd() const { return bpf_map__fd(skel_->maps.xsks); }
int XdpFilter::flows_fd() const { return bpf_map__fd(skel_->maps.flows); }
int XdpFilter::stats_fd() const { return bpf_map__fd(skel_->maps.stats); }
int XdpFilter::config_fd() const { return bpf_map__fd(skel_->maps.config); }
int XdpFilter::tx_ports_fd() const { return bpf_map__fd(skel_->maps.tx_ports); }
int XdpFilter::agent_fd() const { return bpf_map__fd(skel_->maps.agent); }
int XdpFilter::credits_fd() const { return bpf_map__fd(skel_->maps.credits); }

gpo_xsk_credit* XdpFilter::credits() {
  if (!credits_map_) {
    const size_t page = size_t(sysconf(_SC_PAGESIZE));
    credits_len_ = (sizeof(gpo_xsk_credit) * GPO_XSK_SLOTS + page - 1) / page * page;
    void* m = mmap(nullptr, credits_len_, PROT_READ | PROT_WRITE, MAP_SHARED, credits_fd(), 0);
    if (m == MAP_FAILED) fail(XdpError::Kind::failure, "xdp: cannot map the credits map: " + err_str(errno));
    credits_map_ = m;
  }
  return static_cast<gpo_xsk_credit*>(credits_map_);
}
int XdpFilter::filter_prog_fd() const { return bpf_program__fd(skel_->progs.xdp_filter); }
int XdpFilter::inject_prog_fd() const { return bpf_program__fd(skel_->progs.xdp_inject); }

int test_run_live_frame(int prog_fd, int ifindex, uint32_t queue, std::span<const uint8_t> frame) {
  xdp_md ctx{};
  ctx.ingress_ifindex = uint32_t(ifindex);
  ctx.rx_queue_index = queue;
  ctx.data_end = uint32_t(frame.size());  // the kernel insists ctx describes exactly data_in
  LIBBPF_OPTS(bpf_test_run_opts, opts);
  opts.data_in = frame.data();
  opts.data_size_in = uint32_t(frame.size());
  opts.ctx_in = &ctx;
  opts.ctx_size_in = sizeof ctx;
  opts.repeat = 1;
  opts.flags = BPF_F_TEST_XDP_LIVE_FRAMES;
  return bpf_prog_test_run_opts(prog_fd, &opts) == 0 ? 0 : errno;
}

bool XdpFilter::probe_reinjection(std::string* why) const {
  if (ifindexes_.empty()) {
    *why = "no interface";
    return false;
  }
  // Destination 02:00:00:00:00:00 (locally administered, nobody's), source
  // the same, EtherType 0x88b5 (IEEE local experimental): no protocol takes
  // it, and the stack frees it. 60 bytes, the Ethernet minimum.
  uint8_t frame[60] = {0x02, 0, 0, 0, 0, 0, 0x02, 0, 0, 0, 0, 0, 0x88, 0xb5};
  const int err = test_run_live_frame(inject_prog_fd(), ifindexes_[0], 0, frame);
  if (err) *why = err_str(err);
  return err == 0;
}

gpo_xdp_stats XdpFilter::read_stats() const { return sum_stats(stats_fd()); }

bool XdpFilter::install_verdict(const gpo_flow_key& key, uint8_t action, uint32_t rule_id, uint64_t flags) {
  gpo_flow_verdict v{};
  v.rule_id = rule_id;
  v.action = action;
  v.flags = flags;
  v.last_seen_ns = monotonic_ns();
  // Several queued packets of one flow each carry the verdict: the first
  // installs it, the rest must not reset the hits and FIN/RST flags XDP keeps.
  if (bpf_map_update_elem(flows_fd(), &key, &v, BPF_NOEXIST) == 0) return true;
  if (errno != EEXIST) fail(XdpError::Kind::failure, "xdp: installing a flow verdict failed: " + err_str(errno));
  gpo_flow_verdict old{};
  if (bpf_map_lookup_elem(flows_fd(), &key, &old) == 0 && old.action == action && old.rule_id == rule_id &&
      !GPO_FLOW_CLOSED(old.flags))
    return false;
  if (old.action == GPO_ACT_INSPECT) {
    // The verdict of a flow the agent was inspecting: what XDP saw meanwhile stays.
    v.flags |= old.flags & (GPO_FLOW_FIN_A | GPO_FLOW_FIN_B | GPO_FLOW_RST);
    v.hits = old.hits;
  }
  if (bpf_map_update_elem(flows_fd(), &key, &v, BPF_ANY) != 0)
    fail(XdpError::Kind::failure, "xdp: installing a flow verdict failed: " + err_str(errno));
  return true;
}

void XdpFilter::remove_verdict(const gpo_flow_key& key) { bpf_map_delete_elem(flows_fd(), &key); }

void XdpFilter::heartbeat() {
  gpo_agent_beat b{};
  b.heartbeat_ns = monotonic_ns();
  b.pid = uint32_t(getpid());
  uint32_t zero = 0;
  bpf_map_update_elem(agent_fd(), &zero, &b, BPF_ANY);
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
  cfg_ = cfg;
}

std::string XdpFilter::shown(const std::string& path) const {
  if (!pin_dir_.empty() && path.rfind(pin_dir_, 0) == 0) return pin_dir_shown_ + path.substr(pin_dir_.size());
  return path;
}

std::string XdpFilter::describe() const {
  std::string where;
  for (const auto& a : attached_)
    where += fmt::format("{}{} (ifindex {}, {})", where.empty() ? "" : " and ", a.name, a.ifindex,
                         a.native ? "native" : "generic");
  if (where.empty()) where = "no interface";
  return fmt::format("xdp_filter on {}, {} mode, {} when the agent is gone, overload: {}, unparsed: {}, non-IP: {}, "
                     "fragments: {}, maps in {}",
                     where, inline_ ? "inline" : "host", cfg_.fail_policy == GPO_ACT_DROP ? "fail-closed" : "fail-open",
                     overload_name(cfg_.overload_policy), gpo_action_name(cfg_.unparsed_policy),
                     gpo_action_name(cfg_.non_ip_policy), cfg_.frag_policy == GPO_FRAG_DROP ? "drop" : "reassemble",
                     pin_dir_.empty() ? "(not pinned)" : pin_dir_shown_);
}

}  // namespace gpo::loader
