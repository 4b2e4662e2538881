#include "afxdp/packet_path.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/bpf.h>
#include <net/if.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <condition_variable>
#include <cstring>
#include <stdexcept>

#include <fmt/format.h>

#include "afxdp/checksum.h"
#include "kernels/classify/classify_cpu.h"
#include "kernels/classify/frame.h"
#include "loader/xdp_loader.h"
#include "loop/event_loop.h"
#include "util/log.h"

namespace gpo::afxdp {

namespace {

uint64_t now_ns() {
  return uint64_t(std::chrono::duration_cast<std::chrono::nanoseconds>(
                      std::chrono::steady_clock::now().time_since_epoch())
                      .count());
}

nlohmann::json counter_json(const gpo_counter& c) { return {{"packets", c.packets}, {"bytes", c.bytes}}; }

// Flow-table shards: one per worker is enough to keep threads off each
// other's locks most of the time; one thread needs one.
uint32_t shards_for(uint32_t workers) { return workers <= 1 ? 1 : 8 * workers; }

}  // namespace

PacketCounters& PacketCounters::operator+=(const PacketCounters& o) {
#define GPO_X_ADD(name, what) name += o.name;
  GPO_PACKET_COUNTERS(GPO_X_ADD)
#undef GPO_X_ADD
  classify_ns_max = std::max(classify_ns_max, o.classify_ns_max);
  return *this;
}

// One thread of the miss path: its sockets, batches and classifiers. Worker 0
// runs on the caller's loop; the others on a thread and loop of their own.
// Everything here is touched only from the worker's loop thread, except the
// published counters (under pub_mu).
struct PacketPath::Worker {
  struct Pending {
    XskSocket* sock;
    RxFrame frame;                       // frame.addr == kNoUmem: data points into datagram
    std::shared_ptr<Datagram> datagram;  // a reassembled datagram and its fragments
  };
  static constexpr uint64_t kNoUmem = ~uint64_t(0);

  // A batch from receipt to action: verdicts come from the CPU at once or
  // from the GPU later (ticket >= 0 until collected).
  struct Batch {
    std::vector<Pending> pending;
    std::vector<classify::Frame> frames;
    std::vector<classify::Verdict> verdicts;
    int ticket = -1;
    uint64_t submitted_ns = 0;
  };

  // A socket and its credit (struct gpo_xsk_credit): granted = the frames
  // put on its fill ring + what the kernel dropped anyway - a reserve for
  // CPUs racing on the slot.
  struct Sock {
    std::unique_ptr<XskSocket> xsk;
    uint32_t slot = 0;
    uint64_t repaid = 0;      // credit given back for kernel drops
    uint64_t drops_seen = 0;  // rx_dropped + rx_ring_full when last looked
    uint32_t race_reserve = 0;
  };

  Worker(PacketPath& path, uint32_t index) : p(path), id(index), reasm(path.cfg_.reassembly) {}

  PacketPath& p;
  uint32_t id;
  std::unique_ptr<loop::EventLoop> own_loop;  // workers > 0
  loop::EventLoop* loop = nullptr;
  std::thread thread;
  std::atomic<pid_t> tid{0};  // the thread its loop runs on (once it ran)
  std::vector<Sock> socks;
  classify::Classifier* classifier = nullptr;
  std::unique_ptr<classify::Classifier> own_classifier;
  classify::AsyncClassifier* gpu = nullptr;
  std::unique_ptr<classify::AsyncClassifier> own_gpu;
  bool gpu_failed = false;
  std::deque<Batch> batches;  // classified or in flight, arrival order
  std::vector<Pending> pending;
  // The batch window (and the TX kick) while on a loop; after own_loop, so it goes first.
  std::unique_ptr<loop::OneShotTimer> window;
  bool tx_backlog = false;  // a TX ring still holds frames: the window timer kicks again
  FragmentReassembler reasm;
  PacketCounters c;
  mutable std::mutex pub_mu;
  PacketCounters published;
  ReassemblyCounters pub_reasm{};
  size_t pub_held = 0, pub_held_bytes = 0;

