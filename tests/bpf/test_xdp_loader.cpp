// The loader on real (veth) interfaces in a throw-away network namespace:
// attach/detach, refusing foreign programs, inline tx_ports, live-frame
// re-injection, a real AF_XDP socket in the XSKMAP, bpftool on the pinned
// maps, and `gpuoffload-agent status` on a loaded filter.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <gtest/gtest.h>
#include <linux/if_link.h>
#include <linux/if_xdp.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>
#include <xdp/xsk.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <nlohmann/json.hpp>

#include "bpf/xdp_test_env.h"
#include "common/packet_builder.h"
#include "common/proc.h"
#include "loader/xdp_loader.h"

using gpo::loader::XdpError;
using gpo::loader::XdpFilter;
using gpo::loader::XdpOptions;
using gpo::test::PacketBuilder;
using gpo::test::run_proc;
using gpo::test::TestNetns;
using gpo::test::xdp_test_run;

namespace {

std::atomic<int> g_pin_seq{0};

// A pin directory of our own under /sys/fs/bpf, removed with its maps.
struct PinDir {
  std::string path = "/sys/fs/bpf/gpotest-" + std::to_string(getpid()) + "-" + std::to_string(g_pin_seq++);
  ~PinDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
};

// Options for attaching to ifaces with maps pinned in pins.
XdpOptions pinned(const PinDir& pins, std::vector<std::string> ifaces) {
  XdpOptions o;
  o.ifaces = std::move(ifaces);
  o.pin_dir = pins.path;
  return o;
}

#define REQUIRE_ROOT() \
  if (!gpo::test::is_root()) GTEST_SKIP() << "needs root (BPF, network namespaces)"

#define REQUIRE_NETNS(ns) \
  ASSERT_TRUE((ns).ok()) << "cannot create a test network namespace: " << (ns).error()

std::string prog_name_on(const TestNetns& ns, const char* ifname, uint32_t* id = nullptr, bool* native = nullptr) {
  std::string name;
  ns.run_inside([&] { name = gpo::loader::attached_prog_name(int(if_nametoindex(ifname)), id, native); });
  return name;
}

// A bare AF_XDP socket on queue 0 of an interface (copy mode, no program of
// libxdp's), put in the filter's XSKMAP: to XDP, an agent's bound socket.
// Deleted with the object, and with it the XSKMAP entry (the kernel's doing).
struct BoundXsk {
  static constexpr size_t kFrames = 64, kFrame = 4096;
  void* area = MAP_FAILED;
  xsk_umem* umem = nullptr;
  xsk_socket* xsk = nullptr;
  xsk_ring_prod fill{}, tx{};
  xsk_ring_cons comp{}, rx{};

