// The spotting component (DESIGN.md path 1), in one of three modes:
//
//   sample (default)  sampler.h: CPU samples attributed to ops, per process, at
//                     no per-call cost. A process hot in an op gets a probe
//                     window (windows.h): the op's entry points probed for that
//                     process only (pid-filtered uprobes, or kprobes for kernel
//                     work), a bounded number of calls, then detached.
//   probe             probes.h: every entry point of every spotted library, for
//                     every process, all the time (every call seen, every call
//                     pays a trap).
//   off               nothing.
//
// `run` and `top` compose it with the event loop:
//
//   auto spotter = gpo::spot::Spotter::attach(opts);   // logs what it attached
//   spotter->register_with(loop);                       // ring buffer fd + 1 s tick
#pragma once
#include <array>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "spot.h"
#include "spot/aggregate.h"
#include "spot/libs.h"
#include "spot/ops.h"
#include "spot/probes.h"
#include "spot/sampler.h"
#include "spot/windows.h"

namespace gpo::loop { class EventLoop; }

namespace gpo::spot {

enum class Mode { off, sample, probe };
std::string_view mode_name(Mode m);
std::optional<Mode> mode_from_name(std::string_view s);

struct SpotOptions {
  Mode mode = Mode::sample;
  Thresholds thresholds = default_thresholds();
  DiscoverOptions libraries;
  bool kernel = true;       // kernel crypto/zstd: kprobes (probe mode, windows), kernel samples
  uint32_t ignore_tgid = 0; // a process whose calls are never counted (the agent: its CPU backend)
  // Where to pin the probe maps; "" = do not pin. Only the daemon pins.
  std::string pin_dir;
  // Every rescan period, look for library files not seen yet (a container
  // started with its own libcrypto). 0 = never.
  std::chrono::milliseconds rescan{30000};
  // Where register_with's tick writes the snapshot JSON `top` reads; "" = none.
  std::string snapshot_path;
  // Sample mode.
  uint32_t sample_hz = 97;
  WindowConfig windows;
  bool auto_windows = true;  // open windows on hot processes (tests may open them by hand)
};

// What attach() did, for the log and for `top --json`.
struct AttachReport {
  std::string mode;
  std::vector<std::string> attached;  // "uprobe libcrypto /lib/.../libcrypto.so.3:EVP_EncryptUpdate (push, emulated)"
  std::vector<std::string> skipped;   // "... : symbol not found" (never fatal)
  int uprobes = 0;                    // attached now (windows included)
  int kprobes = 0;
  bool kprobes_available = false;
  bool uprobe_multi = false;
  std::string kernel_note;            // one line: what kernel-side spotting does on this machine
  std::string sampler;                // "cpu-clock at 97 Hz on 2 CPUs, 3 library files"
  nlohmann::json to_json() const;
};

class Spotter {
 public:
  // Loads and attaches what the mode needs. Throws SpotError with a one-line
  // message when the BPF objects cannot be loaded at all; a missing library,
  // symbol or kernel feature is reported and skipped.
  static std::unique_ptr<Spotter> attach(const SpotOptions& opts);
  ~Spotter();  // detaches, unpins
  Spotter(const Spotter&) = delete;
  Spotter& operator=(const Spotter&) = delete;

  const AttachReport& report() const { return report_; }
  const SpotOptions& options() const { return opts_; }
  Mode mode() const { return opts_.mode; }

  // Drains the ring buffer whenever it has data; every tick reads the samples,
  // opens and closes windows, updates the aggregate and writes the snapshot;
  // rescans for libraries.
  void register_with(loop::EventLoop& loop, std::chrono::milliseconds tick = std::chrono::milliseconds(1000));
  // What register_with's timer does, for tools without an event loop.
  void tick();

  // For tests and tools without an event loop: waits up to timeout_ms for
  // events and consumes them. Returns how many were consumed.
  int poll(int timeout_ms);
  int ring_fd() const;

  // Called for every descriptor, after it is aggregated.
  void on_event(std::function<void(const gpo_spot_event&)> cb) { on_event_ = std::move(cb); }

  Aggregator& aggregate() { return agg_; }
  const Aggregator& aggregate() const { return agg_; }

  // Sample mode: a probe window on process tgid for a sampled op, now (what
  // the tick does for hot processes). Returns false, why in err, when nothing
  // could be attached (the process maps no library of the op, or it is gone).
  bool open_window(uint32_t tgid, uint32_t sample_op, std::string& err);
  void close_window(uint32_t tgid, const std::string& why);
  int open_windows() const { return int(windows_.size()); }
  uint64_t windows_opened() const { return windows_opened_; }
  // Probes attached right now (probe mode: all; sample mode: the windows').
  int probes_attached() const;

  // The in-kernel histograms, summed over CPUs, indexed by op.
  std::array<gpo_spot_hist, kOps> read_hist() const;
  gpo_spot_stats read_stats() const;
  std::vector<ProbeSet::ProgStats> prog_stats() const;
  const Sampler* sampler() const { return sampler_.get(); }

  // Attaches to library files not seen before. Returns how many were new.
  int rescan();

  // {"agent_pid", "mode", "attach", "stats", "hist", "processes", "thresholds", ...}: what `top` reads.
  nlohmann::json snapshot_json() const;
  // Writes snapshot_json() to path atomically (tmp + rename).
  static void write_snapshot(const std::string& path, const nlohmann::json& j);

 private:
  Spotter() = default;
  void add_library(const Library& lib);
  void on_ring_event(const gpo_spot_event& e);
  void after_consume();
  void update_windows(uint64_t now);

  struct Window {
    uint32_t sample_op;
    uint64_t started_ns;
    std::vector<std::unique_ptr<ProbeAttachment>> attachments;
    int probes = 0;
  };

  SpotOptions opts_;
  AttachReport report_;
  std::unique_ptr<ProbeSet> probes_;
  std::unique_ptr<Sampler> sampler_;
  std::unique_ptr<WindowPolicy> policy_;
  std::vector<std::unique_ptr<ProbeAttachment>> always_;  // probe mode
  std::map<uint32_t, Window> windows_;                     // sample mode, by tgid
  std::vector<std::pair<uint32_t, std::string>> to_close_;
  uint64_t windows_opened_ = 0;
  std::vector<std::pair<dev_t, ino_t>> files_;
  Aggregator agg_;
  std::function<void(const gpo_spot_event&)> on_event_;
};

// hist JSON for snapshot and `top --json`: {op: {calls, bytes, size_log2_hist}}, ops with calls only.
nlohmann::json hist_to_json(const std::array<gpo_spot_hist, kOps>& h);

}  // namespace gpo::spot