  void open_sockets();
  void attach(loop::EventLoop& l);
  void detach_loop();
  void drain();
  // What other threads may read of this worker (the status file, rates).
  void publish() {
    std::lock_guard<std::mutex> g(pub_mu);
    published = c;
    pub_reasm = reasm.counters();
    pub_held = reasm.datagrams_held();
    pub_held_bytes = reasm.bytes_held();
  }
  PacketCounters snapshot() const {
    std::lock_guard<std::mutex> g(pub_mu);
    return published;
  }
  void set_gpu(classify::AsyncClassifier* g);
  void grant(Sock& s);
  void repay_kernel_drops();
  void on_readable(size_t i);
  void on_gpu_done();
  void gpu_fail(const char* what);
  void complete_batches(bool drain_all);
  void act(Batch& b);
  void act_one(const Pending& pd, const classify::Verdict& v, uint8_t flow, uint64_t now);
  void on_window();
  void process_batch();
  void deliver(XskSocket* from, uint8_t* data, uint32_t len);
  void flush_all_tx();
  XskSocket* peer_socket(const XskSocket* from) const;
  void arm_window();
};

PacketPath::PacketPath(loader::XdpFilter& xdp, std::shared_ptr<const RuleSnapshot> rules,
                       classify::Classifier& classifier, PacketPathConfig cfg)
    : xdp_(xdp),
      rules_(rules),
      cfg_(cfg),
      classifier0_(&classifier),
      flows_(shards_for(std::max<uint32_t>(cfg.workers, 1)), cfg.flows, cfg.inspect, rules) {
  if (cfg_.batch_size == 0) cfg_.batch_size = 1;
  if (cfg_.workers == 0) cfg_.workers = 1;
  if (cfg_.rx_frames < cfg_.batch_size * 2) cfg_.rx_frames = cfg_.batch_size * 2;
  // Flows under inspection pushed out of the full flow table get their verdict cached.
  flows_.set_install([this](const gpo_flow_key& k, uint8_t action, uint32_t rule, uint64_t flags) {
    PacketCounters ignored;  // counted by the inspector (evicted)
    install(k, action, rule, flags, ignored);
  });
}

PacketPath::~PacketPath() {
  for (auto& w : workers_) {
    if (w->thread.joinable()) {
      w->loop->stop();
      w->thread.join();
    }
  }
}

void PacketPath::install(const gpo_flow_key& key, uint8_t action, uint32_t rule_id, uint64_t flags,
                         PacketCounters& c) {
  try {
    if (xdp_.install_verdict(key, action, rule_id, flags)) {
      if (action == GPO_ACT_INSPECT) c.inspect_installs++;
      else c.cache_installs++;
    }
  } catch (const std::exception& e) {
    if (c.cache_install_fail++ == 0) log::warn("flow verdict install failed: {}", e.what());
  }
}

void PacketPath::Worker::open_sockets() {
  const PacketPathConfig& cfg = p.cfg_;
  for (int ifindex : p.xdp_.ifindexes()) {
    char name[IF_NAMESIZE] = {};
    if (!if_indextoname(unsigned(ifindex), name))
      throw std::runtime_error("interface index " + std::to_string(ifindex) + " vanished");
    uint32_t queues = std::min<uint32_t>(rx_queue_count(name), GPO_MAX_QUEUES);
    for (uint32_t q = id; q < queues; q += uint32_t(p.workers_.size())) {
      XskConfig xc;
      xc.ifname = name;
      xc.queue = q;
      xc.rx_frames = cfg.rx_frames;
      xc.tx_frames = p.xdp_.inline_mode() ? cfg.rx_frames : 64;
      uint32_t ring = 1;
      while (ring < xc.rx_frames || ring < xc.tx_frames) ring <<= 1;
      xc.ring_size = ring;
      xc.mode = cfg.bind_mode;
      Sock s;
      s.xsk = XskSocket::open(xc);
      s.slot = p.xsk_slot(*s.xsk);
      // XDP counts `sent` and compares it to `granted` in two steps: CPUs
      // serving one slot at once may each overshoot by one.
      s.race_reserve = std::min<uint32_t>(cfg.rx_frames / 8, uint32_t(std::max(1, libbpf_num_possible_cpus())));
      log::info("AF_XDP socket on {} queue {} ({} mode{})", name, q, s.xsk->zero_copy() ? "zero-copy" : "copy",
                p.workers_.size() > 1 ? fmt::format(", worker {}", id) : std::string());
      socks.push_back(std::move(s));
    }
  }
  for (Sock& s : socks) {
    // A fresh socket, a fresh count: nothing is in it yet.
    gpo_xsk_credit& cr = p.credits_[s.slot];
    __atomic_store_n(&cr.sent, 0, __ATOMIC_RELAXED);
    grant(s);
  }
}

void PacketPath::Worker::grant(Sock& s) {
  const uint64_t g = s.xsk->fill_total() + s.repaid - s.race_reserve;
  __atomic_store_n(&p.credits_[s.slot].granted, g, __ATOMIC_RELEASE);
}

// Frames XDP sent that the kernel dropped anyway (a frame too large for the
// UMEM, a socket gone between lookup and redirect) took no fill-ring frame:
// their credit comes back, so the count never drifts low.
void PacketPath::Worker::repay_kernel_drops() {
  for (Sock& s : socks) {
    auto k = s.xsk->kernel_stats();
    const uint64_t drops = k.rx_dropped + k.rx_ring_full;
    if (drops > s.drops_seen) {
      s.repaid += drops - s.drops_seen;
      c.credit_repaid += drops - s.drops_seen;
      s.drops_seen = drops;
      grant(s);
    }
  }
}

void PacketPath::Worker::attach(loop::EventLoop& l) {
  loop = &l;
  l.post([this] { tid = pid_t(syscall(SYS_gettid)); });
  window = std::make_unique<loop::OneShotTimer>(l, [this] { on_window(); });
  if (gpu) l.add_fd(gpu->completion_fd(), [this] { on_gpu_done(); });
  for (size_t i = 0; i < socks.size(); i++) l.add_fd(socks[i].xsk->fd(), [this, i] { on_readable(i); });
  if (id > 0)  // worker 0 does this in PacketPath::housekeeping
    l.add_timer(std::chrono::milliseconds(std::max<uint32_t>(p.cfg_.housekeeping_ms, 10)), [this] {
      reasm.expire(now_ns());
      repay_kernel_drops();
      publish();
    });
}

void PacketPath::Worker::set_gpu(classify::AsyncClassifier* g) {
  if (loop && gpu) loop->remove_fd(gpu->completion_fd());
  gpu = g;
  gpu_failed = false;
  if (loop && gpu) loop->add_fd(gpu->completion_fd(), [this] { on_gpu_done(); });
}

void PacketPath::start(loop::EventLoop& loop) {
  loop_ = &loop;
  // Host mode hands every packet it passes back to the stack through a
  // live-frame test run: a kernel that refuses those would lose them all.
  if (!xdp_.inline_mode()) {
    std::string why;
    if (!xdp_.probe_reinjection(&why))
      throw std::runtime_error("host mode re-injects the packets it passes with BPF_PROG_TEST_RUN and "
                               "BPF_F_TEST_XDP_LIVE_FRAMES (Linux 5.18 or later), and this kernel refused it (" + why +
                               "): every packet of a new flow would be lost. Filter inline instead (--xdp IFACE,PEER: "
                               "packets forwarded between two interfaces)");
  }
  credits_ = xdp_.credits();
  xdp_.heartbeat();
  // Workers: at most one per rx queue index (inline: of the port with fewer).
  uint32_t queues = GPO_MAX_QUEUES;
  for (int ifindex : xdp_.ifindexes()) {
    char name[IF_NAMESIZE] = {};
    if (if_indextoname(unsigned(ifindex), name)) {
      const uint32_t q = rx_queue_count(name);
      if (q > GPO_MAX_QUEUES)
        log::warn("{} has {} rx queues; the XSKMAP holds {}: queues above that get the fail policy", name, q,
                  GPO_MAX_QUEUES);
      queues = std::min(queues, q);
    }
  }
  uint32_t n = std::max<uint32_t>(1, std::min(cfg_.workers, queues));
  if (n < cfg_.workers)
    log::info("packet path: {} worker(s), not {}: the interface has {} rx queue(s) (one worker per queue at most)",
              n, cfg_.workers, queues);
  if (gpu0_) {
    // Batches held while the GPU works keep their UMEM frames: room for them.
    const uint32_t want = cfg_.batch_size * (cfg_.max_batches_in_flight + 2);
    if (cfg_.rx_frames < want) cfg_.rx_frames = want;
  }
  if (xdp_.config().overload_policy != GPO_OVERLOAD_OFF) {
    // A quarter of each socket's room is kept for flows under inspection:
    // a flood of new flows does not starve the ones being read.
    gpo_xdp_config xc = xdp_.config();
    xc.credit_reserve = cfg_.rx_frames / 4;
    xdp_.set_config(xc);
  }
  for (uint32_t i = 0; i < n; i++) workers_.push_back(std::make_unique<Worker>(*this, i));
  for (auto& w : workers_) {
    if (w->id == 0) {
      w->classifier = classifier0_;
      w->gpu = gpu0_;
    } else {
      w->own_classifier = make_cpu_ ? make_cpu_(*rules_) : std::make_unique<classify::CpuClassifier>(rules_->tables);
      w->classifier = w->own_classifier.get();
      if (make_gpu_ && gpu0_) {
        w->own_gpu = make_gpu_(*rules_);
        w->gpu = w->own_gpu.get();
      }
    }
  }
  // Open every socket before publishing any: a half-set-up path must not take traffic.
  for (auto& w : workers_) w->open_sockets();
  loop.add_timer(std::chrono::milliseconds(std::max<uint32_t>(cfg_.housekeeping_ms, 10)), [this] { housekeeping(); });
  workers_[0]->attach(loop);
  for (size_t i = 1; i < workers_.size(); i++) {
    Worker& w = *workers_[i];
    w.own_loop = std::make_unique<loop::EventLoop>();
    w.attach(*w.own_loop);
    w.thread = std::thread([&w, i] {
      char name[16];
      std::snprintf(name, sizeof name, "gpo-xsk/%zu", i);
      pthread_setname_np(pthread_self(), name);
      w.loop->run(false);
    });
  }
  // One XSKMAP slot per (port, queue): misses of either port reach the agent.
  for (auto& w : workers_)
    for (auto& s : w->socks) {
      uint32_t q = s.slot;
      int fd = s.xsk->fd();
      if (bpf_map_update_elem(xdp_.xsks_fd(), &q, &fd, BPF_ANY) != 0)
        throw std::runtime_error("cannot put the AF_XDP socket of " + s.xsk->ifname() + " queue " +
                                 std::to_string(s.xsk->queue()) + " into the xsks map: " + std::strerror(errno));
    }
  watch_ns_ = now_ns();
  watch_stats_ = xdp_.read_stats();
}

uint32_t PacketPath::xsk_slot(const XskSocket& s) const {
  const auto& ifs = xdp_.ifindexes();
  bool on_peer = xdp_.inline_mode() && ifs.size() > 1 && s.ifindex() == ifs[1];
  return gpo_xsk_slot(s.queue(), on_peer);
}

// Decides what a worker already took in and flushes its TX rings (on its thread).
void PacketPath::Worker::drain() {
  // Frames already taken off the rx rings still get their verdict.
  for (size_t i = 0; i < socks.size(); i++) on_readable(i);
  if (!pending.empty()) process_batch();
  complete_batches(true);
  publish();
}

void PacketPath::Worker::detach_loop() {
  // Passed frames still in a TX ring go out before the sockets stop serving.
  for (int tries = 0; tries < 100; tries++) {
    bool backlog = false;
    for (auto& s : socks) backlog |= !s.xsk->flush_tx();
    if (!backlog) break;
    usleep(1000);
  }
  for (auto& s : socks) loop->remove_fd(s.xsk->fd());
  if (gpu) loop->remove_fd(gpu->completion_fd());
  window.reset();
  publish();
}

void PacketPath::stop(loop::EventLoop& loop) {
  for (auto& w : workers_)
    for (auto& s : w->socks) {
      uint32_t q = s.slot;
      bpf_map_delete_elem(xdp_.xsks_fd(), &q);
    }
  for (auto& w : workers_) {
    if (w->id == 0) {
      w->drain();
      w->detach_loop();
      continue;
    }
    w->loop->post([&w = *w] {
      w.drain();
      w.detach_loop();
      w.loop->stop();
    });
    w->thread.join();
  }
  (void)loop;
  // The sockets stay open (out of the XSKMAP, off the loops) until
  // destruction, so the final status still shows their kernel counters.
}

size_t PacketPath::socket_count() const {
  size_t n = 0;
  for (auto& w : workers_) n += w->socks.size();
  return n;
}

bool PacketPath::any_zero_copy() const {
  for (auto& w : workers_)
    for (auto& s : w->socks)
      if (s.xsk->zero_copy()) return true;
  return false;
}

void PacketPath::Worker::on_readable(size_t i) {
  XskSocket* s = socks[i].xsk.get();
  std::vector<RxFrame> got;
  std::vector<uint64_t> done;  // fragment frames: copied into the reassembler, back to the fill ring now
  const uint64_t now = now_ns();
  const uint32_t batch_size = p.cfg_.batch_size;
  // Drain in batch-sized steps (a few per wakeup, so one busy socket cannot
  // starve the others: epoll is level-triggered and calls again); frames stay
  // in the UMEM until acted on.
  for (int round = 0; round < 4; round++) {
    size_t room = batch_size - pending.size();
    got.clear();
    size_t n = s->receive(room, got);
    for (auto& f : got) {
      c.rx++;
      c.rx_bytes += f.len;
      if (is_ip_fragment(f.data, f.len)) {
        auto d = std::make_shared<Datagram>();
        if (reasm.add(f.data, f.len, now, *d) == FragmentReassembler::Result::kComplete) {
          RxFrame whole{kNoUmem, d->frame.data(), uint32_t(d->frame.size())};
          pending.push_back({s, whole, std::move(d)});
        }
        done.push_back(f.addr);
        continue;
      }
      pending.push_back({s, f, nullptr});
    }
    if (pending.size() >= batch_size) {
      process_batch();
      continue;
    }
    if (n < room) break;
  }
  if (!done.empty()) {
    s->recycle(done);
    grant(socks[i]);
  }
  if (pending.empty()) return;
  if (p.cfg_.batch_window_us == 0) process_batch();
  else arm_window();
}

void PacketPath::housekeeping() {
  xdp_.heartbeat();
  const uint64_t now = now_ns();
  Worker& w0 = *workers_[0];
  w0.reasm.expire(now);
  w0.repay_kernel_drops();
  w0.publish();
  flows_.expire(now);
  watch_overload(now);
}

std::vector<double> PacketPath::worker_cpu_seconds() const {
  std::vector<double> out;
  for (auto& w : workers_) {
    const pid_t t = w->tid.load();
    timespec ts{};
    // The kernel's per-thread CPU clock of any thread of this process
    // (glibc's MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED)).
    const clockid_t clock = clockid_t((~unsigned(t) << 3) | 6);
    out.push_back(t && clock_gettime(clock, &ts) == 0 ? double(ts.tv_sec) + double(ts.tv_nsec) / 1e9 : 0.0);
  }
  return out;
}

PacketCounters PacketPath::counters() const {
  PacketCounters t;
  for (auto& w : workers_) t += w->snapshot();
  return t;
}

MissRates PacketPath::rates() const {
  std::lock_guard<std::mutex> g(rates_mu_);
  return rates_;
}

// Once a second: the miss path's rates (for `status`), and a warning, at
// most every overload_warn_s, while XDP applies the overload policy.
void PacketPath::watch_overload(uint64_t now) {
  if (now - watch_ns_ < 1000000000ull) return;
  const gpo_xdp_stats st = xdp_.read_stats();
  const PacketCounters c = counters();
  const uint64_t decided = c.passed + c.dropped;
  const double secs = double(now - watch_ns_) / 1e9;
  auto d = [&](const gpo_counter gpo_xdp_stats::*f) { return double((st.*f).packets - (watch_stats_.*f).packets); };
  const double to_agent = d(&gpo_xdp_stats::to_agent);
  const double over = d(&gpo_xdp_stats::overload_pass) + d(&gpo_xdp_stats::overload_drop);
  {
    std::lock_guard<std::mutex> g(rates_mu_);
    rates_.seconds = secs;
    rates_.to_agent = to_agent / secs;
    rates_.overload = over / secs;
    rates_.misses = (to_agent + over) / secs;
    rates_.decided = double(decided - watch_decided_) / secs;
    rates_.overload_total = st.overload_pass.packets + st.overload_drop.packets;
  }
  if (over > 0) {
    overload_since_warn_ += uint64_t(over);
    if (warned_ns_ == 0 || now - warned_ns_ >= uint64_t(cfg_.overload_warn_s) * 1000000000ull) {
      const uint8_t policy = xdp_.config().overload_policy;
      log::warn("overload: misses arrive faster than the agent decides them ({:.0f}/s to the agent, {:.0f}/s decided "
                "by {} worker(s)); {} miss(es) since the last warning were {} in XDP (--overload-policy {}; "
                "overload_pass / overload_drop in `status`)",
                to_agent / secs, rates_.decided, workers_.size(), overload_since_warn_,
                policy == GPO_OVERLOAD_DROP ? "dropped" : "passed uninspected", loader::overload_name(policy));
      warned_ns_ = now;
      overload_since_warn_ = 0;
    }
  }
  watch_ns_ = now;
  watch_stats_ = st;
  watch_decided_ = decided;
}

void PacketPath::Worker::on_window() {
  if (!pending.empty()) process_batch();
  if (tx_backlog) flush_all_tx();
}

void PacketPath::Worker::flush_all_tx() {
  bool backlog = false;
  for (auto& s : socks) backlog |= !s.xsk->flush_tx();
  if (backlog && !tx_backlog) c.tx_retries++;
  tx_backlog = backlog;
  if (tx_backlog) arm_window();  // kick again shortly: nothing else may come to do it
}

void PacketPath::Worker::arm_window() {
  if (window) window->arm(std::chrono::microseconds(p.cfg_.batch_window_us));
}

XskSocket* PacketPath::Worker::peer_socket(const XskSocket* from) const {
  // Inline mode: the other interface's socket on the same queue, else one of
  // this worker's sockets on that interface (a TX ring has one writer: its worker).
  XskSocket* fallback = nullptr;
  for (auto& s : socks) {
    if (s.xsk->ifindex() == from->ifindex()) continue;
    if (s.xsk->queue() == from->queue()) return s.xsk.get();
    if (!fallback) fallback = s.xsk.get();
  }
  return fallback;
}

void PacketPath::Worker::deliver(XskSocket* from, uint8_t* data, uint32_t len) {
  if (p.xdp_.inline_mode()) {
    XskSocket* peer = peer_socket(from);
    if (peer && peer->queue_tx(data, len)) c.tx++;
    else c.tx_fail++;
    return;
  }
  // Host mode: run xdp_inject on the frame as if it had arrived on this
  // interface and queue; it returns XDP_PASS and the kernel builds the skb.
  const int err = loader::test_run_live_frame(p.xdp_.inject_prog_fd(), from->ifindex(), from->queue(), {data, len});
  if (err == 0) {
    c.reinjected++;
  } else if (c.reinject_fail++ == 0) {
    log::warn("re-injecting a passed packet on {} failed: {} (further failures are only counted)", from->ifname(),
              std::strerror(err));
  }
}

void PacketPath::Worker::process_batch() {
  if (window) window->cancel();
  Batch b;
  b.pending.swap(pending);
  pending.reserve(p.cfg_.batch_size);
  const size_t n = b.pending.size();
  b.frames.resize(n);
  b.verdicts.assign(n, classify::Verdict{});
  const uint64_t t0 = now_ns();
  for (size_t i = 0; i < n; i++) {
    const RxFrame& f = b.pending[i].frame;
    // Flow direction and state for `flow:` rules, in arrival order.
    const uint8_t flow = p.flows_.observe(classify::parse_frame(f.data, f.len), f.data, t0);
    b.frames[i] = {f.data, f.len, flow};
  }

  if (gpu && !gpu_failed && n >= p.cfg_.gpu_min_batch && n <= gpu->max_batch()) {
    try {
      b.ticket = gpu->submit(b.frames);
      if (b.ticket < 0) c.gpu_busy_cpu++;  // both buffers busy: the CPU takes it, no waiting
    } catch (const std::exception& e) {
      gpu_fail(e.what());
      b.ticket = -1;
    }
  }
  if (b.ticket >= 0) {
    b.submitted_ns = t0;
    c.gpu_batches++;
    c.gpu_frames += n;
  } else {
    classifier->classify(b.frames, b.verdicts);
    const uint64_t dt = now_ns() - t0;
    c.classify_ns_total += dt;
    if (dt > c.classify_ns_max) c.classify_ns_max = dt;
  }
  c.batches++;
  batches.push_back(std::move(b));
  complete_batches(false);
}

void PacketPath::Worker::gpu_fail(const char* what) {
  if (!gpu_failed) log::warn("GPU classifier failed ({}): the CPU classifier takes every batch from now on", what);
  gpu_failed = true;
  c.gpu_errors++;
}

void PacketPath::Worker::on_gpu_done() {
  uint64_t n;
  [[maybe_unused]] ssize_t r = read(gpu->completion_fd(), &n, sizeof n);
  complete_batches(false);
}

void PacketPath::Worker::complete_batches(bool drain_all) {
  while (!batches.empty()) {
    Batch& b = batches.front();
    if (b.ticket >= 0) {
      const bool must = drain_all || batches.size() > p.cfg_.max_batches_in_flight;
      const bool ready = gpu->ready(b.ticket);
      if (!ready && !must) break;
      const uint64_t t0 = now_ns();
      try {
        gpu->collect(b.ticket, b.verdicts);
      } catch (const std::exception& e) {
        gpu_fail(e.what());
        classifier->classify(b.frames, b.verdicts);  // the frames are still in the UMEM
      }
      const uint64_t t1 = now_ns();
      if (!ready) c.gpu_wait_ns_total += t1 - t0;
      c.gpu_ns_total += t1 - b.submitted_ns;
      b.ticket = -1;
    }
    act(b);
    batches.pop_front();
  }
}

void PacketPath::Worker::act_one(const Pending& pd, const classify::Verdict& v, uint8_t flow, uint64_t now) {
  classify::ParsedFrame parsed = classify::parse_frame(pd.frame.data, pd.frame.len);
  FlowDecision d;
  if (!parsed.ok()) {
    // XDP keyed it, this parser does not (an IP length that lies, say): the
    // policy for what cannot be parsed decides; never a verdict under a key.
    c.unparsed++;
    d.action = parsed.status == classify::ParseStatus::kNotIp ? p.xdp_.config().non_ip_policy
                                                              : p.xdp_.config().unparsed_policy;
    d.deliver = d.action != GPO_ACT_DROP;
  } else {
    gpo_flow_verdict cached{};
    const gpo_flow_key key = classify::flow_key(parsed);
    if (pd.datagram && !p.flows_.decided(key) && bpf_map_lookup_elem(p.xdp_.flows_fd(), &key, &cached) == 0 &&
        cached.action != GPO_ACT_INSPECT) {
      // A reassembled datagram of a flow decided before this agent knew it
      // (fragments always come here): as XDP decides its unfragmented packets.
      d.action = cached.action;
      d.rule_id = cached.rule_id;
      d.deliver = cached.action != GPO_ACT_DROP;
      d.already_decided = true;
    } else {
      d = p.flows_.decide(pd.frame.data, parsed, v, flow, now);
    }
    if (d.already_decided) c.already_decided++;
    else if (!d.install) c.uncacheable++;
    if (d.install) p.install(key, d.action, d.rule_id, d.flags, c);
    else if (d.route_to_agent) p.install(key, GPO_ACT_INSPECT, 0, d.flags, c);
    if (!d.deliver && d.action != GPO_ACT_DROP) c.stream_dropped++;
  }
  if (!d.deliver) {
    c.dropped++;
    return;
  }
  c.passed++;
  if (d.action == GPO_ACT_ALERT) {
    c.alerts++;
    log::debug("alert: rule {} on {}", d.rule_id, pd.sock->ifname());
  }
  if (pd.datagram) {
    // The fragments as they came: the receiver reassembles what was inspected.
    for (auto& frag : pd.datagram->fragments) {
      deliver(pd.sock, frag.data(), uint32_t(frag.size()));
      c.fragments_delivered++;
    }
    return;
  }
  // Frames from local senders on veth may carry an offload-only checksum.
  if (parsed.ok() && complete_partial_checksum(pd.frame.data, pd.frame.len, parsed)) c.csum_completed++;
  deliver(pd.sock, pd.frame.data, pd.frame.len);
}

void PacketPath::Worker::act(Batch& b) {
  const size_t n = b.pending.size();
  const uint64_t now = now_ns();
  // Verdict install first, delivery second: both follow batch order, so a
  // flow's packets leave the agent in the order they came.
  for (size_t i = 0; i < n; i++) {
    try {
      act_one(b.pending[i], b.verdicts[i], b.frames[i].flow, now);
    } catch (const std::exception& e) {
      // One packet's trouble must not end the agent (nor leak the batch's frames).
      if (c.errors++ == 0) log::error("packet path: acting on a packet failed: {} (the packet is dropped)", e.what());
    }
  }
  if (p.xdp_.inline_mode()) flush_all_tx();

  // Every UMEM frame goes back to the fill ring of the socket it came from,
  // and XDP may send that socket as many more.
  std::vector<uint64_t> addrs;
  for (auto& s : socks) {
    addrs.clear();
    for (auto& pd : b.pending)
      if (pd.sock == s.xsk.get() && pd.frame.addr != kNoUmem) addrs.push_back(pd.frame.addr);
    if (addrs.empty()) continue;
    s.xsk->recycle(addrs);
    grant(s);
  }
  publish();
}

PacketPath::ReloadResult PacketPath::reload(std::shared_ptr<const RuleSnapshot> next, classify::Classifier& cpu,
                                            classify::AsyncClassifier* gpu) {
  // 1. What the old rules took in, they decide; every other worker then
  //    waits on its own thread until the new rules are in place.
  std::mutex mu;
  std::condition_variable cv;
  size_t paused = 0, resumed = 0;
  bool go = false;
  const size_t others = workers_.size() - 1;
  for (auto& w : workers_) {
    if (w->id == 0) {
      w->drain();
      continue;
    }
    w->loop->post([&, wp = w.get()] {
      wp->drain();
      std::unique_lock<std::mutex> l(mu);
      paused++;
      cv.notify_all();
      cv.wait(l, [&] { return go; });
      wp->set_gpu(wp->own_gpu.get());  // its loop's fds: this thread's to change
      resumed++;
      cv.notify_all();
    });
  }
  {
    std::unique_lock<std::mutex> l(mu);
    cv.wait(l, [&] { return paused == others; });
  }
  xdp_.heartbeat();
  // 2. The cached verdicts the new rules could change go; their next packet
  //    is a miss, queued in the socket until step 3 is done. Entries of flows
  //    under inspection stay: the inspector rescans their streams.
  ReloadResult r;
  std::vector<std::pair<gpo_flow_key, gpo_flow_verdict>> entries;
  gpo_flow_key key, next_key;
  const int fd = xdp_.flows_fd();
  for (int rc = bpf_map_get_next_key(fd, nullptr, &key); rc == 0 && entries.size() < GPO_FLOW_CACHE_ENTRIES;
       rc = bpf_map_get_next_key(fd, &key, &next_key), key = next_key) {
    gpo_flow_verdict v{};
    if (bpf_map_lookup_elem(fd, &key, &v) == 0) entries.emplace_back(key, v);
  }
  for (const auto& [k, v] : entries) {
    if (v.action != GPO_ACT_INSPECT && verdict_could_change(*rules_, *next, k, v)) {
      xdp_.remove_verdict(k);
      r.invalidated++;
    } else {
      r.kept++;
    }
  }
  // 3. The new rules (the workers are paused: their classifiers may change).
  rules_ = next;
  flows_.set_rules(next);
  std::vector<std::unique_ptr<classify::AsyncClassifier>> old_gpus;
  for (auto& w : workers_) {
    if (w->id == 0) {
      w->classifier = &cpu;
      w->set_gpu(gpu);
      continue;
    }
    w->own_classifier = make_cpu_ ? make_cpu_(*next) : std::make_unique<classify::CpuClassifier>(next->tables);
    w->classifier = w->own_classifier.get();
    old_gpus.push_back(std::move(w->own_gpu));
    if (make_gpu_ && gpu) w->own_gpu = make_gpu_(*next);
  }
  {
    std::unique_lock<std::mutex> l(mu);
    go = true;
    cv.notify_all();
    // The old GPU classifiers go once no worker's loop watches them.
    cv.wait(l, [&] { return resumed == others; });
  }
  old_gpus.clear();
  xdp_.heartbeat();
  Worker& w0 = *workers_[0];
  w0.c.reloads++;
  w0.c.invalidated += r.invalidated;
  w0.publish();
  return r;
}

nlohmann::json PacketPath::to_json() const {
  nlohmann::json j;
  const Worker& w0 = *workers_.at(0);
  j["mode"] = xdp_.inline_mode() ? "inline" : "host";
  j["classifier"] = w0.gpu ? fmt::format("{} (batches >= {} frames), {} below", w0.gpu->name(), cfg_.gpu_min_batch,
                                         w0.classifier->name())
                           : std::string(w0.classifier->name());
  j["workers"] = workers_.size();
  j["overload_policy"] = loader::overload_name(xdp_.config().overload_policy);
  nlohmann::json socks = nlohmann::json::array();
  uint64_t kernel_dropped = 0;
  for (auto& w : workers_)
    for (auto& s : w->socks) {
      auto k = s.xsk->kernel_stats();
      kernel_dropped += k.rx_dropped + k.rx_ring_full;  // fill_ring_empty is a cause of rx_dropped
      const gpo_xsk_credit& cr = credits_[s.slot];
      const uint64_t granted = __atomic_load_n(&cr.granted, __ATOMIC_RELAXED);
      const uint64_t sent = __atomic_load_n(&cr.sent, __ATOMIC_RELAXED);
      socks.push_back({{"ifname", s.xsk->ifname()},
                       {"queue", s.xsk->queue()},
                       {"worker", w->id},
                       {"zero_copy", s.xsk->zero_copy()},
                       {"room", granted > sent ? granted - sent : 0},
                       {"rx_dropped", k.rx_dropped},
                       {"rx_ring_full", k.rx_ring_full},
                       {"fill_ring_empty", k.fill_ring_empty},
                       {"rx_invalid", k.rx_invalid},
                       {"tx_invalid", k.tx_invalid}});
    }
  j["sockets"] = socks;
  // Misses that reached no verdict: the socket's rings overflowed (agent too slow).
  j["socket_drops"] = kernel_dropped;
  const PacketCounters c = counters();
#define GPO_X_JSON(name, what) j["agent"][#name] = c.name;
  GPO_PACKET_COUNTERS(GPO_X_JSON)
#undef GPO_X_JSON
  j["agent"]["classify_ns_max"] = c.classify_ns_max;
  if (workers_.size() > 1) {
    j["per_worker"] = nlohmann::json::array();
    for (auto& w : workers_) {
      const PacketCounters wc = w->snapshot();
      j["per_worker"].push_back({{"worker", w->id}, {"rx", wc.rx}, {"passed", wc.passed}, {"dropped", wc.dropped},
                                 {"batches", wc.batches}, {"gpu_batches", wc.gpu_batches}});
    }
  }
  const MissRates r = rates();
  j["rates"] = {{"seconds", r.seconds},
                {"misses_per_s", r.misses},
                {"to_agent_per_s", r.to_agent},
                {"decided_per_s", r.decided},
                {"overload_per_s", r.overload},
                {"overload_total", r.overload_total}};
  nlohmann::json fj = flows_.to_json();
  j["flows"] = fj["flows"];
  j["inspection"] = fj["inspection"];
  ReassemblyCounters rc{};
  size_t held = 0, held_bytes = 0;
  for (auto& w : workers_) {
    std::lock_guard<std::mutex> g(w->pub_mu);
    const ReassemblyCounters& x = w->pub_reasm;
    rc.fragments += x.fragments;
    rc.datagrams += x.datagrams;
    rc.duplicates += x.duplicates;
    rc.overlaps += x.overlaps;
    rc.timeouts += x.timeouts;
    rc.over_limit += x.over_limit;
    rc.invalid += x.invalid;
    rc.dropped_fragments += x.dropped_fragments;
    held += w->pub_held;
    held_bytes += w->pub_held_bytes;
  }
  j["reassembly"] = {{"datagrams_held", held},
                     {"bytes_held", held_bytes},
                     {"fragments", rc.fragments},
                     {"datagrams", rc.datagrams},
                     {"duplicates", rc.duplicates},
                     {"overlaps", rc.overlaps},
                     {"timeouts", rc.timeouts},
                     {"over_limit", rc.over_limit},
                     {"invalid", rc.invalid},
                     {"dropped_fragments", rc.dropped_fragments}};
  gpo_xdp_stats st = xdp_.read_stats();
#define GPO_X_JSON(name, what) j["xdp"][#name] = counter_json(st.name);
  GPO_XDP_PATHS(GPO_X_JSON)
  GPO_XDP_EVENTS(GPO_X_JSON)
#undef GPO_X_JSON
  return j;
}

}  // namespace gpo::afxdp
