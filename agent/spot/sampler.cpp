#include "spot/sampler.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <linux/perf_event.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>

#include "sample.skel.h"
#include "spot/elf_symbols.h"
#include "spot/probes.h"
#include "util/log.h"

namespace gpo::spot {
namespace {

std::string errstr(int err) { return std::strerror(err < 0 ? -err : err); }

int perf_event_open(perf_event_attr* attr, int cpu) {
  return int(syscall(__NR_perf_event_open, attr, -1, cpu, -1, PERF_FLAG_FD_CLOEXEC));
}

// Online CPUs from /sys/devices/system/cpu/online ("0-3,5").
std::vector<int> online_cpus() {
  std::vector<int> out;
  std::ifstream f("/sys/devices/system/cpu/online");
  std::string s;
  std::getline(f, s);
  std::stringstream ss(s);
  for (std::string part; std::getline(ss, part, ',');) {
    int a = 0, b = 0;
    auto dash = part.find('-');
    std::from_chars(part.data(), part.data() + (dash == std::string::npos ? part.size() : dash), a);
    b = a;
    if (dash != std::string::npos) std::from_chars(part.data() + dash + 1, part.data() + part.size(), b);
    for (int c = a; c <= b; c++) out.push_back(c);
  }
  if (out.empty())
    for (int c = 0; c < libbpf_num_possible_cpus(); c++) out.push_back(c);
  return out;
}

// Sorted ranges, one op each; neighbours of one op that touch are merged.
std::vector<SampleRange> finish(std::vector<SampleRange> r) {
  std::sort(r.begin(), r.end(), [](const SampleRange& a, const SampleRange& b) { return a.start < b.start; });
  std::vector<SampleRange> out;
  for (const auto& x : r) {
    if (x.end <= x.start) continue;
    if (!out.empty() && x.start < out.back().end) continue;  // overlap (aliases): first wins
    if (!out.empty() && out.back().op == x.op && out.back().end == x.start) {
      out.back().end = x.end;
      continue;
    }
    out.push_back(x);
  }
  return out;
}

}  // namespace

std::vector<SampleRange> library_ranges(LibKind kind, const std::vector<FuncSymbol>& syms) {
  std::vector<SampleRange> r;
  for (size_t i = 0; i < syms.size(); i++) {
    uint32_t op = classify_function(kind, syms[i].name);
    if (op == GPO_SAMPLE_NONE) continue;
    uint64_t end = syms[i].size ? syms[i].offset + syms[i].size
                                : (i + 1 < syms.size() ? syms[i + 1].offset : syms[i].offset + 1);
    r.push_back({syms[i].offset, end, op});
  }
  // Merge across a gap only when nothing lies between (symbols are sorted): a
  // run of one op's exported functions with padding between them is one range.
  auto out = finish(r);
  std::vector<SampleRange> merged;
  for (const auto& x : out) {
    if (!merged.empty() && merged.back().op == x.op) {
      bool between = false;
      for (const auto& s : syms)
        if (s.offset >= merged.back().end && s.offset < x.start) { between = true; break; }
      if (!between) { merged.back().end = x.end; continue; }
    }
    merged.push_back(x);
  }
  return merged;
}

std::vector<SampleRange> kernel_ranges(const std::string& text) {
  struct Sym { uint64_t addr; uint32_t op; };
  std::vector<Sym> syms;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    // "ffffffff81000000 T _stext [module]"
    auto sp1 = line.find(' ');
    if (sp1 == std::string::npos || sp1 + 3 > line.size()) continue;
    char type = line[sp1 + 1];
    if (type != 't' && type != 'T') continue;
    uint64_t addr = 0;
    std::from_chars(line.data(), line.data() + sp1, addr, 16);
    if (!addr) continue;
    std::string_view name(line.data() + sp1 + 3, line.size() - sp1 - 3);
    if (auto tab = name.find_first_of(" \t"); tab != std::string_view::npos) name = name.substr(0, tab);
    syms.push_back({addr, classify_kernel_function(name)});
  }
  std::sort(syms.begin(), syms.end(), [](const Sym& a, const Sym& b) { return a.addr < b.addr; });
  std::vector<SampleRange> r;
  for (size_t i = 0; i + 1 < syms.size(); i++)
    if (syms[i].op != GPO_SAMPLE_NONE && syms[i + 1].addr > syms[i].addr)
      r.push_back({syms[i].addr, syms[i + 1].addr, syms[i].op});
  return finish(r);
}

