#include "afxdp/packet_path.h"

#include <bpf/bpf.h>
#include <linux/bpf.h>
#include <net/if.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>

#include <fmt/format.h>

#include "afxdp/checksum.h"
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

}  // namespace

PacketPath::PacketPath(loader::XdpFilter& xdp, std::shared_ptr<const RuleSnapshot> rules,
                       classify::Classifier& classifier, PacketPathConfig cfg)
    : xdp_(xdp),
      rules_(rules),
      classifier_(&classifier),
      cfg_(cfg),
      flows_(cfg.flows),
      inspector_(flows_, rules, cfg.inspect),
      reasm_(cfg.reassembly) {
  if (cfg_.batch_size == 0) cfg_.batch_size = 1;
  if (cfg_.rx_frames < cfg_.batch_size * 2) cfg_.rx_frames = cfg_.batch_size * 2;
  pending_.reserve(cfg_.batch_size);
  // Flows under inspection pushed out of the full flow table get their verdict cached.
  inspector_.set_install([this](const gpo_flow_key& k, uint8_t action, uint32_t rule, uint64_t flags) {
    try {
      if (xdp_.install_verdict(k, action, rule, flags)) c_.cache_installs++;
    } catch (const std::exception& e) {
      if (c_.cache_install_fail++ == 0) log::warn("flow verdict install failed: {}", e.what());
    }
  });
}

PacketPath::~PacketPath() {
  if (timer_fd_ >= 0) close(timer_fd_);
}

void PacketPath::start(loop::EventLoop& loop) {
  loop_ = &loop;
  timer_fd_ = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  if (timer_fd_ < 0) throw std::runtime_error(std::string("timerfd_create: ") + std::strerror(errno));
  loop.add_fd(timer_fd_, [this] { on_window(); });
  xdp_.heartbeat();
  loop.add_timer(std::chrono::milliseconds(std::max<uint32_t>(cfg_.housekeeping_ms, 10)), [this] { housekeeping(); });
  if (gpu_) {
    // Batches held while the GPU works keep their UMEM frames: room for them.
    const uint32_t want = cfg_.batch_size * (cfg_.max_batches_in_flight + 2);
    if (cfg_.rx_frames < want) cfg_.rx_frames = want;
    loop.add_fd(gpu_->completion_fd(), [this] { on_gpu_done(); });
  }

  // Open every socket before publishing any: a half-set-up path must not take traffic.
  for (int ifindex : xdp_.ifindexes()) {
    char name[IF_NAMESIZE] = {};
    if (!if_indextoname(unsigned(ifindex), name))
      throw std::runtime_error("interface index " + std::to_string(ifindex) + " vanished");
    uint32_t queues = rx_queue_count(name);
    if (queues > GPO_MAX_QUEUES) {
      log::warn("{} has {} rx queues; the XSKMAP holds {}: queues above that get the fail policy", name, queues,
                GPO_MAX_QUEUES);
      queues = GPO_MAX_QUEUES;
    }
    for (uint32_t q = 0; q < queues; q++) {
      XskConfig xc;
      xc.ifname = name;
      xc.queue = q;
      xc.rx_frames = cfg_.rx_frames;
      xc.tx_frames = xdp_.inline_mode() ? cfg_.rx_frames : 64;
      uint32_t ring = 1;
      while (ring < xc.rx_frames || ring < xc.tx_frames) ring <<= 1;
      xc.ring_size = ring;
      xc.mode = cfg_.bind_mode;
      socks_.push_back(XskSocket::open(xc));
      log::info("AF_XDP socket on {} queue {} ({} mode)", name, q,
                socks_.back()->zero_copy() ? "zero-copy" : "copy");
    }
  }
  for (auto& s : socks_) {
    XskSocket* raw = s.get();
    loop.add_fd(s->fd(), [this, raw] { on_readable(raw); });
  }
  // One XSKMAP slot per (port, queue): misses of either port reach the agent.
  for (auto& s : socks_) {
    uint32_t q = xsk_slot(*s);
    int fd = s->fd();
    if (bpf_map_update_elem(xdp_.xsks_fd(), &q, &fd, BPF_ANY) != 0)
      throw std::runtime_error("cannot put the AF_XDP socket of " + s->ifname() + " queue " + std::to_string(q) +
                               " into the xsks map: " + std::strerror(errno));
  }
}

