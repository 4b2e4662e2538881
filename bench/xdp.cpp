// Suite "xdp": the packet filter's rates on veth, in network namespaces of
// its own, next to the XDP_DROP rate of the same veth (the anchor: what the
// driver and the CPU allow before the filter does anything).
//
//   ns gen (g0) <-veth-> (g1) ns br (r1) <-veth-> (r0) ns sink
//
// A generator runs an XDP_TX program through BPF_PROG_TEST_RUN with live
// frames on g0 (as xdp-trafficgen does): the frames leave g0 and arrive at g1
// at a paced rate. Per row, the rate is raised until something is lost; the
// highest rate with zero loss is reported, with what arrived at the highest
// rate offered. Arrivals are counted where they land: the sink veth's XDP
// counter (inline), the br namespace's IP stack (host mode).
//
// Rows: XDP_DROP on g1 (anchor); inline (g1,r1) cached flow (DEVMAP
// redirect); host mode (g1) cached flow (XDP_PASS up the stack); the agent
// path, inline and host: every packet a miss to the agent (a content rule
// that never matches keeps the flow under inspection).
//
// A second table: new flows through the agent (every frame a 5-tuple never
// seen, from bench/new_flows.h: AF_PACKET + sendmmsg, one sender per CPU), in
// host and inline mode, with 1..N miss-path workers and the CPU classifier
// (the GPU classifier too where there is one): the highest new-flow rate the
// agent decides with zero loss (no overload policy applied, no socket drop,
// every miss decided), and the flows decided per CPU-second of the agent's
// workers at that rate: the rate per agent core.
//
// Needs root and iproute2's `ip`. `--set seconds=S` (per trial, default 0.5;
// --quick 0.2), `--set max_rate=PPS` (default 4M), `--set queues=N` (veth
// queues, default min(4, cores)), `--set workers=1,2` (worker counts of the
// new-flow table, default 1 and the queues), `--set classifier=cpu|gpu|both`
// (default: both where a GPU is usable, else cpu), `--set new_flows=0` skips
// that table, `--set first_table=0` the first.
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <fcntl.h>
#include <linux/ethtool.h>
#include <linux/if_link.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <sched.h>
#include <spawn.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <thread>

#include "afxdp/checksum.h"
#include "afxdp/packet_path.h"
#include "afxdp/rule_snapshot.h"
#include "bench/bench.h"
#include "bench/new_flows.h"
#include "kernels/classify/classify_cpu.h"
#ifdef GPUOFFLOAD_HAVE_CUDA
#include "kernels/classify/classify_runner.h"
#endif
#include "loader/xdp_loader.h"
#include "loop/event_loop.h"
#include "util/log.h"

extern char** environ;