std::unique_ptr<Sampler> Sampler::start(const SamplerOptions& opts) {
  std::unique_ptr<Sampler> s(new Sampler());
  s->opts_ = opts;
  if (s->opts_.freq_hz == 0 || s->opts_.freq_hz > 10000)
    throw SpotError(SpotError::Kind::failure, "sample: the rate must be 1..10000 Hz");
  s->skel_ = sample__open();
  if (!s->skel_) throw SpotError(SpotError::Kind::failure, "sample: cannot open the BPF object: " + errstr(errno));
  if (int err = sample__load(s->skel_); err) {
    if (err == -EPERM || err == -EACCES)
      throw SpotError(SpotError::Kind::privilege, "sample: loading the BPF program was refused (" + errstr(err) +
                                                      "): run as root (CAP_BPF and CAP_PERFMON)");
    throw SpotError(SpotError::Kind::unsupported,
                    "sample: loading the BPF program failed: " + errstr(err) +
                        " (needs bpf_find_vma and bpf_loop: kernel 5.17+; --log-level debug shows the verifier log)");
  }
  gpo_sample_config cfg{opts.ignore_tgid, std::min<uint32_t>(opts.stack_words, GPO_SAMPLE_STACK_WORDS)};
  uint32_t zero = 0;
  bpf_map__update_elem(s->skel_->maps.sample_cfg, &zero, sizeof zero, &cfg, sizeof cfg, 0);

  if (opts.kernel) {
    std::ifstream f("/proc/kallsyms");
    std::stringstream text;
    text << f.rdbuf();
    auto kr = kernel_ranges(text.str());
    if (kr.empty()) {
      s->kernel_note_ = "kernel samples: not attributed (/proc/kallsyms addresses hidden or no crypto/zstd symbols)";
    } else {
      if (kr.size() > GPO_SAMPLE_MAX_RANGES) kr.resize(GPO_SAMPLE_MAX_RANGES);
      s->put_table(GPO_SAMPLE_KERNEL_TABLE, kr, GPO_SAMPLE_NONE);
      s->kernel_ranges_ = int(kr.size());
      s->kernel_note_ = fmt::format("kernel samples: {} crypto/zstd address ranges from /proc/kallsyms", kr.size());
    }
  } else {
    s->kernel_note_ = "kernel samples: not attributed (not requested)";
  }

  // Hardware cycles count only while a CPU runs; VMs without a PMU have none,
  // and the software CPU clock (an hrtimer per CPU) stands in.
  auto cpus = online_cpus();
  for (int pass = 0; pass < 2 && s->links_.empty(); pass++) {
    perf_event_attr attr{};
    attr.size = sizeof attr;
    if (pass == 0) {
      attr.type = PERF_TYPE_HARDWARE;
      attr.config = PERF_COUNT_HW_CPU_CYCLES;
      attr.freq = 1;
      attr.sample_freq = opts.freq_hz;
    } else {
      attr.type = PERF_TYPE_SOFTWARE;
      attr.config = PERF_COUNT_SW_CPU_CLOCK;
      attr.sample_period = 1000000000ull / opts.freq_hz;
    }
    int last_err = 0;
    for (int cpu : cpus) {
      int fd = perf_event_open(&attr, cpu);
      if (fd < 0) {
        last_err = errno;
        if (pass == 0) break;  // no PMU: try the clock
        continue;
      }
      bpf_link* l = bpf_program__attach_perf_event(s->skel_->progs.sample_cpu, fd);
      if (!l) {
        last_err = errno;
        close(fd);
        continue;
      }
      s->links_.push_back(l);
    }
    if (pass == 0 && s->links_.size() != cpus.size()) {
      for (auto* l : s->links_) bpf_link__destroy(l);
      s->links_.clear();
    }
    if (!s->links_.empty()) s->event_ = pass == 0 ? "cycles" : "cpu-clock";
    if (pass == 1 && s->links_.empty())
      throw SpotError(last_err == EACCES || last_err == EPERM ? SpotError::Kind::privilege
                                                               : SpotError::Kind::unsupported,
                      "sample: no CPU could be sampled (perf_event_open: " + errstr(last_err) + ")");
  }
  return s;
}