uint32_t PacketPath::xsk_slot(const XskSocket& s) const {
  const auto& ifs = xdp_.ifindexes();
  bool on_peer = xdp_.inline_mode() && ifs.size() > 1 && s.ifindex() == ifs[1];
  return gpo_xsk_slot(s.queue(), on_peer);
}

void PacketPath::stop(loop::EventLoop& loop) {
  for (auto& s : socks_) {
    uint32_t q = xsk_slot(*s);
    bpf_map_delete_elem(xdp_.xsks_fd(), &q);
  }
  // Frames already taken off the rx rings still get their verdict.
  for (auto& s : socks_) on_readable(s.get());
  if (!pending_.empty()) process_batch();
  complete_batches(true);
  // Passed frames still in a TX ring go out before the sockets stop serving.
  for (int tries = 0; tries < 100; tries++) {
    bool backlog = false;
    for (auto& s : socks_) backlog |= !s->flush_tx();
    if (!backlog) break;
    usleep(1000);
  }
  for (auto& s : socks_) loop.remove_fd(s->fd());
  if (gpu_) loop.remove_fd(gpu_->completion_fd());
  if (timer_fd_ >= 0) {
    loop.remove_fd(timer_fd_);
    close(timer_fd_);
    timer_fd_ = -1;
  }
  // The sockets stay open (out of the XSKMAP, off the loop) until destruction,
  // so the final status still shows their kernel counters.
}

bool PacketPath::any_zero_copy() const {
  for (auto& s : socks_)
    if (s->zero_copy()) return true;
  return false;
}

void PacketPath::on_readable(XskSocket* s) {
  std::vector<RxFrame> got;
  std::vector<uint64_t> done;  // fragment frames: copied into the reassembler, back to the fill ring now
  const uint64_t now = now_ns();
  // Drain in batch-sized steps (a few per wakeup, so one busy socket cannot
  // starve the others: epoll is level-triggered and calls again); frames stay
  // in the UMEM until acted on.
  for (int round = 0; round < 4; round++) {
    size_t room = cfg_.batch_size - pending_.size();
    got.clear();
    size_t n = s->receive(room, got);
    for (auto& f : got) {
      c_.rx++;
      c_.rx_bytes += f.len;
      if (is_ip_fragment(f.data, f.len)) {
        auto d = std::make_shared<Datagram>();
        if (reasm_.add(f.data, f.len, now, *d) == FragmentReassembler::Result::kComplete) {
          RxFrame whole{kNoUmem, d->frame.data(), uint32_t(d->frame.size())};
          pending_.push_back({s, whole, std::move(d)});
        }
        done.push_back(f.addr);
        continue;
      }
      pending_.push_back({s, f, nullptr});
    }
    if (pending_.size() >= cfg_.batch_size) {
      process_batch();
      continue;
    }
    if (n < room) break;
  }
  s->recycle(done);
  if (pending_.empty()) return;
  if (cfg_.batch_window_us == 0) process_batch();
  else arm_window();
}

void PacketPath::housekeeping() {
  xdp_.heartbeat();
  const uint64_t now = now_ns();
  reasm_.expire(now);
  flows_.expire(now);
}

void PacketPath::on_window() {
  uint64_t expirations;
  [[maybe_unused]] ssize_t r = read(timer_fd_, &expirations, sizeof expirations);
  window_armed_ = false;
  if (!pending_.empty()) process_batch();
  if (tx_backlog_) flush_all_tx();
}

void PacketPath::flush_all_tx() {
  bool backlog = false;
  for (auto& s : socks_) backlog |= !s->flush_tx();
  if (backlog && !tx_backlog_) c_.tx_retries++;
  tx_backlog_ = backlog;
  if (tx_backlog_) arm_window();  // kick again shortly: nothing else may come to do it
}

void PacketPath::arm_window() {
  if (window_armed_) return;
  itimerspec its{};
  its.it_value.tv_sec = cfg_.batch_window_us / 1000000;
  its.it_value.tv_nsec = long(cfg_.batch_window_us % 1000000) * 1000;
  timerfd_settime(timer_fd_, 0, &its, nullptr);
  window_armed_ = true;
}

void PacketPath::disarm_window() {
  if (!window_armed_) return;
  itimerspec its{};
  timerfd_settime(timer_fd_, 0, &its, nullptr);
  window_armed_ = false;
}

