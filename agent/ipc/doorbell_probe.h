// The uprobe doorbell: loads bpf/doorbell.bpf.c, attaches its uprobe to the
// gpo_doorbell symbol of each client library file a client registers with,
// and hands ring-buffer descriptors (kernel-stamped tgid) to a callback.
// Needs root (CAP_BPF + CAP_PERFMON); without it the socket doorbell serves.
//
// Descriptors arrive on the event loop (the shared ring) or, once
// start_cpu_lanes() ran (by default; not with --no-offload-cpu-doorbells), on
// a thread pinned to the CPU the client rang on: each CPU the agent may use
// gets its own ring and thread, so a ring wakes no thread on another CPU. The
// threads are scheduled to preempt whatever runs on their CPU (LaneSched), so
// that a ring is claimed at once even while a worker runs there
// (docs/offload.md, "Doorbell threads").
#pragma once
#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "doorbell.h"  // bpf/doorbell.h

struct doorbell;
struct ring_buffer;
struct bpf_link;

namespace gpo::loop {
class EventLoop;
}

namespace gpo::ipc {

// How a CPU lane's thread is scheduled. A lane must run the moment its
// CPU's client rings, not after the slice of a worker running another
// client's job there.
// LaneSched{} is fifo: try them all.
enum class LaneSched : uint8_t {
  fifo = 0,     // SCHED_FIFO, priority 1 (needs CAP_SYS_NICE and, under
                // cgroup v2 with real-time group scheduling, the root cgroup)
  short_slice,  // SCHED_OTHER, nice -20 and a 0.1 ms slice: EEVDF lets a
                // woken task with a shorter slice preempt (Linux 6.12+)
  normal,       // as any thread
};
const char* lane_sched_name(LaneSched s);                // fifo, short-slice, normal
std::optional<LaneSched> parse_lane_sched(std::string_view s);  // those names

class DoorbellProbe {
 public:
  // on_its_cpu: a CPU lane's thread, pinned to the CPU the client rang on,
  // runs the handler. Lanes call it concurrently with the loop.
  using Handler = std::function<void(const gpo_doorbell_event&, bool on_its_cpu)>;
  // Loads the BPF object; returns null with *why when BPF is not usable here.
  static std::unique_ptr<DoorbellProbe> load(Handler h, std::string* why);
  ~DoorbellProbe();
  // Attaches the uprobe to gpo_doorbell (and gpo_doorbell_forked) in the
  // library file open at fd (O_PATH will do), whose identity is key
  // ("dev:ino"): once per file, counted, so that the uprobe
  // goes when the last user releases it. The caller has checked the file
  // (who owns it, who maps it): its ELF is parsed here. False with *why when
  // the file has no such symbol, attach fails (remembered: a file is parsed
  // at most once), or kMaxFiles files are attached.
  bool attach(int fd, const std::string& key, std::string* why);
  void release(const std::string& key);
  void register_with(loop::EventLoop& loop);
  void unregister(loop::EventLoop& loop);
  // A ring and a pinned thread for each CPU in cpus (the agent's affinity
  // mask); the others keep the shared ring. Returns how many started, with
  // *why when not all did (the shared ring serves those CPUs). Each thread
  // gets the first of fifo, short_slice that the kernel grants, not before
  // `first` (normal: none is tried).
  size_t start_cpu_lanes(const std::vector<int32_t>& cpus, LaneSched first, std::string* why);
  void stop_cpu_lanes();  // their CPUs go back to the shared ring; joins the threads
  size_t cpu_lanes() const { return lanes_.size(); }
  size_t lanes_scheduled(LaneSched s) const;  // lanes whose thread got s
  std::string lanes_by_sched() const;          // "16 fifo", "12 short-slice, 4 normal"...
  size_t attached() const { return attached_.load(); }  // any thread (status)
  uint64_t dropped() const;  // descriptors lost to a full ring buffer

  static constexpr size_t kMaxFiles = 64;

 private:
  DoorbellProbe() = default;
  struct Lane;
  static int on_event(void* ctx, void* data, size_t len);
  static int on_lane_event(void* ctx, void* data, size_t len);
  void drain(Lane& l);  // a lane's thread
  ::doorbell* skel_ = nullptr;
  ring_buffer* rb_ = nullptr;
  Handler handler_;
  struct Link {
    bpf_link* link = nullptr;    // on gpo_doorbell
    bpf_link* forked = nullptr;  // on gpo_doorbell_forked, when the file has it
    uint32_t users = 0;
  };
  std::map<std::string, Link> links_;         // by "dev:inode" of the library file
  std::map<std::string, std::string> failed_;  // files that could not be attached, and why (bounded)
  std::atomic<size_t> attached_{0};
  std::vector<std::unique_ptr<Lane>> lanes_;
};

}  // namespace gpo::ipc