namespace gpo::bench {

namespace {

int sh(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
  pid_t pid;
  int rc = posix_spawnp(&pid, args[0], &fa, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) return -1;
  int st = 0;
  waitpid(pid, &st, 0);
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

// Runs fn on a thread inside network namespace `ns` (setns is per thread).
template <typename F>
void in_ns(const std::string& ns, F&& fn) {
  std::exception_ptr err;
  std::thread t([&] {
    try {
      int fd = open(("/run/netns/" + ns).c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) throw std::runtime_error("setns " + ns + ": " + strerror(errno));
      close(fd);
      fn();
    } catch (...) {
      err = std::current_exception();
    }
  });
  t.join();
  if (err) std::rethrow_exception(err);
}

// The three namespaces and two veth pairs; removed on destruction.
struct Net {
  std::string gen, br, sink;
  // queues: rx and tx queues of each veth (the agent serves one worker per queue at most).
  explicit Net(int queues = 1) {
    const std::string tag = std::to_string(getpid());
    gen = "gpo-bench-gen-" + tag;
    br = "gpo-bench-br-" + tag;
    sink = "gpo-bench-sink-" + tag;
    for (auto* n : {&gen, &br, &sink}) {
      if (sh({"ip", "netns", "add", *n}) != 0) throw std::runtime_error("ip netns add " + *n + " failed");
      sh({"ip", "-n", *n, "link", "set", "lo", "up"});
      sh({"ip", "netns", "exec", *n, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1"});
      sh({"ip", "netns", "exec", *n, "sysctl", "-qw", "net.ipv6.conf.default.disable_ipv6=1"});
    }
    const std::string q = std::to_string(queues);
    auto veth = [&](const char* a, const std::string& ans, const char* amac, const char* b, const std::string& bns,
                    const char* bmac) {
      return sh({"ip", "link", "add", a, "netns", ans, "address", amac, "numrxqueues", q, "numtxqueues", q, "type",
                 "veth", "peer", "name", b, "netns", bns, "address", bmac, "numrxqueues", q, "numtxqueues", q});
    };
    if (veth("g0", gen, "02:00:00:00:0b:01", "g1", br, "02:00:00:00:0b:02") != 0 ||
        veth("r1", br, "02:00:00:00:0c:01", "r0", sink, "02:00:00:00:0c:02") != 0)
      throw std::runtime_error("creating the veth pairs failed");
    for (auto [ns, dev] : {std::pair{gen, "g0"}, {br, "g1"}, {br, "r1"}, {sink, "r0"}})
      sh({"ip", "-n", ns, "link", "set", dev, "up"});
    sh({"ip", "-n", br, "addr", "add", "198.18.200.2/24", "dev", "g1"});
  }
  ~Net() {
    for (auto* n : {&gen, &br, &sink}) sh({"ip", "netns", "del", *n});
  }
};

int prog_returning(int action) {
  bpf_insn insns[2] = {};
  insns[0].code = BPF_ALU64 | BPF_MOV | BPF_K;
  insns[0].dst_reg = BPF_REG_0;
  insns[0].imm = action;
  insns[1].code = BPF_JMP | BPF_EXIT;
  int fd = bpf_prog_load(BPF_PROG_TYPE_XDP, "gpo_bench", "GPL", insns, 2, nullptr);
  if (fd < 0) throw std::runtime_error(std::string("loading an XDP program failed: ") + strerror(errno));
  return fd;
}

// veth's per-queue XDP packet counter (ethtool -S: rx_queue_0_xdp_packets),
// read from inside the namespace.
uint64_t xdp_packets(const std::string& ifname) {
  int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, ifname.c_str(), IFNAMSIZ - 1);
  // ethtool_sset_info ends in a flexible array: one word after it for the count.
  alignas(ethtool_sset_info) uint8_t info_buf[sizeof(ethtool_sset_info) + sizeof(uint32_t)] = {};
  auto* info = reinterpret_cast<ethtool_sset_info*>(info_buf);
  info->cmd = ETHTOOL_GSSET_INFO;
  info->sset_mask = 1ull << ETH_SS_STATS;
  ifr.ifr_data = reinterpret_cast<char*>(info);
  uint64_t out = 0;
  if (ioctl(s, SIOCETHTOOL, &ifr) == 0 && info->data[0]) {
    const uint32_t n = info->data[0];
    std::vector<uint8_t> strings(sizeof(ethtool_gstrings) + n * ETH_GSTRING_LEN);
    auto* gs = reinterpret_cast<ethtool_gstrings*>(strings.data());
    gs->cmd = ETHTOOL_GSTRINGS;
    gs->string_set = ETH_SS_STATS;
    gs->len = n;
    ifr.ifr_data = reinterpret_cast<char*>(gs);
    std::vector<uint8_t> stats(sizeof(ethtool_stats) + n * sizeof(uint64_t));
    auto* st = reinterpret_cast<ethtool_stats*>(stats.data());
    st->cmd = ETHTOOL_GSTATS;
    st->n_stats = n;
    if (ioctl(s, SIOCETHTOOL, &ifr) == 0) {
      ifr.ifr_data = reinterpret_cast<char*>(st);
      if (ioctl(s, SIOCETHTOOL, &ifr) == 0)
        for (uint32_t i = 0; i < n; i++)
          if (std::strncmp(reinterpret_cast<char*>(gs->data) + i * ETH_GSTRING_LEN, "rx_queue_0_xdp_packets",
                           ETH_GSTRING_LEN) == 0)
            out = st->data[i];
    }
  }
  close(s);
  return out;
}

uint64_t ip_in_delivers() {
  std::ifstream in("/proc/thread-self/net/snmp");
  std::string names, values;
  while (std::getline(in, names) && std::getline(in, values)) {
    if (names.rfind("Ip:", 0) != 0) continue;
    std::istringstream n(names), v(values);
    std::string name, value;
    while (n >> name && v >> value)
      if (name == "InDelivers") return std::stoull(value);
  }
  return 0;
}

// 64-byte UDP frames g0 -> g1 (198.18.200.1:sport -> 198.18.200.2:9).
std::vector<uint8_t> udp_frame(uint16_t sport) {
  std::vector<uint8_t> f(60, 0);
  const uint8_t dst[6] = {2, 0, 0, 0, 0x0b, 2}, src[6] = {2, 0, 0, 0, 0x0b, 1};
  std::memcpy(&f[0], dst, 6);
  std::memcpy(&f[6], src, 6);
  f[12] = 0x08;
  uint8_t* ip = &f[14];
  ip[0] = 0x45;
  ip[3] = 46;  // 20 + 8 + 18
  ip[8] = 64;
  ip[9] = 17;
  const uint8_t s[4] = {198, 18, 200, 1}, d[4] = {198, 18, 200, 2};
  std::memcpy(ip + 12, s, 4);
  std::memcpy(ip + 16, d, 4);
  afxdp::set_ipv4_header_checksum(ip);
  uint8_t* udp = ip + 20;
  udp[0] = uint8_t(sport >> 8);
  udp[1] = uint8_t(sport);
  udp[3] = 9;
  udp[5] = 26;  // length; checksum 0 (none)
  std::memcpy(udp + 8, "gpuoffload-bench-x", 18);
  return f;
}

struct Trial {
  double offered = 0;     // pps asked for
  double sent_rate = 0;   // pps the generator achieved
  uint64_t sent = 0, arrived = 0;
};

// Sends `count` frames (round robin over `frames`) out of g0 at `rate` pps,
// in chunks of live-frame test runs; returns the achieved rate.
double generate(int tx_prog, const std::vector<std::vector<uint8_t>>& frames, uint64_t count, double rate) {
  const int ifindex = int(if_nametoindex("g0"));
  const uint64_t chunk = std::max<uint64_t>(1, std::min<uint64_t>(256, uint64_t(rate / 20000)));
  const auto t0 = std::chrono::steady_clock::now();
  uint64_t done = 0;
  size_t next = 0;
  while (done < count) {
    auto due = t0 + std::chrono::nanoseconds(int64_t(1e9 * double(done) / rate));
    std::this_thread::sleep_until(due);
    const auto& f = frames[next++ % frames.size()];
    xdp_md ctx{};
    ctx.ingress_ifindex = uint32_t(ifindex);
    ctx.data_end = uint32_t(f.size());
    LIBBPF_OPTS(bpf_test_run_opts, opts);
    opts.data_in = f.data();
    opts.data_size_in = uint32_t(f.size());
    opts.ctx_in = &ctx;
    opts.ctx_size_in = sizeof ctx;
    opts.repeat = uint32_t(std::min(chunk, count - done));
    opts.flags = BPF_F_TEST_XDP_LIVE_FRAMES;
    if (bpf_prog_test_run_opts(tx_prog, &opts) != 0)
      throw std::runtime_error(std::string("live-frame test run failed: ") + strerror(errno));
    done += opts.repeat;
  }
  return double(count) / seconds_since(t0);
}

// Raises the offered rate until loss; returns the highest zero-loss trial and
// the last (lossy or maximal) one.
std::pair<Trial, Trial> ladder(double seconds, double max_rate, const std::function<Trial(double, uint64_t)>& trial) {
  Trial best, last;
  for (double rate = 25000; rate <= max_rate; rate *= 2) {
    const uint64_t count = std::max<uint64_t>(2000, uint64_t(rate * seconds));
    last = trial(rate, count);
    if (last.arrived < last.sent) break;
    best = last;
    // The generator cannot go faster: no point asking more.
    if (last.sent_rate < 0.7 * rate) break;
  }
  // Refine between the last clean rate and the first lossy one.
  if (best.sent && last.arrived < last.sent) {
    double lo = best.offered, hi = last.offered;
    for (int i = 0; i < 3; i++) {
      double mid = (lo + hi) / 2;
      Trial t = trial(mid, std::max<uint64_t>(2000, uint64_t(mid * seconds)));
      if (t.arrived >= t.sent) {
        best = t;
        lo = mid;
      } else {
        hi = mid;
      }
    }
  }
  return {best, last};
}

std::vector<std::string> row(const std::string& what, const std::pair<Trial, Trial>& r) {
  const Trial& b = r.first;
  const Trial& l = r.second;
  return {what,
          b.sent ? fmt_rate(b.sent_rate) : "none",
          fmt_rate(l.sent_rate),
          l.sent ? fmt::format("{:.1f}%", 100.0 * double(l.arrived) / double(l.sent)) : "-"};
}

// One new-flow trial's outcome.
struct FlowTrial {
  double offered = 0;        // pps asked for
  uint64_t sent = 0;         // frames the generator's sockets took
  uint64_t seen = 0;         // misses XDP saw (to the agent or the overload policy)
  uint64_t overload = 0;     // of them decided by the overload policy
  uint64_t socket_drops = 0;
  uint64_t decided = 0;      // by the agent
  double seconds = 0;        // the generator's time
  double cpu_seconds = 0;    // the agent's workers' CPU time over the trial and its drain
  bool clean() const { return seen > 0 && overload == 0 && socket_drops == 0 && decided == seen; }
  double rate() const { return seconds > 0 ? double(seen) / seconds : 0; }
};

// Sends `count` new flows from g0 at `pps` (one sender per CPU, pinned, up to
// `senders`), starting at flow index `first`.
double flood(const Net& net, int senders, uint64_t first, uint64_t count, double pps, uint64_t& sent) {
  std::vector<std::thread> threads;
  std::vector<NewFlowGenerator::Result> part(static_cast<size_t>(senders));
  std::atomic<int> failed{0};
  for (int i = 0; i < senders; i++)
    threads.emplace_back([&, i] {
      try {
        in_ns(net.gen, [&] {
          cpu_set_t set;
          CPU_ZERO(&set);
          CPU_SET(i, &set);
          sched_setaffinity(0, sizeof set, &set);
          NewFlowOptions o;
          o.ifindex = int(if_nametoindex("g0"));
          const uint8_t smac[6] = {2, 0, 0, 0, 0x0b, 1}, dmac[6] = {2, 0, 0, 0, 0x0b, 2};
          std::memcpy(o.src_mac, smac, 6);
          std::memcpy(o.dst_mac, dmac, 6);
          o.dst_ip = "198.18.200.2";
          o.first = first + (uint64_t(i) << 32);
          NewFlowGenerator gen(o);
          part[size_t(i)] = gen.send(count / uint64_t(senders), pps / senders, 30);
        });
      } catch (const std::exception&) {
        failed++;
      }
    });
  for (auto& t : threads) t.join();
  if (failed) throw std::runtime_error("a new-flow sender failed");
  double secs = 0;
  sent = 0;
  for (auto& p : part) {
    sent += p.sent;
    secs = std::max(secs, p.seconds);
  }
  return secs;
}

// The new-flow table: one row per (mode, classifier, workers).
Table new_flow_table(const Options& o, double seconds, int queues, const std::vector<uint32_t>& worker_counts,
                     const std::string& classifiers) {
  Table t;
  t.title = "New flows through the agent: highest rate decided with zero loss (64-byte UDP, each frame a new flow)";
  t.columns = {"mode", "classifier", "workers", "zero-loss new flows/s", "per agent core (flows/CPU-s)",
               "above it: overload share"};
  Net net(queues);
  int drop = prog_returning(XDP_DROP);
  in_ns(net.sink, [&] { bpf_xdp_attach(int(if_nametoindex("r0")), drop, XDP_FLAGS_DRV_MODE, nullptr); });
  auto rules_file = std::filesystem::temp_directory_path() / ("gpo-bench-nf-" + std::to_string(getpid()) + ".rules");
  // Every new flow: a header rule that does not match, then the default:
  // one decision and one cache install per flow.
  std::ofstream(rules_file) << "drop udp any any -> any 7 (sid:1;)\ndefault pass\n";
  std::vector<std::string> problems;
  auto rules = afxdp::load_rule_snapshot(rules_file.string(), problems);
  std::filesystem::remove(rules_file);
  if (!rules) throw std::runtime_error("bench rules: " + (problems.empty() ? std::string("?") : problems[0]));
  const long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  const int senders = int(std::max(1L, std::min<long>(cpus, queues)));
  uint64_t next_flow = 0;

  std::vector<std::string> kinds;
  if (classifiers == "cpu" || classifiers == "both") kinds.push_back("cpu");
  if (classifiers == "gpu" || classifiers == "both") kinds.push_back("gpu");
  for (bool inline_mode : {false, true})
    for (const std::string& kind : kinds)
      for (uint32_t workers : worker_counts) {
        classify::CpuClassifier cpu(rules->tables);
        std::unique_ptr<classify::AsyncClassifier> gpu0;
        afxdp::PacketPathConfig pc;
        pc.workers = workers;
        if (kind == "gpu") {
#ifdef GPUOFFLOAD_HAVE_CUDA
          std::string why;
          if (classify::GpuClassifier::device_count(&why) <= 0) {
            t.rows.push_back({inline_mode ? "inline" : "host", "gpu", std::to_string(workers), "no GPU: " + why, "-", "-"});
            continue;
          }
          pc.batch_size = 1024;
          gpu0 = std::make_unique<classify::GpuClassifier>(rules->tables, classify::GpuClassifierOptions{0, 1024});
#else
          t.rows.push_back({inline_mode ? "inline" : "host", "gpu", std::to_string(workers), "built without CUDA", "-", "-"});
          continue;
#endif
        }
        std::unique_ptr<loader::XdpFilter> f;
        std::unique_ptr<afxdp::PacketPath> path;
        loop::EventLoop loop;
        in_ns(net.br, [&] {
          loader::XdpOptions xo;
          xo.ifaces = inline_mode ? std::vector<std::string>{"g1", "r1"} : std::vector<std::string>{"g1"};
          xo.pin_dir = "";
          xo.overload_policy = GPO_OVERLOAD_PASS;  // the excess: counted, not lost
          f = loader::XdpFilter::attach(xo);
          path = std::make_unique<afxdp::PacketPath>(*f, rules, cpu, pc);
          if (gpu0) path->set_gpu_classifier(gpu0.get());
#ifdef GPUOFFLOAD_HAVE_CUDA
          path->set_classifier_makers(nullptr, [&](const afxdp::RuleSnapshot& r) -> std::unique_ptr<classify::AsyncClassifier> {
            return std::make_unique<classify::GpuClassifier>(r.tables, classify::GpuClassifierOptions{0, 1024});
          });
#endif
          path->start(loop);
        });
        std::thread runner([&] {
          in_ns(net.br, [&] { loop.run(false); });
        });
        const uint32_t started_workers = path->worker_count();
        auto total_cpu = [&] {
          double sum = 0;
          for (double c : path->worker_cpu_seconds()) sum += c;
          return sum;
        };
        auto trial = [&](double rate) {
          FlowTrial r;
          r.offered = rate;
          const uint64_t count = std::max<uint64_t>(4000, uint64_t(rate * seconds));
          const gpo_xdp_stats s0 = f->read_stats();
          const afxdp::PacketCounters c0 = path->counters();
          const uint64_t drops0 = path->to_json().value("socket_drops", 0ull);
          const double cpu0 = total_cpu();
          r.seconds = flood(net, senders, next_flow, count, rate, r.sent);
          next_flow += count + 1;
          // The agent drains what it took in (bounded).
          const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
          gpo_xdp_stats s1;
          afxdp::PacketCounters c1;
          do {
            std::this_thread::sleep_for(std::chrono::milliseconds(50));
            s1 = f->read_stats();
            c1 = path->counters();
          } while (c1.rx - c0.rx < s1.to_agent.packets - s0.to_agent.packets &&
                   std::chrono::steady_clock::now() < deadline);
          const uint64_t over = (s1.overload_pass.packets - s0.overload_pass.packets) +
                                (s1.overload_drop.packets - s0.overload_drop.packets);
          r.seen = s1.to_agent.packets - s0.to_agent.packets + over;
          r.overload = over;
          r.decided = (c1.passed + c1.dropped) - (c0.passed + c0.dropped);
          r.socket_drops = path->to_json().value("socket_drops", 0ull) - drops0;
          r.cpu_seconds = total_cpu() - cpu0;
          return r;
        };
        FlowTrial best, last;
        for (double rate = 10000; rate <= 4e6; rate *= 2) {
          last = trial(rate);
          if (!last.clean()) break;
          best = last;
          if (last.rate() < 0.7 * rate) break;  // the senders cannot go faster
        }
        if (best.seen && !last.clean()) {
          double lo = best.offered, hi = last.offered;
          for (int i = 0; i < 3; i++) {
            const double mid = (lo + hi) / 2;
            FlowTrial m = trial(mid);
            if (m.clean()) {
              best = m;
              lo = mid;
            } else {
              hi = mid;
            }
          }
        }
        loop.stop();
        runner.join();
        in_ns(net.br, [&] {
          path->stop(loop);
          path.reset();
          f->detach();
          f.reset();
        });
        const std::string per_core =
            best.cpu_seconds > 0 ? fmt_rate(double(best.decided) / best.cpu_seconds) : std::string("-");
        const std::string above = !last.clean() && last.seen
                                      ? fmt::format("{:.1f}% at {}/s", 100.0 * double(last.overload) / double(last.seen),
                                                    fmt_rate(last.rate()))
                                      : std::string("none reached");
        t.rows.push_back({inline_mode ? "inline" : "host", kind, std::to_string(started_workers),
                          best.seen ? fmt_rate(best.rate()) : "none", per_core, above});
      }
  close(drop);
  t.notes.push_back(fmt::format(
      "veths with {} queue(s); {} sender thread(s) pinned one per CPU (AF_PACKET sends on the sending CPU's queue); "
      "{} s per trial, offered rate doubled from 10K until the first loss, then refined", queues, senders, seconds));
  t.notes.push_back(
      "zero loss: no miss decided by the overload policy (--overload-policy pass), none dropped at a socket, every "
      "miss decided by the agent; per agent core: flows decided per CPU-second of the workers' threads at that rate");
  t.notes.push_back("each new flow costs the agent a classification, a flow-cache install (a bpf syscall) and the "
                    "delivery (re-injection in host mode, AF_XDP TX inline); the senders, XDP and the agent share "
                    "the machine's cores");
  (void)o;
  return t;
}

}  // namespace

int run_xdp(const Options& o, std::vector<Table>& out) {
  if (!loader::have_bpf_privileges()) {
    std::fprintf(stderr, "bench xdp: needs root (network namespaces, XDP)\n");
    return 1;
  }
  if (sh({"ip", "-V"}) != 0) {
    std::fprintf(stderr, "bench xdp: needs iproute2's `ip` (network namespaces, veth)\n");
    return 1;
  }
  const double seconds = std::stod(setting(o, "seconds", o.quick ? "0.2" : "0.5"));
  const double max_rate = std::stod(setting(o, "max_rate", "4000000"));
  const auto saved_level = log::level();
  log::set_level(log::Level::warn);  // the loader and the path narrate every attach
  if (setting(o, "first_table", "1") != "0") {
    Net net;
    int tx = prog_returning(XDP_TX), drop = prog_returning(XDP_DROP), pass = prog_returning(XDP_PASS);
    // A test run of a program that no interface runs switches the kernel's XDP
    // dispatcher to it and back, with an RCU grace period each time (ms on a
    // busy machine): attached to g0 it stays in the dispatcher and a run costs
    // only the frames. (Nothing comes back to g0.)
    in_ns(net.gen, [&] { bpf_xdp_attach(int(if_nametoindex("g0")), tx, XDP_FLAGS_DRV_MODE, nullptr); });
    const std::vector<std::vector<uint8_t>> one_flow = {udp_frame(40000)};
    Table t;
    t.title = "Packet filter on veth: highest rate with zero loss (64-byte UDP frames)";
    t.columns = {"path", "zero-loss rate (pps)", "highest rate offered (pps)", "arrived at that rate"};

    // Anchor: XDP_DROP on g1, counted by veth's XDP counter there.
    in_ns(net.br, [&] { bpf_xdp_attach(int(if_nametoindex("g1")), drop, XDP_FLAGS_DRV_MODE, nullptr); });
    auto counted = [&](const std::string& ns, const std::string& dev, std::vector<std::vector<uint8_t>> frames) {
      return [&, ns, dev, frames](double rate, uint64_t count) {
        Trial r;
        r.offered = rate;
        uint64_t before = 0, after = 0;
        in_ns(ns, [&] { before = xdp_packets(dev); });
        in_ns(net.gen, [&] { r.sent_rate = generate(tx, frames, count, rate); });
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
        in_ns(ns, [&] { after = xdp_packets(dev); });
        r.sent = count;
        r.arrived = after - before;
        return r;
      };
    };
    // Host mode: frames that arrived up the bridge namespace's IP stack.
    auto delivered = [&](std::vector<std::vector<uint8_t>> frames, int settle_ms) {
      return [&, frames, settle_ms](double rate, uint64_t count) {
        Trial tr;
        tr.offered = rate;
        uint64_t before = 0, after = 0;
        in_ns(net.br, [&] { before = ip_in_delivers(); });
        in_ns(net.gen, [&] { tr.sent_rate = generate(tx, frames, count, rate); });
        std::this_thread::sleep_for(std::chrono::milliseconds(settle_ms));
        in_ns(net.br, [&] { after = ip_in_delivers(); });
        tr.sent = count;
        tr.arrived = after - before;
        return tr;
      };
    };
    auto anchor = ladder(seconds, max_rate, counted(net.br, "g1", one_flow));
    t.rows.push_back(row("XDP_DROP on the same veth (anchor)", anchor));
    in_ns(net.br, [&] { bpf_xdp_detach(int(if_nametoindex("g1")), XDP_FLAGS_DRV_MODE, nullptr); });

    // The filter with a cached pass verdict, inline: DEVMAP redirect to r1 -> r0.
    in_ns(net.sink, [&] { bpf_xdp_attach(int(if_nametoindex("r0")), drop, XDP_FLAGS_DRV_MODE, nullptr); });
    auto rules_file = std::filesystem::temp_directory_path() / ("gpo-bench-xdp-" + std::to_string(getpid()) + ".rules");
    auto cached = [&](bool inline_mode) {
      std::unique_ptr<loader::XdpFilter> f;
      in_ns(net.br, [&] {
        loader::XdpOptions xo;
        xo.ifaces = inline_mode ? std::vector<std::string>{"g1", "r1"} : std::vector<std::string>{"g1"};
        xo.pin_dir = "";
        f = loader::XdpFilter::attach(xo);
      });
      gpo_flow_key k;
      const uint8_t s[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 18, 200, 1};
      const uint8_t d[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 18, 200, 2};
      gpo_flow_key_make(&k, s, d, htons(40000), htons(9), 17);
      f->install_verdict(k, GPO_ACT_PASS, 0);
      std::pair<Trial, Trial> r;
      if (inline_mode) r = ladder(seconds, max_rate, counted(net.sink, "r0", one_flow));
      else r = ladder(seconds, max_rate, delivered(one_flow, 100));
      in_ns(net.br, [&] {
        f->detach();
        f.reset();
      });
      return r;
    };
    t.rows.push_back(row("inline, cached flow (XDP DEVMAP redirect to the peer port)", cached(true)));
    t.rows.push_back(row("host, cached flow (XDP_PASS up the stack)", cached(false)));

    // The agent path: every packet a miss (a content rule whose header matches
    // and whose pattern never comes keeps each flow under inspection).
    std::ofstream(rules_file) << "drop udp any any -> any 9 (content:\"never-in-these-frames\"; sid:1;)\ndefault pass\n";
    auto agent_path = [&](bool inline_mode) {
      std::vector<std::string> problems;
      auto rules = afxdp::load_rule_snapshot(rules_file.string(), problems);
      if (!rules) throw std::runtime_error("bench rules: " + (problems.empty() ? std::string("?") : problems[0]));
      classify::CpuClassifier cpu(rules->tables);
      std::unique_ptr<loader::XdpFilter> f;
      std::unique_ptr<afxdp::PacketPath> path;
      loop::EventLoop loop;
      afxdp::PacketPathConfig pc;
      pc.inspect.depth = uint64_t(1) << 40;  // never reached: every packet is inspected
      in_ns(net.br, [&] {
        loader::XdpOptions xo;
        xo.ifaces = inline_mode ? std::vector<std::string>{"g1", "r1"} : std::vector<std::string>{"g1"};
        xo.pin_dir = "";
        f = loader::XdpFilter::attach(xo);
        path = std::make_unique<afxdp::PacketPath>(*f, rules, cpu, pc);
        path->start(loop);
      });
      std::thread runner([&] {
        in_ns(net.br, [&] { loop.run(false); });
      });
      std::vector<std::vector<uint8_t>> flows;
      for (uint16_t p = 0; p < 64; p++) flows.push_back(udp_frame(uint16_t(41000 + p)));
      std::pair<Trial, Trial> r;
      if (inline_mode) r = ladder(seconds, max_rate, counted(net.sink, "r0", flows));
      else r = ladder(seconds, max_rate, delivered(flows, 300));
      loop.stop();
      runner.join();
      in_ns(net.br, [&] {
        path->stop(loop);
        path.reset();
        f->detach();
        f.reset();
      });
      return r;
    };
    t.rows.push_back(row("inline, every packet through the agent (AF_XDP copy mode, TX on the peer)", agent_path(true)));
    t.rows.push_back(row("host, every packet through the agent (AF_XDP copy mode, re-injection)", agent_path(false)));
    std::filesystem::remove(rules_file);
    close(tx);
    close(drop);
    close(pass);

    t.notes.push_back(fmt::format(
        "veth pair per hop, native XDP; frames generated by an XDP_TX program run with BPF_PROG_TEST_RUN live frames "
        "on the sender's veth; {} s per trial, offered rate doubled from 25K until loss, then refined", seconds));
    t.notes.push_back("arrivals: the sink veth's XDP counter (inline, anchor), the br namespace's IP InDelivers (host)");
    t.notes.push_back(
        "the generator, the filter and the sink share the machine's cores: on a loaded machine the figures move; "
        "XDP paper anchor (mlx5 100G, one core): XDP_DROP 24 Mpps");
    out.push_back(std::move(t));
  }
  if (setting(o, "new_flows", "1") != "0") {
    const long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    const int queues = std::stoi(setting(o, "queues", std::to_string(std::max(1L, std::min(4L, cpus)))));
    std::vector<uint32_t> workers =
        setting_list(o, "workers", queues > 1 ? std::vector<uint32_t>{1, uint32_t(queues)} : std::vector<uint32_t>{1});
    std::string kinds = setting(o, "classifier", "");
    if (kinds.empty()) {
      kinds = "cpu";
#ifdef GPUOFFLOAD_HAVE_CUDA
      std::string why;
      if (classify::GpuClassifier::device_count(&why) > 0) kinds = "both";
#endif
    }
    log::set_level(log::Level::error);  // the overload warnings are what the trials provoke
    out.push_back(new_flow_table(o, seconds, queues, workers, kinds));
  }
  log::set_level(saved_level);
  return 0;
}

}  // namespace gpo::bench
