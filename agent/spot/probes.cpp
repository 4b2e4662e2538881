#include "spot/probes.h"

#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "spot.skel.h"
#include "spot/elf_symbols.h"
#include "spot/probe_site.h"
#include "spot/uprobe_multi.h"
#include "util/log.h"

namespace gpo::spot {
namespace {

std::string errstr(int err) { return std::strerror(err < 0 ? -err : err); }

std::chrono::microseconds g_last_detach{0};

template <typename T>
bool read_percpu(int fd, const void* key, std::vector<T>& per_cpu) {
  int ncpu = libbpf_num_possible_cpus();
  if (ncpu <= 0) return false;
  per_cpu.assign(size_t(ncpu), T{});
  static_assert(sizeof(T) % 8 == 0, "per-CPU values are 8-byte aligned");
  return bpf_map_lookup_elem(fd, key, per_cpu.data()) == 0;
}

std::array<gpo_spot_hist, kOps> sum_hist(int fd) {
  std::array<gpo_spot_hist, kOps> out{};
  std::vector<gpo_spot_hist> cpus;
  for (uint32_t op = 0; op < kOps; op++) {
    if (!read_percpu(fd, &op, cpus)) continue;
    for (const auto& c : cpus) {
      out[op].calls += c.calls;
      out[op].bytes += c.bytes;
      for (int k = 0; k < GPO_SPOT_HIST_SLOTS; k++) out[op].slots[k] += c.slots[k];
    }
  }
  return out;
}

}  // namespace

bool kprobes_available() {
  for (const char* p : {"/sys/bus/event_source/devices/kprobe/type", "/sys/kernel/tracing/kprobe_events",
                        "/sys/kernel/debug/tracing/kprobe_events"})
    if (access(p, F_OK) == 0) return true;
  return false;
}

namespace {

bool wanted(const std::vector<uint32_t>& ops, uint32_t op) {
  return ops.empty() || std::find(ops.begin(), ops.end(), op) != ops.end();
}

}  // namespace

std::vector<ResolvedEntry> resolve_entries(const Library& lib, bool at_entry) {
  std::vector<ResolvedEntry> out;
  std::string err;
  auto syms = read_function_symbols(lib.path, &err);
  auto find = [&](const char* name) -> const FuncSymbol* {
    if (!syms) return nullptr;
    for (const auto& s : *syms)
      if (s.name == name) return &s;
    return nullptr;
  };
  std::map<std::string, ProbeSite> sites;
  for (const auto& spec : uprobe_specs()) {
    if (spec.lib != lib.kind) continue;
    ResolvedEntry r;
    r.entry = spec.entry;
    r.symbol = spec.symbol;
    const FuncSymbol* sym = find(spec.symbol);
    if (!sym) {
      r.not_probed = syms ? "symbol not found" : err;
      out.push_back(r);
      continue;
    }
    auto site = choose_probe_site(read_file_bytes(lib.path, sym->offset, 32));
    if (at_entry && site.skip) site = {0, false, site.tail_call, "other"};
    sites[spec.symbol] = site;
    r.offset = sym->offset + site.skip;
    r.skip = site.skip;
    r.emulated = site.emulated;
    r.insn = site.insn;
    out.push_back(r);
  }
  // A wrapper that tail-calls a probed entry point: its callee's probe sees the call.
  for (const auto& spec : uprobe_specs()) {
    if (at_entry) break;
    if (spec.lib != lib.kind || !spec.tail_of) continue;
    auto callee = std::find_if(out.begin(), out.end(), [&](const ResolvedEntry& r) { return r.entry == spec.entry; });
    auto wrapper = std::find_if(out.begin(), out.end(), [&](const ResolvedEntry& r) { return r.symbol == spec.tail_of; });
    if (callee == out.end() || wrapper == out.end() || !callee->not_probed.empty() || !wrapper->not_probed.empty())
      continue;
    if (sites[spec.tail_of].tail_call) wrapper->not_probed = std::string("tail-calls ") + spec.symbol + " (probed there)";
  }
  return out;
}

ProbeAttachment::~ProbeAttachment() {
  auto t0 = std::chrono::steady_clock::now();
  if (multi_fd_ >= 0) close(multi_fd_);
  for (auto* l : links_) bpf_link__destroy(l);
  g_last_detach = std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t0);
}

std::chrono::microseconds ProbeAttachment::last_detach() { return g_last_detach; }

