// The sampling side of spotting: bpf/sample.bpf.c on one perf event per
// online CPU (hardware cycles, else the software CPU clock: VMs without a
// PMU), at a low rate (default 97 Hz per CPU). Each sample is attributed in
// the kernel to (process, op) through range tables the agent builds from the
// spotted libraries' symbols and /proc/kallsyms (sample.h). A process pays
// nothing per call.
#pragma once
#include <sys/types.h>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "sample.h"
#include "spot/elf_symbols.h"
#include "spot/libs.h"
#include "spot/ops.h"

struct sample;  // the generated skeleton (sample.skel.h)
struct bpf_link;

namespace gpo::spot {

// One range of a table, as built in user space (sorted, merged) before it goes to the map.
struct SampleRange {
  uint64_t start, end;
  uint32_t op;
};

// The ranges of a library's functions: classified symbols (classify_function),
// adjacent ranges of one op merged. Functions without a size end at the next symbol.
std::vector<SampleRange> library_ranges(LibKind kind, const std::vector<FuncSymbol>& syms);
// The ranges of the kernel's functions from /proc/kallsyms text (text symbols,
// each ending where the next begins). Empty when the addresses are hidden (kptr_restrict).
std::vector<SampleRange> kernel_ranges(const std::string& kallsyms_text);

struct SamplerOptions {
  uint32_t ignore_tgid = 0;
  uint32_t freq_hz = 97;
  bool kernel = true;           // attribute kernel IPs (crypto, zstd)
  uint32_t stack_words = GPO_SAMPLE_STACK_WORDS;
};

class Sampler {
 public:
  // Throws SpotError (probes.h) when the program cannot be loaded or no CPU can be sampled.
  static std::unique_ptr<Sampler> start(const SamplerOptions& opts);
  ~Sampler();
  Sampler(const Sampler&) = delete;
  Sampler& operator=(const Sampler&) = delete;

  // Gives a library file its range table. Returns false (why in err) when the
  // file has no symbols or the tables are full. A file already known is a no-op.
  bool add_library(const Library& lib, std::string& err);
  // Files the samples landed in that the range tables do not know, looked up once each in
  // /proc/TGID/maps: a spotted library under the kernel's other name for it (overlayfs
  // and other stacked file systems map the underlying file, whose device and inode
  // differ from what stat() shows; btrfs subvolumes too) becomes an alias of its table;
  // one the agent never saw (another mount namespace) gets a table of its own, read
  // through /proc/TGID/map_files. Returns the files added.
  int learn_aliases();

  struct Counts {
    std::map<std::pair<uint32_t, uint32_t>, uint64_t> ops;  // (tgid, sample op) -> samples
    std::map<uint32_t, std::pair<uint64_t, std::string>> procs;  // tgid -> (samples, comm)
  };
  Counts read() const;
  void forget_process(uint32_t tgid);
  gpo_sample_stats read_stats() const;
  // Runs of the sampling program and their total time (while kernel.bpf_stats_enabled is on).
  std::pair<uint64_t, uint64_t> prog_runs() const;

  const std::string& event() const { return event_; }  // "cycles" or "cpu-clock"
  uint32_t freq_hz() const { return opts_.freq_hz; }
  int cpus() const { return int(links_.size()); }
  int libraries() const { return int(files_.size()); }
  int kernel_ranges_loaded() const { return kernel_ranges_; }
  const std::string& kernel_note() const { return kernel_note_; }

 private:
  Sampler() = default;
  bool put_table(uint32_t index, const std::vector<SampleRange>& ranges, uint32_t other_op);
  // A new table for the kernel's file key, from the symbols of the file at read_from.
  std::optional<uint32_t> add_table(const gpo_sample_file& key, LibKind kind, const std::string& read_from,
                                    const std::string& name, std::string& err);

  SamplerOptions opts_;
  struct sample* skel_ = nullptr;
  std::vector<bpf_link*> links_;
  std::set<std::pair<uint64_t, uint64_t>> files_;  // kernel (dev, ino)
  std::map<std::string, uint32_t> table_of_path_;  // library path (as found and canonical) -> table
  std::set<std::pair<uint64_t, uint64_t>> unknown_checked_;  // (dev, ino) looked up once
  uint32_t next_table_ = 1;
  std::string event_;
  int kernel_ranges_ = 0;
  std::string kernel_note_;
};

}  // namespace gpo::spot