  void bind(const char* ifname, int xsks_fd) {
    area = mmap(nullptr, kFrames * kFrame, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    ASSERT_NE(area, MAP_FAILED);
    ASSERT_EQ(xsk_umem__create(&umem, area, kFrames * kFrame, &fill, &comp, nullptr), 0);
    xsk_socket_config cfg{};
    cfg.rx_size = XSK_RING_CONS__DEFAULT_NUM_DESCS;
    cfg.tx_size = XSK_RING_PROD__DEFAULT_NUM_DESCS;
    cfg.libxdp_flags = XSK_LIBXDP_FLAGS__INHIBIT_PROG_LOAD;
    cfg.bind_flags = XDP_COPY;
    int err = xsk_socket__create(&xsk, ifname, 0, umem, &rx, &tx, &cfg);
    ASSERT_EQ(err, 0) << "xsk_socket__create: " << strerror(-err);
    ASSERT_EQ(xsk_socket__update_xskmap(xsk, xsks_fd), 0);
  }
  ~BoundXsk() {
    if (xsk) xsk_socket__delete(xsk);
    if (umem) xsk_umem__delete(umem);
    if (area != MAP_FAILED) munmap(area, kFrames * kFrame);
  }
};

TEST(XdpLoader, AttachesNativeThroughAPinnedLinkThatOutlivesItAndIsAdopted) {
  REQUIRE_ROOT();
  TestNetns ns("ld");
  REQUIRE_NETNS(ns);
  PinDir pins;
  std::unique_ptr<XdpFilter> f;
  std::string error;
  ns.run_inside([&] {
    try {
      XdpOptions o = pinned(pins, {"v0"});
      f = XdpFilter::attach(o);
    } catch (const std::exception& e) {
      error = e.what();
    }
  });
  ASSERT_TRUE(f) << error;
  ASSERT_EQ(f->attached().size(), 1u);
  EXPECT_TRUE(f->attached()[0].native) << "veth supports native XDP on this kernel";
  EXPECT_FALSE(f->inline_mode());
  bool native = false;
  uint32_t id = 0;
  EXPECT_EQ(prog_name_on(ns, "v0", &id, &native), "xdp_filter");
  EXPECT_TRUE(native);
  for (const char* m : {"flows", "stats", "config", "agent", "xsks", "tx_ports"})
    EXPECT_TRUE(std::filesystem::exists(pins.path + "/" + m)) << m;
  EXPECT_NE(f->describe().find("v0"), std::string::npos) << f->describe();

  // The flow cache survives the agent: a verdict installed now is in the
  // pinned map that a second load reuses.
  gpo_flow_key k{};
  k.proto = 17;
  k.port_a = htons(9);
  f->install_verdict(k, GPO_ACT_DROP, 99);
  // Destruction without detach() (a crash, an uncaught exception) leaves the
  // filter attached: its pinned link outlives the XdpFilter.
  const std::string link = pins.path + "/xdp_link_v0";
  EXPECT_TRUE(std::filesystem::exists(link));
  ns.run_inside([&] { f.reset(); });
  EXPECT_EQ(prog_name_on(ns, "v0"), "xdp_filter") << "the pinned link keeps the filter attached";
  // The next agent adopts the link: its program replaces the old one in place.
  ns.run_inside([&] {
    XdpOptions o = pinned(pins, {"v0"});
    f = XdpFilter::attach(o);
  });
  ASSERT_TRUE(f);
  ASSERT_EQ(f->attached().size(), 1u);
  EXPECT_TRUE(f->attached()[0].adopted);
  uint32_t adopted_id = 0;
  EXPECT_EQ(prog_name_on(ns, "v0", &adopted_id), "xdp_filter");
  EXPECT_NE(adopted_id, id) << "the new program runs in the adopted link";
  // detach() is the deliberate way off.
  ns.run_inside([&] {
    f->detach();
    f.reset();
  });
  EXPECT_EQ(prog_name_on(ns, "v0"), "") << "detach() detaches";
  EXPECT_FALSE(std::filesystem::exists(link));
  ASSERT_TRUE(std::filesystem::exists(pins.path + "/flows"));
  XdpOptions o;
  o.pin_dir = pins.path;
  auto again = XdpFilter::load(o);
  gpo_flow_verdict v{};
  ASSERT_EQ(bpf_map_lookup_elem(again->flows_fd(), &k, &v), 0);
  EXPECT_EQ(v.rule_id, 99u);
}

TEST(XdpLoader, GenericModeWhenAsked) {
  REQUIRE_ROOT();
  TestNetns ns("gen");
  REQUIRE_NETNS(ns);
  PinDir pins;
  ns.run_inside([&] {
    XdpOptions o = pinned(pins, {"v1"});
    o.mode = XdpOptions::Mode::generic;
    auto f = XdpFilter::attach(o);
    ASSERT_EQ(f->attached().size(), 1u);
    EXPECT_FALSE(f->attached()[0].native);
    bool native = true;
    EXPECT_EQ(gpo::loader::attached_prog_name(int(if_nametoindex("v1")), nullptr, &native), "xdp_filter");
    EXPECT_FALSE(native);
    f->detach();
  });
  EXPECT_EQ(prog_name_on(ns, "v1"), "");
}

TEST(XdpLoader, RefusesToReplaceAProgramThatIsNotOurs) {
  REQUIRE_ROOT();
  TestNetns ns("frn");
  REQUIRE_NETNS(ns);
  PinDir pins;
  XdpOptions lo;
  lo.pin_dir = "";
  auto other = XdpFilter::load(lo);  // its xdp_inject plays "someone else's program"
  ns.run_inside([&] {
    int ifi = int(if_nametoindex("v0"));
    ASSERT_EQ(bpf_xdp_attach(ifi, other->inject_prog_fd(), XDP_FLAGS_DRV_MODE, nullptr), 0);
    XdpOptions o = pinned(pins, {"v0"});
    try {
      XdpFilter::attach(o);
      ADD_FAILURE() << "attach replaced a foreign XDP program";
    } catch (const XdpError& e) {
      EXPECT_EQ(e.kind, XdpError::Kind::usage);
      EXPECT_NE(std::string(e.what()).find("xdp_inject"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("not ours"), std::string::npos) << e.what();
    }
    EXPECT_EQ(gpo::loader::attached_prog_name(ifi), "xdp_inject") << "the foreign program stays";
    bpf_xdp_detach(ifi, XDP_FLAGS_DRV_MODE, nullptr);
  });
}

TEST(XdpLoader, ReplacesAnXdpFilterLeftByACrashedAgent) {
  REQUIRE_ROOT();
  TestNetns ns("stl");
  REQUIRE_NETNS(ns);
  PinDir pins;
  XdpOptions lo;
  lo.pin_dir = "";
  auto stale = XdpFilter::load(lo);
  ns.run_inside([&] {
    int ifi = int(if_nametoindex("v0"));
    // Attached by hand, not by an XdpFilter: nothing will detach it, as after a crash.
    ASSERT_EQ(bpf_xdp_attach(ifi, stale->filter_prog_fd(), XDP_FLAGS_SKB_MODE, nullptr), 0);
    uint32_t stale_id = 0;
    gpo::loader::attached_prog_name(ifi, &stale_id);
    XdpOptions o = pinned(pins, {"v0"});
    auto f = XdpFilter::attach(o);
    uint32_t id = 0;
    bool native = false;
    EXPECT_EQ(gpo::loader::attached_prog_name(ifi, &id, &native), "xdp_filter");
    EXPECT_NE(id, stale_id);
    EXPECT_TRUE(native);
  });
}

TEST(XdpLoader, ClearErrorsForBadInterfaces) {
  REQUIRE_ROOT();
  PinDir pins;
  XdpOptions o;
  o.pin_dir = pins.path;
  o.ifaces = {"gpo-no-such-if0"};
  try {
    XdpFilter::attach(o);
    ADD_FAILURE() << "attached to a missing interface";
  } catch (const XdpError& e) {
    EXPECT_EQ(e.kind, XdpError::Kind::usage);
    EXPECT_NE(std::string(e.what()).find("no network interface named 'gpo-no-such-if0'"), std::string::npos)
        << e.what();
  }
  o.ifaces = {"lo", "lo"};
  EXPECT_THROW(XdpFilter::attach(o), XdpError);
  o.ifaces = {};
  EXPECT_THROW(XdpFilter::attach(o), XdpError);
}

TEST(XdpLoader, InlineModeFillsTxPortsBothWays) {
  REQUIRE_ROOT();
  TestNetns ns("inl");
  REQUIRE_NETNS(ns);
  PinDir pins;
  ns.run_inside([&] {
    XdpOptions o = pinned(pins, {"v0", "v1"});
    o.fail_policy = GPO_ACT_DROP;
    auto f = XdpFilter::attach(o);
    ASSERT_TRUE(f->inline_mode());
    uint32_t v0 = if_nametoindex("v0"), v1 = if_nametoindex("v1"), out = 0;
    ASSERT_EQ(bpf_map_lookup_elem(f->tx_ports_fd(), &v0, &out), 0);
    EXPECT_EQ(out, v1);
    ASSERT_EQ(bpf_map_lookup_elem(f->tx_ports_fd(), &v1, &out), 0);
    EXPECT_EQ(out, v0);
    gpo_xdp_config cfg{};
    uint32_t zero = 0;
    ASSERT_EQ(bpf_map_lookup_elem(f->config_fd(), &zero, &cfg), 0);
    EXPECT_EQ(cfg.inline_mode, 1);
    EXPECT_EQ(cfg.fail_policy, GPO_ACT_DROP);
    EXPECT_EQ(gpo::loader::attached_prog_name(int(v0)), "xdp_filter");
    EXPECT_EQ(gpo::loader::attached_prog_name(int(v1)), "xdp_filter");
  });
}

// What the agent relies on to re-inject a packet it passed: xdp_inject run
// with BPF_F_TEST_XDP_LIVE_FRAMES and XDP_PASS builds an skb on the given
// interface, and it reaches a UDP socket bound there.
TEST(XdpLoader, LiveFrameInjectionDeliversToALocalSocket) {
  REQUIRE_ROOT();
  TestNetns ns("inj");
  REQUIRE_NETNS(ns);
  XdpOptions lo;
  lo.pin_dir = "";
  auto f = XdpFilter::load(lo);
  ns.run_inside([&] {
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    ASSERT_GE(s, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(5000);
    inet_pton(AF_INET, "198.18.0.1", &a.sin_addr);
    ASSERT_EQ(bind(s, reinterpret_cast<sockaddr*>(&a), sizeof(a)), 0) << strerror(errno);
    ifreq ifr{};
    std::strcpy(ifr.ifr_name, "v0");
    ASSERT_EQ(ioctl(s, SIOCGIFHWADDR, &ifr), 0);
    gpo::test::Mac mac;
    std::memcpy(mac.data(), ifr.ifr_hwaddr.sa_data, 6);
    // Source: on the subnet but not local (a local source address would be martian).
    auto pkt = PacketBuilder().eth({2, 0, 0, 0, 0, 9}, mac).ipv4("198.18.0.9", "198.18.0.1").udp(4000, 5000)
                   .payload("injected").build();
    // The agent's own call (PacketPath's host-mode delivery).
    const int err = gpo::loader::test_run_live_frame(f->inject_prog_fd(), int(if_nametoindex("v0")), 0, pkt);
    ASSERT_EQ(err, 0) << strerror(err);
    pollfd pfd{s, POLLIN, 0};
    ASSERT_EQ(poll(&pfd, 1, 2000), 1) << "the injected packet never reached the socket";
    char buf[64] = {};
    sockaddr_in from{};
    socklen_t fl = sizeof(from);
    ssize_t n = recvfrom(s, buf, sizeof(buf), 0, reinterpret_cast<sockaddr*>(&from), &fl);
    EXPECT_EQ(std::string(buf, n > 0 ? size_t(n) : 0), "injected");
    EXPECT_EQ(ntohs(from.sin_port), 4000);
    close(s);
  });
}

// Host mode checks at start that the kernel runs live-frame re-injection
// (PacketPath::start refuses host mode otherwise): the probe passes here and
// says why where the run fails.
TEST(XdpLoader, HostModeProbesLiveFrameReinjectionAndSaysWhyItFails) {
  REQUIRE_ROOT();
  TestNetns ns("probe");
  REQUIRE_NETNS(ns);
  PinDir pins;
  ns.run_inside([&] {
    XdpOptions o = pinned(pins, {"v0"});
    auto f = XdpFilter::attach(o);
    std::string why;
    EXPECT_TRUE(f->probe_reinjection(&why)) << why;
    const std::vector<uint8_t> frame(60, 0);
    EXPECT_EQ(gpo::loader::test_run_live_frame(-1, int(if_nametoindex("v0")), 0, frame), EBADF);
    f->detach();
  });
}

// A miss with a real AF_XDP socket in the XSKMAP goes to the agent; once the
// socket is gone the fail policy applies again.
TEST(XdpLoader, MissWithABoundSocketGoesToTheAgent) {
  REQUIRE_ROOT();
  TestNetns ns("xsk");
  REQUIRE_NETNS(ns);
  XdpOptions lo;
  lo.pin_dir = "";
  auto f = XdpFilter::load(lo);
  gpo_xdp_config xcfg{};
  xcfg.fail_policy = GPO_ACT_DROP;
  f->set_config(xcfg);
  auto pkt = PacketBuilder().eth().ipv4("198.18.0.1", "198.18.0.2").udp(1, 2).payload("miss").build();
  ns.run_inside([&] {
    BoundXsk sock;  // deleted, and out of the XSKMAP, when this ends
    ASSERT_NO_FATAL_FAILURE(sock.bind("v0", f->xsks_fd()));

    auto run = xdp_test_run(f->filter_prog_fd(), pkt);  // rx queue 0
    ASSERT_EQ(run.rc, 0);
    EXPECT_EQ(run.action, XDP_REDIRECT);
    auto st = f->read_stats();
    EXPECT_EQ(st.to_agent.packets, 1u);
    EXPECT_EQ(st.to_agent.bytes, pkt.size());
    EXPECT_EQ(st.no_agent_drop.packets, 0u);

    // A socket in the map but a stale heartbeat (a hung agent): gone, fail policy.
    xcfg.agent_timeout_ns = 500'000'000ull;
    f->set_config(xcfg);
    f->heartbeat();
    EXPECT_EQ(xdp_test_run(f->filter_prog_fd(), pkt).action, XDP_REDIRECT) << "fresh heartbeat";
    gpo_agent_beat beat{};
    uint32_t zero = 0;
    ASSERT_EQ(bpf_map_lookup_elem(f->agent_fd(), &zero, &beat), 0);
    beat.heartbeat_ns -= 2'000'000'000ull;
    ASSERT_EQ(bpf_map_update_elem(f->agent_fd(), &zero, &beat, BPF_ANY), 0);
    EXPECT_EQ(xdp_test_run(f->filter_prog_fd(), pkt).action, XDP_DROP) << "stale heartbeat + fail-closed";
    EXPECT_EQ(f->read_stats().no_agent_drop.packets, 1u);
    f->heartbeat();
    EXPECT_EQ(xdp_test_run(f->filter_prog_fd(), pkt).action, XDP_REDIRECT) << "beating again";
  });
  auto run = xdp_test_run(f->filter_prog_fd(), pkt);
  ASSERT_EQ(run.rc, 0);
  EXPECT_EQ(run.action, XDP_DROP) << "agent gone + fail-closed";
  EXPECT_EQ(f->read_stats().no_agent_drop.packets, 2u);
}

// The overload policy: XDP sends a socket only the misses it has room for
// (the agent's `granted` credit against XDP's `sent` count in the mmapped
// credits map); the excess gets the policy, counted. A flow under inspection
// (a GPO_ACT_INSPECT cache entry) may use the room kept for it; a new flow
// may not. Policy off leaves the socket unchecked.
TEST(XdpLoader, MissesBeyondTheSocketsRoomGetTheOverloadPolicy) {
  REQUIRE_ROOT();
  TestNetns ns("ovl");
  REQUIRE_NETNS(ns);
  XdpOptions lo;
  lo.pin_dir = "";
  auto f = XdpFilter::load(lo);
  gpo_xsk_credit* credits = f->credits();
  auto miss = PacketBuilder().eth().ipv4("198.18.0.1", "198.18.0.2").udp(1, 2).payload("new").build();
  auto inspected = PacketBuilder().eth().ipv4("198.18.0.1", "198.18.0.2").udp(3, 4).payload("old").build();
  gpo_flow_key k;
  auto a = gpo::test::addr16("198.18.0.1"), b = gpo::test::addr16("198.18.0.2");
  gpo_flow_key_make(&k, a.data(), b.data(), htons(3), htons(4), 17);
  f->install_verdict(k, GPO_ACT_INSPECT, 0);
  ns.run_inside([&] {
    BoundXsk sock;  // deleted, and out of the XSKMAP, when this ends
    ASSERT_NO_FATAL_FAILURE(sock.bind("v0", f->xsks_fd()));

    struct Row {
      const char* desc;
      uint8_t policy;
      uint64_t granted, sent;
      bool inspected_flow;
      uint32_t action;
      gpo_counter gpo_xdp_stats::*counter;
      uint64_t sent_after;
    };
    const Row rows[] = {
        {"room: to the agent, counted as sent", GPO_OVERLOAD_PASS, 100, 10, false, XDP_REDIRECT,
         &gpo_xdp_stats::to_agent, 11},
        {"no room, policy pass: passed in XDP", GPO_OVERLOAD_PASS, 100, 100, false, XDP_PASS,
         &gpo_xdp_stats::overload_pass, 100},
        {"no room, policy drop: dropped in XDP", GPO_OVERLOAD_DROP, 100, 100, false, XDP_DROP,
         &gpo_xdp_stats::overload_drop, 100},
        {"sent past granted (racing CPUs): no room", GPO_OVERLOAD_DROP, 100, 101, false, XDP_DROP,
         &gpo_xdp_stats::overload_drop, 101},
        {"only the reserve left: a new flow waits outside", GPO_OVERLOAD_DROP, 100, 90, false, XDP_DROP,
         &gpo_xdp_stats::overload_drop, 90},
        {"only the reserve left: a flow under inspection goes in", GPO_OVERLOAD_DROP, 100, 90, true, XDP_REDIRECT,
         &gpo_xdp_stats::to_agent, 91},
        {"no room at all: a flow under inspection gets the policy too", GPO_OVERLOAD_PASS, 100, 100, true, XDP_PASS,
         &gpo_xdp_stats::overload_pass, 100},
        {"policy off: no room check", GPO_OVERLOAD_OFF, 0, 5, false, XDP_REDIRECT, &gpo_xdp_stats::to_agent, 5},
    };
    for (const Row& r : rows) {
      SCOPED_TRACE(r.desc);
      gpo_xdp_config xcfg{};
      xcfg.overload_policy = r.policy;
      xcfg.credit_reserve = 10;
      f->set_config(xcfg);
      credits[0].granted = r.granted;
      credits[0].sent = r.sent;
      const gpo_xdp_stats before = f->read_stats();
      const auto& pkt = r.inspected_flow ? inspected : miss;
      auto run = xdp_test_run(f->filter_prog_fd(), pkt);  // rx queue 0: slot 0
      ASSERT_EQ(run.rc, 0);
      EXPECT_STREQ(gpo::test::xdp_action_name(run.action), gpo::test::xdp_action_name(r.action));
      const gpo_xdp_stats after = f->read_stats();
      EXPECT_EQ((after.*r.counter).packets - (before.*r.counter).packets, 1u);
      uint64_t total = 0;
#define GPO_X_SUM(name, what) total += after.name.packets - before.name.packets;
      GPO_XDP_PATHS(GPO_X_SUM)
#undef GPO_X_SUM
      EXPECT_EQ(total, 1u) << "one path per packet";
      EXPECT_EQ(after.inspect_to_agent.packets - before.inspect_to_agent.packets,
                r.inspected_flow && r.action == XDP_REDIRECT ? 1u : 0u);
      EXPECT_EQ(credits[0].sent, r.sent_after);
    }
  });
}

TEST(XdpLoader, BpftoolDumpsPinnedMapsWithNamedFields) {
  REQUIRE_ROOT();
  if (access("/usr/sbin/bpftool", X_OK) != 0 && access("/usr/bin/bpftool", X_OK) != 0)
    GTEST_SKIP() << "bpftool not installed";
  PinDir pins;
  XdpOptions o;
  o.pin_dir = pins.path;
  auto f = XdpFilter::load(o);
  gpo_flow_key k;
  auto a = gpo::test::addr16("198.18.0.1"), b = gpo::test::addr16("198.18.0.2");
  gpo_flow_key_make(&k, a.data(), b.data(), htons(1), htons(2), 17);
  f->install_verdict(k, GPO_ACT_DROP, 1234);
  auto pkt = PacketBuilder().eth().ipv4("198.18.0.2", "198.18.0.1").udp(2, 1).build();
  ASSERT_EQ(xdp_test_run(f->filter_prog_fd(), pkt).action, XDP_DROP);

  auto r = run_proc({"bpftool", "map", "dump", "pinned", pins.path + "/stats"});
  ASSERT_EQ(r.exit_code, 0) << r.out;
  for (const char* field : {"cache_drop", "to_agent", "no_agent_pass", "parse_fail_drop", "non_ip_pass", "frag_drop", "flow_expired", "packets", "bytes"})
    EXPECT_NE(r.out.find(field), std::string::npos) << field << " missing from:\n" << r.out;
  r = run_proc({"bpftool", "map", "dump", "pinned", pins.path + "/flows"});
  ASSERT_EQ(r.exit_code, 0) << r.out;
  for (const char* field : {"addr_a", "port_b", "proto", "rule_id", "hits", "last_seen_ns", "1234"})
    EXPECT_NE(r.out.find(field), std::string::npos) << field << " missing from:\n" << r.out;
  r = run_proc({"bpftool", "map", "dump", "pinned", pins.path + "/config"});
  ASSERT_EQ(r.exit_code, 0) << r.out;
  for (const char* field : {"fail_policy", "non_ip_policy", "frag_policy", "agent_timeout_ns", "tcp_timeout_ns"})
    EXPECT_NE(r.out.find(field), std::string::npos) << field << " missing from:\n" << r.out;
}

TEST(XdpStatus, ShowsALoadedFilter) {
  REQUIRE_ROOT();
  if (access("/usr/bin/nsenter", X_OK) != 0) GTEST_SKIP() << "nsenter (util-linux) not installed";
  TestNetns ns("st");
  REQUIRE_NETNS(ns);
  PinDir pins;
  std::unique_ptr<XdpFilter> f;
  ns.run_inside([&] {
    XdpOptions o = pinned(pins, {"v0"});
    o.fail_policy = GPO_ACT_DROP;
    f = XdpFilter::attach(o);
  });
  ASSERT_TRUE(f);
  gpo_flow_key k;
  auto a = gpo::test::addr16("2001:db8::2"), b = gpo::test::addr16("2001:db8::1");
  gpo_flow_key_make(&k, a.data(), b.data(), htons(443), htons(50000), 6);
  f->install_verdict(k, GPO_ACT_DROP, 31337);
  auto pkt = PacketBuilder().eth().ipv6("2001:db8::2", "2001:db8::1").tcp(443, 50000).build();
  for (int i = 0; i < 3; i++) ASSERT_EQ(xdp_test_run(f->filter_prog_fd(), pkt).action, XDP_DROP);

  // Another process, in the namespace (nsenter keeps /sys/fs/bpf; `ip netns exec` would remount /sys).
  auto r = run_proc({"nsenter", "--net=" + ns.path(), AGENT_BIN, "status", "--pin-dir", pins.path});
  ASSERT_EQ(r.exit_code, 0) << r.out;
  for (const char* s : {"xdp_filter on v0", "native", "fail-closed", "cache_drop", "1 of 262144", "31337",
                        "[2001:db8::1]:50000 <-> [2001:db8::2]:443 tcp"})
    EXPECT_NE(r.out.find(s), std::string::npos) << s << " missing from:\n" << r.out;

  r = run_proc({"nsenter", "--net=" + ns.path(), AGENT_BIN, "status", "--json", "--pin-dir", pins.path});
  ASSERT_EQ(r.exit_code, 0) << r.out;
  auto j = nlohmann::json::parse(r.out);
  EXPECT_TRUE(j["running"].get<bool>());
  ASSERT_EQ(j["interfaces"].size(), 1u);
  EXPECT_EQ(j["interfaces"][0]["name"], "v0");
  EXPECT_EQ(j["interfaces"][0]["mode"], "native");
  EXPECT_EQ(j["config"]["fail_policy"], "drop");
  EXPECT_EQ(j["stats"]["cache_drop"]["packets"].get<uint64_t>(), 3u);
  EXPECT_EQ(j["stats"]["cache_drop"]["bytes"].get<uint64_t>(), 3 * pkt.size());
  EXPECT_EQ(j["flows"]["entries"].get<uint64_t>(), 1u);
  EXPECT_EQ(j["flows"]["top"][0]["hits"].get<uint64_t>(), 3u);
  EXPECT_EQ(j["flows"]["top"][0]["rule_id"].get<uint32_t>(), 31337u);
  ns.run_inside([&] { f.reset(); });
}

TEST(XdpStatus, SaysNotRunningWithoutPinnedMaps) {
  REQUIRE_ROOT();
  std::string dir = "/sys/fs/bpf/gpotest-absent-" + std::to_string(getpid());
  auto r = run_proc({AGENT_BIN, "status", "--pin-dir", dir});
  EXPECT_EQ(r.exit_code, 1) << r.out;
  EXPECT_NE(r.out.find("not running: no pinned maps under " + dir), std::string::npos) << r.out;
}

TEST(XdpStatus, NeedsPrivilege) {
  if (!gpo::test::is_root()) {
    auto r = run_proc({AGENT_BIN, "status"});
    EXPECT_EQ(r.exit_code, 3) << r.out;
    EXPECT_NE(r.out.find("needs root"), std::string::npos) << r.out;
    return;
  }
  // As root: drop to nobody in a child (setpriv from util-linux) when available.
  if (access("/usr/bin/setpriv", X_OK) != 0) GTEST_SKIP() << "setpriv not installed";
  auto r = run_proc({"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
                     "--bounding-set=-all", AGENT_BIN, "status"});
  EXPECT_EQ(r.exit_code, 3) << r.out;
  EXPECT_NE(r.out.find("needs root"), std::string::npos) << r.out;
}

}  // namespace