std::unique_ptr<ProbeSet> ProbeSet::load(const ProbeSetOptions& opts) {
  std::unique_ptr<ProbeSet> s(new ProbeSet());
  s->skel_ = spot__open();
  if (!s->skel_) throw SpotError(SpotError::Kind::failure, "spot: cannot open the BPF object: " + errstr(errno));
  s->kernel_loaded_ = opts.kernel && kprobes_available();
  s->at_entry_ = opts.at_entry;
  for (const auto& k : kprobe_specs())
    bpf_program__set_autoload(bpf_object__find_program_by_name(s->skel_->obj, k.program), s->kernel_loaded_);
  s->multi_ = uprobe_multi_supported();
  if (s->multi_)
    bpf_program__set_expected_attach_type(s->skel_->progs.up_entry, bpf_attach_type(kBpfTraceUprobeMulti));

  if (int err = spot__load(s->skel_); err) {
    if (err == -EPERM || err == -EACCES)
      throw SpotError(SpotError::Kind::privilege, "spot: loading the BPF programs was refused (" + errstr(err) +
                                                      "): run as root (CAP_BPF and CAP_PERFMON)");
    throw SpotError(SpotError::Kind::failure, "spot: loading the BPF programs failed: " + errstr(err) +
                                                  " (rerun with --log-level debug for the verifier log)");
  }

  gpo_spot_config cfg{};
  for (int op = 0; op < kOps; op++) cfg.threshold[op] = opts.thresholds[op];
  cfg.ignore_tgid = opts.ignore_tgid;
  cfg.watch_only = opts.watch_only ? 1 : 0;
  uint32_t zero = 0;
  if (bpf_map__update_elem(s->skel_->maps.spot_cfg, &zero, sizeof zero, &cfg, sizeof cfg, 0) != 0)
    throw SpotError(SpotError::Kind::failure, "spot: writing spot_cfg failed: " + errstr(errno));

  if (!opts.pin_dir.empty()) {
    std::error_code ec;
    std::filesystem::create_directories(opts.pin_dir, ec);
    struct { bpf_map* map; const char* name; } maps[] = {
        {s->skel_->maps.spot_events, "spot_events"}, {s->skel_->maps.spot_hist, "spot_hist"},
        {s->skel_->maps.spot_cfg, "spot_cfg"},       {s->skel_->maps.spot_stats, "spot_stats"},
        {s->skel_->maps.spot_phist, "spot_phist"},   {s->skel_->maps.spot_watch, "spot_watch"},
    };
    for (auto& m : maps) {
      std::string path = opts.pin_dir + "/" + m.name;
      unlink(path.c_str());  // a previous agent that died leaves its pins: ours replace them
      if (bpf_map__pin(m.map, path.c_str()) != 0) {
        gpo::log::warn("spot: cannot pin {} at {}: {}; bpftool will not see it", m.name, path, errstr(errno));
        continue;
      }
      s->pinned_.push_back(path);
    }
  }

  s->rb_ = ring_buffer__new(bpf_map__fd(s->skel_->maps.spot_events), &ProbeSet::handle_event, s.get(), nullptr);
  if (!s->rb_) throw SpotError(SpotError::Kind::failure, "spot: cannot open the ring buffer: " + errstr(errno));
  return s;
}

ProbeSet::~ProbeSet() {
  if (rb_) ring_buffer__free(rb_);
  for (const auto& p : pinned_) unlink(p.c_str());
  if (skel_) spot__destroy(skel_);
}

std::unique_ptr<ProbeAttachment> ProbeSet::attach_library(const Library& lib, const std::vector<uint32_t>& ops,
                                                          pid_t pid, std::vector<std::string>& attached,
                                                          std::vector<std::string>& skipped,
                                                          const std::vector<std::string>* symbols) {
  auto key = std::make_pair(lib.dev, lib.ino);
  auto it = resolved_.find(key);
  if (it == resolved_.end()) it = resolved_.emplace(key, resolve_entries(lib, at_entry_)).first;
  std::unique_ptr<ProbeAttachment> a(new ProbeAttachment());
  std::vector<uint64_t> offsets, cookies;
  std::vector<std::string> lines;
  for (const auto& r : it->second) {
    const auto& spec = uprobe_specs()[r.entry];
    if (!wanted(ops, spec.op)) continue;
    if (symbols && std::find(symbols->begin(), symbols->end(), r.symbol) == symbols->end()) continue;
    std::string what = fmt::format("uprobe {} {}:{}", lib_kind_name(lib.kind), lib.path, r.symbol);
    if (!r.not_probed.empty()) {
      skipped.push_back(what + ": " + r.not_probed);
      continue;
    }
    what += r.skip ? fmt::format("+{}", r.skip) : "";
    what += r.emulated ? fmt::format(" ({}, emulated)", r.insn) : " (single-stepped: two traps per call)";
    if (pid > 0) what += fmt::format(" pid {}", pid);
    if (multi_) {
      offsets.push_back(r.offset);
      cookies.push_back(r.entry);
      lines.push_back(what);
      continue;
    }
    LIBBPF_OPTS(bpf_uprobe_opts, uo, .bpf_cookie = r.entry, .retprobe = false);
    bpf_link* link = bpf_program__attach_uprobe_opts(skel_->progs.up_entry, pid > 0 ? pid : -1, lib.path.c_str(),
                                                     r.offset, &uo);
    if (!link) {
      skipped.push_back(what + ": " + errstr(errno));
      continue;
    }
    a->links_.push_back(link);
    a->probes_++;
    attached.push_back(what);
  }
  if (multi_ && !offsets.empty()) {
    int fd = uprobe_multi_attach(bpf_program__fd(skel_->progs.up_entry), lib.path, offsets, cookies, pid);
    if (fd < 0) {
      for (auto& l : lines) skipped.push_back(l + ": uprobe_multi: " + errstr(fd));
    } else {
      a->multi_fd_ = fd;
      a->probes_ = int(offsets.size());
      for (auto& l : lines) attached.push_back(l + " [uprobe_multi]");
    }
  }
  return a;
}

