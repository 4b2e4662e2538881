// The probe side of spotting: bpf/spot.bpf.c loaded once, its maps, its ring
// buffer, and attachments of its programs to library files (uprobes) and
// kernel functions (kprobes), either for every process (probe mode) or for one
// process being measured (a window of sample mode).
//
// Each library file gets one uprobe_multi link for all its entry points where
// the kernel has them (detached in one step), else one perf link per entry
// point. Entry points are probed where the kernel emulates the instruction
// (probe_site.h), and a wrapper that only tail-calls another probed entry
// point is left alone (crc32 -> crc32_z).
#pragma once
#include <sys/types.h>

#include <array>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include "spot.h"
#include "spot/libs.h"
#include "spot/ops.h"

struct spot;         // the generated skeleton (spot.skel.h)
struct ring_buffer;  // libbpf
struct bpf_link;

namespace gpo::spot {

struct SpotError : std::runtime_error {
  enum class Kind { failure, privilege, unsupported };
  Kind kind;
  SpotError(Kind k, const std::string& msg) : std::runtime_error(msg), kind(k) {}
};

// Is there a kprobe PMU or a tracefs kprobe_events file? (Feature probe, not a version check.)
bool kprobes_available();

// Where one entry point of one library file is probed.
struct ResolvedEntry {
  uint32_t entry = 0;        // enum gpo_spot_entry
  std::string symbol;
  uint64_t offset = 0;       // file offset of the probed instruction
  uint64_t skip = 0;         // bytes past the function's first instruction
  bool emulated = false;     // one trap per hit (else single-stepped: two)
  std::string insn;          // the probed instruction's kind
  std::string not_probed;    // why not, when it is not ("symbol not found", "tail-calls crc32_z")
};

// The entry points of a library file, resolved from its symbols and code.
// at_entry: keep every probe on the function's first instruction.
std::vector<ResolvedEntry> resolve_entries(const Library& lib, bool at_entry = false);

// A set of probes attached together and detached together (destructor).
class ProbeAttachment {
 public:
  ~ProbeAttachment();
  int probes() const { return probes_; }
  // How long the last detach took (after the destructor ran; for logs and tests).
  static std::chrono::microseconds last_detach();

 private:
  friend class ProbeSet;
  ProbeAttachment() = default;
  std::vector<bpf_link*> links_;
  int multi_fd_ = -1;
  int probes_ = 0;
};

struct ProbeSetOptions {
  Thresholds thresholds = default_thresholds();
  uint32_t ignore_tgid = 0;
  bool watch_only = false;  // count only the processes given to watch()
  bool kernel = true;       // load the kprobe programs (when the kernel has kprobes)
  std::string pin_dir;      // "" = do not pin
  bool at_entry = false;    // probe first instructions as they are (gpuoffload-bench spot: what moving saves)
};

class ProbeSet {
 public:
  // Throws SpotError when the programs cannot be loaded.
  static std::unique_ptr<ProbeSet> load(const ProbeSetOptions& opts);
  ~ProbeSet();
  ProbeSet(const ProbeSet&) = delete;
  ProbeSet& operator=(const ProbeSet&) = delete;

  bool multi() const { return multi_; }  // uprobe_multi links in use
  bool kernel_loaded() const { return kernel_loaded_; }

  // The entry points of lib whose op is in ops (empty: all), for process pid
  // (0: every process). One line per probe in attached / skipped.
  // symbols: only these entry points (gpuoffload-bench spot), when given.
  std::unique_ptr<ProbeAttachment> attach_library(const Library& lib, const std::vector<uint32_t>& ops, pid_t pid,
                                                  std::vector<std::string>& attached, std::vector<std::string>& skipped,
                                                  const std::vector<std::string>* symbols = nullptr);
  // The kprobes whose op is in ops (empty: all); kprobes have no pid filter.
  std::unique_ptr<ProbeAttachment> attach_kprobes(const std::vector<uint32_t>& ops, std::vector<std::string>& attached,
                                                  std::vector<std::string>& skipped);

  // Processes measured in watch_only mode, with their call budget.
  void watch(uint32_t tgid, uint64_t max_calls);
  uint64_t unwatch(uint32_t tgid);  // returns the calls seen

  // Ring buffer of descriptors (and window-full notices).
  void on_event(std::function<void(const gpo_spot_event&)> cb) { on_event_ = std::move(cb); }
  int ring_fd() const;
  int poll(int timeout_ms);
  int consume();

  std::array<gpo_spot_hist, kOps> read_hist() const;
  gpo_spot_stats read_stats() const;
  // Per (tgid, op) histograms (every counted call of the process).
  std::map<std::pair<uint32_t, uint32_t>, gpo_spot_hist> read_process_hist() const;
  void forget_process(uint32_t tgid);

  struct ProgStats { std::string name; uint64_t run_cnt = 0; uint64_t run_time_ns = 0; };
  std::vector<ProgStats> prog_stats() const;

 private:
  ProbeSet() = default;
  static int handle_event(void* ctx, void* data, size_t size);

  struct spot* skel_ = nullptr;
  struct ring_buffer* rb_ = nullptr;
  bool multi_ = false;
  bool kernel_loaded_ = false;
  bool at_entry_ = false;
  std::vector<std::string> pinned_;
  std::map<std::pair<dev_t, ino_t>, std::vector<ResolvedEntry>> resolved_;  // per library file
  std::function<void(const gpo_spot_event&)> on_event_;
};

// Reads the histograms of a running agent's pinned spot_hist map (dir/spot_hist).
bool read_pinned_hist(const std::string& pin_dir, std::array<gpo_spot_hist, kOps>& out);

}  // namespace gpo::spot