XskSocket* PacketPath::peer_socket(const XskSocket* from) const {
  // Inline mode: the other interface's socket on the same queue, else its queue 0.
  XskSocket* fallback = nullptr;
  for (auto& s : socks_) {
    if (s->ifindex() == from->ifindex()) continue;
    if (s->queue() == from->queue()) return s.get();
    if (s->queue() == 0) fallback = s.get();
  }
  return fallback;
}

void PacketPath::deliver(XskSocket* from, uint8_t* data, uint32_t len) {
  if (xdp_.inline_mode()) {
    XskSocket* peer = peer_socket(from);
    if (peer && peer->queue_tx(data, len)) c_.tx++;
    else c_.tx_fail++;
    return;
  }
  // Host mode: run xdp_inject on the frame as if it had arrived on this
  // interface and queue; it returns XDP_PASS and the kernel builds the skb.
  xdp_md ctx{};
  ctx.ingress_ifindex = uint32_t(from->ifindex());
  ctx.rx_queue_index = from->queue();
  ctx.data_end = len;  // the kernel insists ctx describes exactly data_in
  LIBBPF_OPTS(bpf_test_run_opts, opts);
  opts.data_in = data;
  opts.data_size_in = len;
  opts.ctx_in = &ctx;
  opts.ctx_size_in = sizeof ctx;
  opts.repeat = 1;
  opts.flags = BPF_F_TEST_XDP_LIVE_FRAMES;
  if (bpf_prog_test_run_opts(xdp_.inject_prog_fd(), &opts) == 0) c_.reinjected++;
  else {
    if (c_.reinject_fail++ == 0)
      log::warn("re-injecting a passed packet on {} failed: {} (further failures are only counted)",
                from->ifname(), std::strerror(errno));
  }
}

void PacketPath::process_batch() {
  disarm_window();
  Batch b;
  b.pending.swap(pending_);
  pending_.reserve(cfg_.batch_size);
  const size_t n = b.pending.size();
  b.frames.resize(n);
  b.verdicts.assign(n, classify::Verdict{});
  const uint64_t t0 = now_ns();
  for (size_t i = 0; i < n; i++) {
    const RxFrame& f = b.pending[i].frame;
    // Flow direction and state for `flow:` rules, in arrival order.
    const uint8_t flow = flows_.observe(classify::parse_frame(f.data, f.len), f.data, t0);
    b.frames[i] = {f.data, f.len, flow};
  }

  if (gpu_ && !gpu_failed_ && n >= cfg_.gpu_min_batch && n <= gpu_->max_batch()) {
    try {
      b.ticket = gpu_->submit(b.frames);
      if (b.ticket < 0) c_.gpu_busy_cpu++;  // both buffers busy: the CPU takes it, no waiting
    } catch (const std::exception& e) {
      gpu_fail(e.what());
      b.ticket = -1;
    }
  }
  if (b.ticket >= 0) {
    b.submitted_ns = t0;
    c_.gpu_batches++;
    c_.gpu_frames += n;
  } else {
    classifier_->classify(b.frames, b.verdicts);
    const uint64_t dt = now_ns() - t0;
    c_.classify_ns += dt;
    if (dt > c_.classify_ns_max) c_.classify_ns_max = dt;
  }
  c_.batches++;
  batches_.push_back(std::move(b));
  complete_batches(false);
}

void PacketPath::gpu_fail(const char* what) {
  if (!gpu_failed_) log::warn("GPU classifier failed ({}): the CPU classifier takes every batch from now on", what);
  gpu_failed_ = true;
  c_.gpu_errors++;
}

void PacketPath::on_gpu_done() {
  uint64_t n;
  [[maybe_unused]] ssize_t r = read(gpu_->completion_fd(), &n, sizeof n);
  complete_batches(false);
}

void PacketPath::complete_batches(bool drain) {
  while (!batches_.empty()) {
    Batch& b = batches_.front();
    if (b.ticket >= 0) {
      const bool must = drain || batches_.size() > cfg_.max_batches_in_flight;
      const bool ready = gpu_->ready(b.ticket);
      if (!ready && !must) break;
      const uint64_t t0 = now_ns();
      try {
        gpu_->collect(b.ticket, b.verdicts);
      } catch (const std::exception& e) {
        gpu_fail(e.what());
        classifier_->classify(b.frames, b.verdicts);  // the frames are still in the UMEM
      }
      const uint64_t t1 = now_ns();
      if (!ready) c_.gpu_wait_ns += t1 - t0;
      c_.gpu_ns += t1 - b.submitted_ns;
      b.ticket = -1;
    }
    act(b);
    batches_.pop_front();
  }
}