Sampler::~Sampler() {
  for (auto* l : links_) bpf_link__destroy(l);
  if (skel_) sample__destroy(skel_);
}

bool Sampler::put_table(uint32_t index, const std::vector<SampleRange>& ranges, uint32_t other_op) {
  auto t = std::make_unique<gpo_sample_table>();
  std::memset(t.get(), 0, sizeof *t);
  t->n = uint32_t(std::min<size_t>(ranges.size(), GPO_SAMPLE_MAX_RANGES));
  t->other_op = other_op;
  for (uint32_t i = 0; i < t->n; i++) t->r[i] = {ranges[i].start, ranges[i].end, ranges[i].op, 0};
  return bpf_map__update_elem(skel_->maps.sample_tables, &index, sizeof index, t.get(), sizeof *t, 0) == 0;
}

bool Sampler::add_library(const Library& lib, std::string& err) {
  // The kernel names the file by its super block's device (MKDEV: major << 20 | minor).
  gpo_sample_file key{(uint64_t(major(lib.dev)) << 20) | minor(lib.dev), uint64_t(lib.ino)};
  if (files_.count({key.dev, key.ino})) return true;
  auto index = add_table(key, lib.kind, lib.path, lib.path, err);
  if (!index) return false;
  table_of_path_[lib.path] = *index;
  std::error_code ec;
  if (auto real = std::filesystem::canonical(lib.path, ec); !ec) table_of_path_[real.string()] = *index;
  return true;
}

std::optional<uint32_t> Sampler::add_table(const gpo_sample_file& key, LibKind kind, const std::string& read_from,
                                           const std::string& name, std::string& err) {
  if (next_table_ >= GPO_SAMPLE_MAX_TABLES) {
    err = name + ": range tables full";
    return std::nullopt;
  }
  auto syms = read_function_symbols(read_from, &err);
  if (!syms) return std::nullopt;
  auto ranges = library_ranges(kind, *syms);
  if (ranges.size() > GPO_SAMPLE_MAX_RANGES) {
    gpo::log::warn("sample: {}: {} ranges, the first {} kept", name, ranges.size(), GPO_SAMPLE_MAX_RANGES);
    ranges.resize(GPO_SAMPLE_MAX_RANGES);
  }
  uint32_t index = next_table_;
  if (!put_table(index, ranges, other_op_of(kind)) ||
      bpf_map__update_elem(skel_->maps.sample_libs, &key, sizeof key, &index, sizeof index, 0) != 0) {
    err = name + ": cannot write its range table: " + errstr(errno);
    return std::nullopt;
  }
  next_table_++;
  files_.insert({key.dev, key.ino});
  gpo::log::debug("sample: {} ({}): {} ranges", name, lib_kind_name(kind), ranges.size());
  return index;
}

namespace {

// The mapping that starts at vm_start in /proc/TGID/maps: its path as maps shows it and
// its "start-end" range (for /proc/TGID/map_files).
struct Mapping {
  std::string path, range;
};
std::optional<Mapping> find_mapping(uint32_t tgid, uint64_t vm_start) {
  std::ifstream maps("/proc/" + std::to_string(tgid) + "/maps");
  std::string line;
  while (std::getline(maps, line)) {
    unsigned long long start = 0, end = 0;
    if (std::sscanf(line.c_str(), "%llx-%llx", &start, &end) != 2 || start != vm_start) continue;
    auto path = maps_line_path(line);
    if (!path) return std::nullopt;
    return Mapping{*path, fmt::format("{:x}-{:x}", start, end)};
  }
  return std::nullopt;
}

}  // namespace