std::unique_ptr<ProbeAttachment> ProbeSet::attach_kprobes(const std::vector<uint32_t>& ops,
                                                          std::vector<std::string>& attached,
                                                          std::vector<std::string>& skipped) {
  std::unique_ptr<ProbeAttachment> a(new ProbeAttachment());
  if (!kernel_loaded_) return a;
  for (const auto& k : kprobe_specs()) {
    if (!wanted(ops, k.op)) continue;
    auto* prog = bpf_object__find_program_by_name(skel_->obj, k.program);
    bpf_link* link = bpf_program__attach(prog);
    std::string what = fmt::format("kprobe {}", k.function);
    if (!link) {
      skipped.push_back(what + ": " + errstr(errno));
      continue;
    }
    a->links_.push_back(link);
    a->probes_++;
    attached.push_back(what);
  }
  return a;
}

void ProbeSet::watch(uint32_t tgid, uint64_t max_calls) {
  gpo_spot_watch w{0, max_calls};
  bpf_map__update_elem(skel_->maps.spot_watch, &tgid, sizeof tgid, &w, sizeof w, BPF_ANY);
}

uint64_t ProbeSet::unwatch(uint32_t tgid) {
  gpo_spot_watch w{};
  bpf_map__lookup_elem(skel_->maps.spot_watch, &tgid, sizeof tgid, &w, sizeof w, 0);
  bpf_map__delete_elem(skel_->maps.spot_watch, &tgid, sizeof tgid, 0);
  return w.calls;
}

int ProbeSet::handle_event(void* ctx, void* data, size_t size) {
  if (size < sizeof(gpo_spot_event)) return 0;
  auto* self = static_cast<ProbeSet*>(ctx);
  gpo_spot_event e;
  std::memcpy(&e, data, sizeof e);
  if (self->on_event_) self->on_event_(e);
  return 0;
}

int ProbeSet::ring_fd() const { return ring_buffer__epoll_fd(rb_); }
int ProbeSet::poll(int timeout_ms) { return ring_buffer__poll(rb_, timeout_ms); }
int ProbeSet::consume() { return ring_buffer__consume(rb_); }

std::array<gpo_spot_hist, kOps> ProbeSet::read_hist() const { return sum_hist(bpf_map__fd(skel_->maps.spot_hist)); }

gpo_spot_stats ProbeSet::read_stats() const {
  gpo_spot_stats total{};
  std::vector<gpo_spot_stats> cpus;
  uint32_t zero = 0;
  if (read_percpu(bpf_map__fd(skel_->maps.spot_stats), &zero, cpus))
    for (const auto& c : cpus) {
      total.events += c.events;
      total.dropped += c.dropped;
      total.nested += c.nested;
    }
  return total;
}

std::map<std::pair<uint32_t, uint32_t>, gpo_spot_hist> ProbeSet::read_process_hist() const {
  std::map<std::pair<uint32_t, uint32_t>, gpo_spot_hist> out;
  int fd = bpf_map__fd(skel_->maps.spot_phist);
  gpo_spot_proc_key key{}, next{};
  const void* prev = nullptr;
  while (bpf_map_get_next_key(fd, prev, &next) == 0) {
    gpo_spot_hist h{};
    if (bpf_map_lookup_elem(fd, &next, &h) == 0) out[{next.tgid, next.op}] = h;
    key = next;
    prev = &key;
  }
  return out;
}

void ProbeSet::forget_process(uint32_t tgid) {
  for (uint32_t op = 0; op < kOps; op++) {
    gpo_spot_proc_key k{tgid, op};
    bpf_map__delete_elem(skel_->maps.spot_phist, &k, sizeof k, 0);
  }
}

std::vector<ProbeSet::ProgStats> ProbeSet::prog_stats() const {
  std::vector<ProgStats> out;
  bpf_program* prog;
  bpf_object__for_each_program(prog, skel_->obj) {
    int fd = bpf_program__fd(prog);
    if (fd < 0) continue;
    bpf_prog_info info{};
    uint32_t len = sizeof info;
    if (bpf_obj_get_info_by_fd(fd, &info, &len) != 0) continue;
    out.push_back({bpf_program__name(prog), info.run_cnt, info.run_time_ns});
  }
  return out;
}

bool read_pinned_hist(const std::string& pin_dir, std::array<gpo_spot_hist, kOps>& out) {
  int fd = bpf_obj_get((pin_dir + "/spot_hist").c_str());
  if (fd < 0) return false;
  out = sum_hist(fd);
  close(fd);
  return true;
}

}  // namespace gpo::spot
