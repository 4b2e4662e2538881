#include "ipc/doorbell_probe.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <pthread.h>
#include <sched.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <future>
#include <utility>

#include "doorbell.skel.h"
#include "ipc/slab_protocol.h"
#include "util/sched_attr.h"
#include "loop/event_loop.h"

namespace gpo::ipc {

namespace {

constexpr std::pair<LaneSched, std::string_view> kLaneSchedNames[] = {
    {LaneSched::fifo, "fifo"}, {LaneSched::short_slice, "short-slice"}, {LaneSched::normal, "normal"}};

// Schedules the calling thread as the first of fifo, short_slice the kernel
// grants, from `first` on; returns what it got. A lane only claims,
// validates and hands over: a few microseconds a ring, each paid for by a
// ring of a client on that CPU (and a FIFO lane is bounded by real-time
// throttling regardless).
LaneSched schedule_lane(LaneSched first) {
  if (first == LaneSched::fifo) {
    sched_param sp{};
    sp.sched_priority = 1;
    if (pthread_setschedparam(pthread_self(), SCHED_FIFO, &sp) == 0) return LaneSched::fifo;
  }
  if (first != LaneSched::normal) {
    util::SchedAttr a;
    a.policy = SCHED_OTHER;
    a.nice = -20;
    a.runtime = 100'000;  // the slice, in ns: EEVDF's floor
    if (syscall(SYS_sched_setattr, 0, &a, 0) == 0) return LaneSched::short_slice;
  }
  return LaneSched::normal;
}

}  // namespace

const char* lane_sched_name(LaneSched s) {
  for (const auto& [v, name] : kLaneSchedNames)
    if (v == s) return name.data();
  return "?";
}

std::optional<LaneSched> parse_lane_sched(std::string_view s) {
  for (const auto& [v, name] : kLaneSchedNames)
    if (name == s) return v;
  return std::nullopt;
}

// One CPU's ring buffer and the thread, pinned to that CPU, that drains it.
struct DoorbellProbe::Lane {
  DoorbellProbe* probe = nullptr;
  int cpu = -1;
  int ring_fd = -1;   // the BPF ring buffer map, an entry of doorbell_cpu_rings once published
  int stop_fd = -1;   // eventfd: drain what is left and return
  int epoll_fd = -1;  // the ring's and stop_fd
  ring_buffer* rb = nullptr;
  std::thread thread;
  LaneSched sched = LaneSched::normal;  // what the thread got, set before it drains
  void stop() {  // the thread drains what the ring holds and returns
    const uint64_t one = 1;
    const ssize_t w = write(stop_fd, &one, sizeof(one));
    (void)w;  // an eventfd write fails only past 2^64-1
    thread.join();
  }
  ~Lane() {
    if (rb) ring_buffer__free(rb);
    for (int fd : {ring_fd, stop_fd, epoll_fd})
      if (fd >= 0) close(fd);
  }
};

std::unique_ptr<DoorbellProbe> DoorbellProbe::load(Handler h, std::string* why) {
  std::unique_ptr<DoorbellProbe> p(new DoorbellProbe());
  p->handler_ = std::move(h);
  p->skel_ = doorbell__open();
  if (!p->skel_) {
    *why = std::string("opening bpf/doorbell.bpf.c failed: ") + std::strerror(errno);
    return nullptr;
  }
  const int cpus = libbpf_num_possible_cpus();
  if (cpus > 0) bpf_map__set_max_entries(p->skel_->maps.doorbell_cpu_rings, uint32_t(cpus));
  if (doorbell__load(p->skel_) != 0) {
    *why = std::string("loading bpf/doorbell.bpf.c failed: ") + std::strerror(errno);
    return nullptr;
  }
  p->rb_ = ring_buffer__new(bpf_map__fd(p->skel_->maps.doorbell_events), &DoorbellProbe::on_event, p.get(), nullptr);
  if (!p->rb_) {
    *why = std::string("doorbell ring buffer: ") + std::strerror(errno);
    return nullptr;
  }
  return p;
}

DoorbellProbe::~DoorbellProbe() {
  stop_cpu_lanes();
  for (auto& [k, l] : links_) {
    bpf_link__destroy(l.link);
    bpf_link__destroy(l.forked);
  }
  if (rb_) ring_buffer__free(rb_);
  if (skel_) doorbell__destroy(skel_);
}

int DoorbellProbe::on_event(void* ctx, void* data, size_t len) {
  auto* self = static_cast<DoorbellProbe*>(ctx);
  if (len >= sizeof(gpo_doorbell_event)) self->handler_(*static_cast<const gpo_doorbell_event*>(data), false);
  return 0;
}

int DoorbellProbe::on_lane_event(void* ctx, void* data, size_t len) {
  // The program picks a lane's ring by the CPU it fired on, and the lane's
  // thread was pinned to that CPU before the ring was published.
  auto* lane = static_cast<Lane*>(ctx);
  if (len >= sizeof(gpo_doorbell_event)) lane->probe->handler_(*static_cast<const gpo_doorbell_event*>(data), true);
  return 0;
}

void DoorbellProbe::drain(Lane& l) {
  // Named for `top -H` and `ps -L`: gpo-bell/CPU.
  char name[16];
  std::snprintf(name, sizeof name, "gpo-bell/%d", l.cpu);
  pthread_setname_np(pthread_self(), name);
  epoll_event ev[2];
  for (;;) {
    const int n = epoll_wait(l.epoll_fd, ev, 2, -1);
    if (n < 0 && errno != EINTR) return;
    bool stop = false;
    for (int i = 0; i < n; ++i) stop |= ev[i].data.fd == l.stop_fd;
    ring_buffer__consume(l.rb);
    if (stop) return;  // what was in the ring went out above
  }
}

size_t DoorbellProbe::start_cpu_lanes(const std::vector<int32_t>& cpus, LaneSched first, std::string* why) {
  const int outer = bpf_map__fd(skel_->maps.doorbell_cpu_rings);
  const uint32_t slots = bpf_map__max_entries(skel_->maps.doorbell_cpu_rings);
  auto fail = [&](const char* what) {
    *why = std::string(what) + ": " + std::strerror(errno);
    return lanes_.size();
  };
  for (int cpu : cpus) {
    if (cpu < 0 || uint32_t(cpu) >= slots) continue;
    auto l = std::make_unique<Lane>();
    l->probe = this;
    l->cpu = cpu;
    l->ring_fd = bpf_map_create(BPF_MAP_TYPE_RINGBUF, "gpo_db_cpu", 0, 0, GPO_DOORBELL_CPU_RING_BYTES, nullptr);
    if (l->ring_fd < 0) return fail("per-CPU doorbell ring");
    l->rb = ring_buffer__new(l->ring_fd, &DoorbellProbe::on_lane_event, l.get(), nullptr);
    if (!l->rb) return fail("per-CPU doorbell ring buffer");
    l->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    l->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    if (l->stop_fd < 0 || l->epoll_fd < 0) return fail("per-CPU doorbell thread");
    for (int fd : {ring_buffer__epoll_fd(l->rb), l->stop_fd}) {
      epoll_event ev{};
      ev.events = EPOLLIN;
      ev.data.fd = fd;
      if (epoll_ctl(l->epoll_fd, EPOLL_CTL_ADD, fd, &ev) != 0) return fail("per-CPU doorbell thread");
    }
    std::promise<LaneSched> got;
    auto scheduled = got.get_future();
    l->thread = std::thread([this, lane = l.get(), first, got = std::move(got)]() mutable {
      got.set_value(schedule_lane(first));  // sched_setattr acts on the calling thread
      drain(*lane);
    });
    l->sched = scheduled.get();
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    // Pinned, then published: the BPF program sends a CPU's rings to its
    // lane only once a thread on that CPU drains it.
    const int pin = pthread_setaffinity_np(l->thread.native_handle(), sizeof(set), &set);
    const uint32_t key = uint32_t(cpu);
    if (pin != 0 || bpf_map_update_elem(outer, &key, &l->ring_fd, BPF_ANY) != 0) {
      if (pin != 0) errno = pin;
      const size_t n = fail(pin != 0 ? "pinning a doorbell thread" : "publishing a per-CPU doorbell ring");
      l->stop();
      return n;
    }
    lanes_.push_back(std::move(l));
  }
  return lanes_.size();
}

size_t DoorbellProbe::lanes_scheduled(LaneSched s) const {
  size_t n = 0;
  for (const auto& l : lanes_) n += l->sched == s;
  return n;
}

std::string DoorbellProbe::lanes_by_sched() const {
  std::string out;
  for (const auto& [s, name] : kLaneSchedNames)
    if (const size_t n = lanes_scheduled(s)) {
      if (!out.empty()) out += ", ";
      out += std::to_string(n) + " " + std::string(name);
    }
  return out;
}

void DoorbellProbe::stop_cpu_lanes() {
  if (lanes_.empty()) return;
  const int outer = bpf_map__fd(skel_->maps.doorbell_cpu_rings);
  // First every CPU back to the shared ring, then each thread drains what its
  // ring still holds and returns.
  for (auto& l : lanes_) {
    const uint32_t key = uint32_t(l->cpu);
    bpf_map_delete_elem(outer, &key);
  }
  for (auto& l : lanes_) l->stop();
  lanes_.clear();
}

bool DoorbellProbe::attach(int fd, const std::string& key, std::string* why) {
  if (auto it = links_.find(key); it != links_.end()) {
    it->second.users++;
    return true;
  }
  if (auto it = failed_.find(key); it != failed_.end()) {
    *why = it->second;
    return false;
  }
  // A bound on distinct files, so clients cannot make the agent attach without end.
  if (links_.size() >= kMaxFiles) {
    *why = "too many client library files attached (" + std::to_string(kMaxFiles) + ")";
    return false;
  }
  // The file the caller opened, whatever its name: libbpf reads its ELF and
  // the kernel resolves the probe's inode through this fd's magic link.
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  LIBBPF_OPTS(bpf_uprobe_opts, uo, .func_name = GPO_DOORBELL_SYMBOL);
  bpf_link* link = bpf_program__attach_uprobe_opts(skel_->progs.gpo_doorbell_probe, -1, path.c_str(), 0, &uo);
  if (!link) {
    *why = std::string("uprobe on " GPO_DOORBELL_SYMBOL " failed: ") + std::strerror(errno);
    if (failed_.size() >= 256) failed_.erase(failed_.begin());
    failed_[key] = *why;
    return false;
  }
  // The forked children's doorbell. A library without it (an older build)
  // rings gpo_doorbell from every process, which is safe there: its
  // doorbell does not begin with the 5-byte nop a kernel optimizes.
  LIBBPF_OPTS(bpf_uprobe_opts, fo, .func_name = GPO_DOORBELL_FORKED_SYMBOL);
  bpf_link* forked = bpf_program__attach_uprobe_opts(skel_->progs.gpo_doorbell_probe, -1, path.c_str(), 0, &fo);
  links_[key] = {link, forked, 1};
  attached_ = links_.size();
  return true;
}

void DoorbellProbe::release(const std::string& key) {
  auto it = links_.find(key);
  if (it == links_.end() || --it->second.users > 0) return;
  bpf_link__destroy(it->second.link);
  bpf_link__destroy(it->second.forked);
  links_.erase(it);
  attached_ = links_.size();
}

void DoorbellProbe::register_with(loop::EventLoop& loop) {
  loop.add_fd(ring_buffer__epoll_fd(rb_), [this] { ring_buffer__consume(rb_); });
}

void DoorbellProbe::unregister(loop::EventLoop& loop) { loop.remove_fd(ring_buffer__epoll_fd(rb_)); }

uint64_t DoorbellProbe::dropped() const {
  uint32_t zero = 0;
  uint64_t v = 0;
  bpf_map__lookup_elem(skel_->maps.doorbell_dropped, &zero, sizeof(zero), &v, sizeof(v), 0);
  return v;
}

}  // namespace gpo::ipc