int Sampler::learn_aliases() {
  int fd = bpf_map__fd(skel_->maps.sample_unknown);
  gpo_sample_file next{}, cur{};
  const void* prev = nullptr;
  std::vector<std::pair<gpo_sample_file, gpo_sample_unknown>> fresh;
  while (bpf_map_get_next_key(fd, prev, &next) == 0) {
    cur = next;
    prev = &cur;
    if (unknown_checked_.count({next.dev, next.ino}) || files_.count({next.dev, next.ino})) continue;
    gpo_sample_unknown u{};
    if (bpf_map_lookup_elem(fd, &next, &u) == 0) fresh.push_back({next, u});
  }
  int added = 0;
  for (const auto& [key, u] : fresh) {
    const uint32_t tgid = u.tgid;
    auto m = find_mapping(tgid, u.vm_start);
    if (!m) continue;  // the process is gone or unmapped it: asked again on a later sample
    unknown_checked_.insert({key.dev, key.ino});
    auto kind = classify_library(m->path);
    if (!kind) continue;  // not one of the spotted libraries
    auto it = table_of_path_.find(m->path);
    if (it == table_of_path_.end()) {
      std::error_code ec;
      if (auto real = std::filesystem::canonical(m->path, ec); !ec) it = table_of_path_.find(real.string());
    }
    if (it != table_of_path_.end()) {
      uint32_t index = it->second;
      if (bpf_map__update_elem(skel_->maps.sample_libs, &key, sizeof key, &index, sizeof index, 0) == 0) {
        files_.insert({key.dev, key.ino});
        added++;
        gpo::log::debug("sample: {} is also the kernel's file {:x}:{}", m->path, key.dev, key.ino);
      }
      continue;
    }
    // A library the agent did not know (another mount namespace, a path only this process
    // sees): its own table, read through the process's mapping of it.
    std::string err;
    if (add_table(key, *kind, "/proc/" + std::to_string(tgid) + "/map_files/" + m->range, m->path, err)) {
      added++;
      gpo::log::info("sample: {} (pid {}) added from its mapping", m->path, tgid);
    } else {
      gpo::log::debug("sample: {} (pid {}): {}", m->path, tgid, err);
    }
  }
  return added;
}

Sampler::Counts Sampler::read() const {
  Counts c;
  int fd = bpf_map__fd(skel_->maps.sample_counts);
  gpo_sample_key key{}, next{};
  const void* prev = nullptr;
  while (bpf_map_get_next_key(fd, prev, &next) == 0) {
    uint64_t n = 0;
    if (bpf_map_lookup_elem(fd, &next, &n) == 0) c.ops[{next.tgid, next.op}] = n;
    key = next;
    prev = &key;
  }
  fd = bpf_map__fd(skel_->maps.sample_procs);
  uint32_t tk = 0, tn = 0;
  const void* tprev = nullptr;
  while (bpf_map_get_next_key(fd, tprev, &tn) == 0) {
    gpo_sample_proc p{};
    if (bpf_map_lookup_elem(fd, &tn, &p) == 0 && c.ops.lower_bound({tn, 0}) != c.ops.upper_bound({tn, ~0u}))
      c.procs[tn] = {p.samples, std::string(p.comm, strnlen(p.comm, sizeof p.comm))};
    tk = tn;
    tprev = &tk;
  }
  return c;
}

void Sampler::forget_process(uint32_t tgid) {
  bpf_map__delete_elem(skel_->maps.sample_procs, &tgid, sizeof tgid, 0);
  for (uint32_t op = 0; op < GPO_SAMPLE_OP_MAX; op++) {
    gpo_sample_key k{tgid, op};
    bpf_map__delete_elem(skel_->maps.sample_counts, &k, sizeof k, 0);
  }
}

std::pair<uint64_t, uint64_t> Sampler::prog_runs() const {
  bpf_prog_info info{};
  uint32_t len = sizeof info;
  if (bpf_obj_get_info_by_fd(bpf_program__fd(skel_->progs.sample_cpu), &info, &len) != 0) return {0, 0};
  return {info.run_cnt, info.run_time_ns};
}

gpo_sample_stats Sampler::read_stats() const {
  gpo_sample_stats total{};
  int ncpu = libbpf_num_possible_cpus();
  std::vector<gpo_sample_stats> cpus(size_t(std::max(ncpu, 1)));
  uint32_t zero = 0;
  if (bpf_map_lookup_elem(bpf_map__fd(skel_->maps.sample_stats), &zero, cpus.data()) == 0)
    for (const auto& c : cpus) {
      total.samples += c.samples;
      total.idle += c.idle;
      total.kernel += c.kernel;
      total.in_lib += c.in_lib;
      total.direct += c.direct;
      total.stack += c.stack;
      total.no_vma += c.no_vma;
    }
  return total;
}

}  // namespace gpo::spot