void PacketPath::act_one(const Pending& p, const classify::Verdict& v, uint8_t flow, uint64_t now) {
  classify::ParsedFrame parsed = classify::parse_frame(p.frame.data, p.frame.len);
  FlowDecision d;
  if (!parsed.ok()) {
    // XDP keyed it, this parser does not (an IP length that lies, say): the
    // policy for what cannot be parsed decides; never a verdict under a key.
    c_.unparsed++;
    d.action = parsed.status == classify::ParseStatus::kNotIp ? xdp_.config().non_ip_policy
                                                              : xdp_.config().unparsed_policy;
    d.deliver = d.action != GPO_ACT_DROP;
  } else {
    gpo_flow_verdict cached{};
    const gpo_flow_key key = classify::flow_key(parsed);
    const FlowTracker::Flow* known = flows_.find(key);
    if (p.datagram && !(known && known->decided) && bpf_map_lookup_elem(xdp_.flows_fd(), &key, &cached) == 0) {
      // A reassembled datagram of a flow decided before this agent knew it
      // (fragments always come here): as XDP decides its unfragmented packets.
      d.action = cached.action;
      d.rule_id = cached.rule_id;
      d.deliver = cached.action != GPO_ACT_DROP;
      d.already_decided = true;
    } else {
      d = inspector_.decide(p.frame.data, parsed, v, flow, now);
    }
    if (d.already_decided) c_.already_decided++;
    else if (!d.install) c_.uncacheable++;
    if (d.install) {
      try {
        if (xdp_.install_verdict(key, d.action, d.rule_id, d.flags)) c_.cache_installs++;
      } catch (const std::exception& e) {
        if (c_.cache_install_fail++ == 0) log::warn("flow verdict install failed: {}", e.what());
      }
    }
    if (!d.deliver && d.action != GPO_ACT_DROP) c_.stream_dropped++;
  }
  if (!d.deliver) {
    c_.dropped++;
    return;
  }
  c_.passed++;
  if (d.action == GPO_ACT_ALERT) {
    c_.alerts++;
    log::debug("alert: rule {} on {}", d.rule_id, p.sock->ifname());
  }
  if (p.datagram) {
    // The fragments as they came: the receiver reassembles what was inspected.
    for (auto& frag : p.datagram->fragments) {
      deliver(p.sock, frag.data(), uint32_t(frag.size()));
      c_.fragments_delivered++;
    }
    return;
  }
  // Frames from local senders on veth may carry an offload-only checksum.
  if (parsed.ok() && complete_partial_checksum(p.frame.data, p.frame.len, parsed)) c_.csum_completed++;
  deliver(p.sock, p.frame.data, p.frame.len);
}

void PacketPath::act(Batch& b) {
  const size_t n = b.pending.size();
  const uint64_t now = now_ns();
  // Verdict install first, delivery second: both follow batch order, so a
  // flow's packets leave the agent in the order they came.
  for (size_t i = 0; i < n; i++) {
    try {
      act_one(b.pending[i], b.verdicts[i], b.frames[i].flow, now);
    } catch (const std::exception& e) {
      // One packet's trouble must not end the agent (nor leak the batch's frames).
      if (c_.errors++ == 0) log::error("packet path: acting on a packet failed: {} (the packet is dropped)", e.what());
    }
  }
  if (xdp_.inline_mode()) flush_all_tx();

  // Every UMEM frame goes back to the fill ring of the socket it came from.
  std::vector<uint64_t> addrs;
  for (auto& s : socks_) {
    addrs.clear();
    for (auto& p : b.pending)
      if (p.sock == s.get() && p.frame.addr != kNoUmem) addrs.push_back(p.frame.addr);
    s->recycle(addrs);
  }
}

PacketPath::ReloadResult PacketPath::reload(std::shared_ptr<const RuleSnapshot> next, classify::Classifier& cpu,
                                            classify::AsyncClassifier* gpu) {
  // 1. What the old rules took in, they decide.
  if (!pending_.empty()) process_batch();
  complete_batches(true);
  xdp_.heartbeat();
  // 2. The cached verdicts the new rules could change go; their next packet
  //    is a miss, queued in the socket until step 3 is done.
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
    if (verdict_could_change(*rules_, *next, k, v)) {
      xdp_.remove_verdict(k);
      r.invalidated++;
    } else {
      r.kept++;
    }
  }
  // 3. The new rules.
  if (loop_ && gpu_) loop_->remove_fd(gpu_->completion_fd());
  rules_ = next;
  classifier_ = &cpu;
  gpu_ = gpu;
  gpu_failed_ = false;
  if (loop_ && gpu_) loop_->add_fd(gpu_->completion_fd(), [this] { on_gpu_done(); });
  inspector_.set_rules(next);
  flows_.clear_decisions();  // what the new rules say comes from them
  xdp_.heartbeat();
  c_.reloads++;
  c_.invalidated += r.invalidated;
  return r;
}

