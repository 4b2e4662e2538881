// The spotting component (DESIGN.md path 1): loads bpf/spot.bpf.c, writes the
// per-op thresholds, attaches uprobes to every libcrypto/libzstd/zlib file it
// finds and kprobes where the kernel has them, and drains the ring buffer
// into an Aggregator. `run` and `top` compose it with the event loop:
//
//   auto spotter = gpo::spot::Spotter::attach(opts);   // logs what it attached
//   spotter->register_with(loop);                       // ring buffer fd + 1 s tick
#pragma once
#include <array>
#include <chrono>
#include <functional>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "spot.h"
#include "spot/aggregate.h"
#include "spot/libs.h"
#include "spot/ops.h"

struct spot;         // the generated skeleton (spot.skel.h)
struct ring_buffer;  // libbpf
struct bpf_link;

namespace gpo::loop { class EventLoop; }

namespace gpo::spot {

struct SpotError : std::runtime_error {
  enum class Kind { failure, privilege, unsupported };
  Kind kind;
  SpotError(Kind k, const std::string& msg) : std::runtime_error(msg), kind(k) {}
};

struct SpotOptions {
  Thresholds thresholds = default_thresholds();
  DiscoverOptions libraries;
  bool kernel = true;       // try kprobes on kernel crypto/zstd
  uint32_t ignore_tgid = 0; // a process whose calls are never counted (the agent: its CPU backend)
  // Where to pin spot_events/spot_hist/spot_cfg/spot_stats; "" = do not pin.
  // Only the daemon pins (tests and `top` use private maps).
  std::string pin_dir;
  // Every rescan period, look for library files not attached yet (a container
  // started with its own libcrypto). 0 = never.
  std::chrono::milliseconds rescan{30000};
  // Where register_with's tick writes the snapshot JSON `top` reads; "" = none.
  std::string snapshot_path;
};

// What attach() did, for the log and for `top --json`.
struct AttachReport {
  std::vector<std::string> attached;  // "uprobe libcrypto /lib/.../libcrypto.so.3:EVP_EncryptUpdate"
  std::vector<std::string> skipped;   // "... : symbol not found" (never fatal)
  int uprobes = 0;
  int kprobes = 0;
  bool kprobes_available = false;
  std::string kernel_note;            // one line: what kernel-side spotting does on this machine
  nlohmann::json to_json() const;
};

// Is there a kprobe PMU or a tracefs kprobe_events file? (Feature probe, not a version check.)
bool kprobes_available();

class Spotter {
 public:
  // Loads, configures, pins (when asked) and attaches. Throws SpotError with a
  // one-line message when the BPF object cannot be loaded at all; a missing
  // library, symbol or kernel feature is reported and skipped.
  static std::unique_ptr<Spotter> attach(const SpotOptions& opts);
  ~Spotter();  // detaches, unpins
  Spotter(const Spotter&) = delete;
  Spotter& operator=(const Spotter&) = delete;

  const AttachReport& report() const { return report_; }
  const SpotOptions& options() const { return opts_; }

  // Drains the ring buffer whenever it has data, ticks the aggregate every
  // tick (and writes the snapshot), and rescans for libraries.
  void register_with(loop::EventLoop& loop, std::chrono::milliseconds tick = std::chrono::milliseconds(1000));

  // For tests and tools without an event loop: waits up to timeout_ms for
  // events and consumes them. Returns how many were consumed.
  int poll(int timeout_ms);
  int ring_fd() const;

  // Called for every descriptor, after it is aggregated.
  void on_event(std::function<void(const gpo_spot_event&)> cb) { on_event_ = std::move(cb); }

  Aggregator& aggregate() { return agg_; }
  const Aggregator& aggregate() const { return agg_; }

  // The in-kernel histograms, summed over CPUs, indexed by op.
  std::array<gpo_spot_hist, kOps> read_hist() const;
  gpo_spot_stats read_stats() const;

  // Per BPF program: runs and total run time, while kernel.bpf_stats_enabled is on
  // (bpf_enable_stats): what the programs themselves cost, without the trap.
  struct ProgStats { std::string name; uint64_t run_cnt = 0; uint64_t run_time_ns = 0; };
  std::vector<ProgStats> prog_stats() const;

  // Attaches uprobes to library files not seen before. Returns how many files were new.
  int rescan();

  // {"agent_pid", "attach", "stats", "hist", "processes", "thresholds"}: what `top` reads.
  nlohmann::json snapshot_json() const;
  // Writes snapshot_json() to path atomically (tmp + rename).
  static void write_snapshot(const std::string& path, const nlohmann::json& j);

 private:
  Spotter() = default;
  void attach_library(const Library& lib);
  void attach_kernel();
  void pin();
  static int handle_event(void* ctx, void* data, size_t size);

  SpotOptions opts_;
  AttachReport report_;
  struct spot* skel_ = nullptr;
  struct ring_buffer* rb_ = nullptr;
  std::vector<bpf_link*> links_;
  std::vector<std::pair<dev_t, ino_t>> attached_files_;
  std::vector<std::string> pinned_;
  Aggregator agg_;
  std::function<void(const gpo_spot_event&)> on_event_;
};

// Reads the histograms of a running agent's pinned spot_hist map (dir/spot_hist).
// Returns false when nothing is pinned there.
bool read_pinned_hist(const std::string& pin_dir, std::array<gpo_spot_hist, kOps>& out);

// hist JSON for snapshot and `top --json`: {op: {calls, bytes, size_log2_hist}}, ops with calls only.
nlohmann::json hist_to_json(const std::array<gpo_spot_hist, kOps>& h);

}  // namespace gpo::spot