nlohmann::json PacketPath::to_json() const {
  nlohmann::json j;
  j["mode"] = xdp_.inline_mode() ? "inline" : "host";
  j["classifier"] = gpu_ ? fmt::format("{} (batches >= {} frames), {} below", gpu_->name(), cfg_.gpu_min_batch,
                                        classifier_->name())
                         : std::string(classifier_->name());
  nlohmann::json socks = nlohmann::json::array();
  uint64_t kernel_dropped = 0;
  for (auto& s : socks_) {
    auto k = s->kernel_stats();
    kernel_dropped += k.rx_dropped + k.rx_ring_full;  // fill_ring_empty is a cause of rx_dropped
    socks.push_back({{"ifname", s->ifname()},
                     {"queue", s->queue()},
                     {"zero_copy", s->zero_copy()},
                     {"rx_dropped", k.rx_dropped},
                     {"rx_ring_full", k.rx_ring_full},
                     {"fill_ring_empty", k.fill_ring_empty},
                     {"rx_invalid", k.rx_invalid},
                     {"tx_invalid", k.tx_invalid}});
  }
  j["sockets"] = socks;
  // Misses that reached no verdict: the socket's rings overflowed (agent too slow).
  j["socket_drops"] = kernel_dropped;
  j["agent"] = {{"rx", c_.rx},
                {"rx_bytes", c_.rx_bytes},
                {"passed", c_.passed},
                {"dropped", c_.dropped},
                {"alerts", c_.alerts},
                {"reinjected", c_.reinjected},
                {"reinject_fail", c_.reinject_fail},
                {"tx", c_.tx},
                {"tx_fail", c_.tx_fail},
                {"cache_installs", c_.cache_installs},
                {"cache_install_fail", c_.cache_install_fail},
                {"uncacheable", c_.uncacheable},
                {"already_decided", c_.already_decided},
                {"stream_dropped", c_.stream_dropped},
                {"unparsed", c_.unparsed},
                {"fragments_delivered", c_.fragments_delivered},
                {"csum_completed", c_.csum_completed},
                {"reloads", c_.reloads},
                {"invalidated", c_.invalidated},
                {"tx_retries", c_.tx_retries},
                {"errors", c_.errors},
                {"batches", c_.batches},
                {"classify_ns_total", c_.classify_ns},
                {"classify_ns_max", c_.classify_ns_max},
                {"gpu_batches", c_.gpu_batches},
                {"gpu_frames", c_.gpu_frames},
                {"gpu_busy_cpu", c_.gpu_busy_cpu},
                {"gpu_ns_total", c_.gpu_ns},
                {"gpu_wait_ns_total", c_.gpu_wait_ns},
                {"gpu_errors", c_.gpu_errors}};
  const auto& ic = inspector_.counters();
  j["flows"] = {{"tracked", flows_.size()}, {"max", flows_.config().max_flows}};
  j["inspection"] = {{"flows", inspector_.flows()},
                     {"bytes_held", inspector_.bytes_held()},
                     {"depth", inspector_.config().depth},
                     {"depth_policy", inspector_.config().depth_policy == DepthPolicy::drop ? "drop" : "keep"},
                     {"started", ic.started},
                     {"midstream", ic.midstream},
                     {"in_order", ic.in_order},
                     {"out_of_order", ic.out_of_order},
                     {"retransmits", ic.retransmits},
                     {"conflicts", ic.conflicts},
                     {"ooo_full", ic.ooo_full},
                     {"before_start", ic.before_start},
                     {"depth_reached", ic.depth},
                     {"memcap_reached", ic.memcap},
                     {"evicted", ic.evicted},
                     {"expired", ic.expired},
                     {"decided", ic.decided}};
  const auto& rc = reasm_.counters();
  j["reassembly"] = {{"datagrams_held", reasm_.datagrams_held()},
                     {"bytes_held", reasm_.bytes_held()},
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
