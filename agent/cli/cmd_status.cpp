// `gpuoffload-agent status`: the packet filter's state as the kernel holds it,
// read from the pinned maps only, so it works while `run` is running in another
// process (and after it crashed: the maps and the attached program remain).
#include <arpa/inet.h>
#include <bpf/bpf.h>
#include <bpf/libbpf.h>
#include <net/if.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <fstream>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "loader/xdp_loader.h"
#include "util/log.h"

namespace gpo::cli {

namespace {

struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  Fd(Fd&& o) noexcept : fd(o.fd) { o.fd = -1; }
  Fd& operator=(Fd&& o) noexcept {
    std::swap(fd, o.fd);
    return *this;
  }
  ~Fd() {
    if (fd >= 0) close(fd);
  }
};

struct Attached {
  std::string name;
  int ifindex;
  std::string mode;
  uint32_t prog_id;
};

struct FlowRow {
  gpo_flow_key key;
  gpo_flow_verdict v;
};

std::string addr_str(const uint8_t a[16]) {
  char buf[INET6_ADDRSTRLEN] = {};
  static const uint8_t v4_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  if (std::memcmp(a, v4_prefix, 12) == 0) {
    inet_ntop(AF_INET, a + 12, buf, sizeof(buf));
    return buf;
  }
  inet_ntop(AF_INET6, a, buf, sizeof(buf));
  return std::string("[") + buf + "]";
}

std::string proto_str(uint8_t p) {
  switch (p) {
    case 6: return "tcp";
    case 17: return "udp";
    case 1: return "icmp";
    case 58: return "icmpv6";
  }
  return "proto " + std::to_string(p);
}

uint32_t map_id(int fd) {
  bpf_map_info info{};
  uint32_t len = sizeof(info);
  return bpf_obj_get_info_by_fd(fd, &info, &len) == 0 ? info.id : 0;
}

uint32_t map_max_entries(int fd) {
  bpf_map_info info{};
  uint32_t len = sizeof(info);
  return bpf_obj_get_info_by_fd(fd, &info, &len) == 0 ? info.max_entries : 0;
}

// Does program `id` use the map `want_map_id`? That is how we know an attached
// xdp_filter is the one these pinned maps belong to (not merely the same name).
bool prog_uses_map(uint32_t id, uint32_t want_map_id) {
  int fd = bpf_prog_get_fd_by_id(id);
  if (fd < 0) return false;
  uint32_t ids[64] = {};
  bpf_prog_info info{};
  info.nr_map_ids = 64;
  info.map_ids = reinterpret_cast<uint64_t>(ids);
  uint32_t len = sizeof(info);
  bool found = false;
  if (bpf_obj_get_info_by_fd(fd, &info, &len) == 0)
    for (uint32_t i = 0; i < std::min<uint32_t>(info.nr_map_ids, 64); i++) found |= ids[i] == want_map_id;
  close(fd);
  return found;
}

// The interfaces of this network namespace running our program, from the kernel.
std::vector<Attached> attached_interfaces(uint32_t flows_map_id) {
  std::vector<Attached> out;
  struct if_nameindex* list = if_nameindex();
  if (!list) return out;
  for (struct if_nameindex* i = list; i->if_index != 0; i++) {
    LIBBPF_OPTS(bpf_xdp_query_opts, q);
    if (bpf_xdp_query(int(i->if_index), 0, &q) != 0) continue;
    std::pair<uint32_t, const char*> cand[] = {{q.drv_prog_id, "native"}, {q.skb_prog_id, "generic"},
                                               {q.hw_prog_id, "offload"}};
    for (auto [id, mode] : cand)
      if (id && prog_uses_map(id, flows_map_id)) out.push_back({i->if_name, int(i->if_index), mode, id});
  }
  if_freenameindex(list);
  return out;
}

uint64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000ull + uint64_t(ts.tv_nsec);
}

struct StatRow {
  const char* name;
  gpo_counter gpo_xdp_stats::*c;
  const char* what;
};
constexpr StatRow kStatRows[] = {
    {"cache_pass", &gpo_xdp_stats::cache_pass, "cache hit, passed"},
    {"cache_drop", &gpo_xdp_stats::cache_drop, "cache hit, dropped"},
    {"cache_redirect", &gpo_xdp_stats::cache_redirect, "cache hit, redirected to the peer port"},
    {"to_agent", &gpo_xdp_stats::to_agent, "cache miss, sent to the agent (AF_XDP)"},
    {"no_socket_pass", &gpo_xdp_stats::no_socket_pass, "miss, no agent socket, fail-open"},
    {"no_socket_drop", &gpo_xdp_stats::no_socket_drop, "miss, no agent socket, fail-closed"},
    {"parse_fail_pass", &gpo_xdp_stats::parse_fail_pass, "unparsed, passed"},
    {"parse_fail_drop", &gpo_xdp_stats::parse_fail_drop, "unparsed, dropped"},
    {"non_ip", &gpo_xdp_stats::non_ip, "not IP, passed"},
};

// The status file `run` writes, when the agent that wrote it is alive; null otherwise.
nlohmann::json live_status(const std::string& file) {
  std::ifstream f(file);
  if (!f) return nullptr;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(f);
  } catch (const std::exception&) {
    return nullptr;
  }
  const int pid = j.value("pid", 0);
  if (pid <= 0 || (kill(pid, 0) != 0 && errno != EPERM)) return nullptr;
  return j;
}

// The running rule set: loaded rule count and the skip summary.
void print_rules_status(const std::string& file) {
  nlohmann::json j = live_status(file);
  if (j.is_null() || !j.contains("rule_set")) return;
  const auto& r = j["rule_set"];
  std::printf("\nrules (agent pid %d): %s: %s, default %s\n", j.value("pid", 0),
              r.value("file", std::string("?")).c_str(), r.value("summary", std::string("?")).c_str(),
              r.value("default", std::string("?")).c_str());
}

void run_status(const std::string& pin_dir, bool json, size_t top_n, const std::string& status_file) {
  if (!loader::have_bpf_privileges())
    throw CLI::RuntimeError("status: reading the pinned BPF maps needs root (or CAP_BPF); run it with sudo",
                            kNoPrivilege);
  auto open_pinned = [&](const char* name) { return Fd(bpf_obj_get((pin_dir + "/" + name).c_str())); };
  Fd stats = open_pinned("stats"), flows = open_pinned("flows"), config = open_pinned("config"),
     tx = open_pinned("tx_ports");
  if (stats.fd < 0 || flows.fd < 0 || config.fd < 0) {
    if (json) std::printf("%s\n", nlohmann::json{{"running", false}, {"pin_dir", pin_dir}}.dump(2).c_str());
    throw CLI::RuntimeError("not running: no pinned maps under " + pin_dir +
                                " (start the filter with `sudo gpuoffload-agent run --xdp IFACE`)",
                            kFailure);
  }

  gpo_xdp_stats st = loader::sum_stats(stats.fd);
  gpo_xdp_config cfg{};
  uint32_t zero = 0;
  bpf_map_lookup_elem(config.fd, &zero, &cfg);
  auto ifaces = attached_interfaces(map_id(flows.fd));
  std::vector<std::pair<std::string, std::string>> peers;
  if (tx.fd >= 0) {
    uint32_t k, next, v;
    char a[IF_NAMESIZE], b[IF_NAMESIZE];
    for (int r = bpf_map_get_next_key(tx.fd, nullptr, &k); r == 0; r = bpf_map_get_next_key(tx.fd, &k, &next), k = next)
      if (bpf_map_lookup_elem(tx.fd, &k, &v) == 0)
        peers.emplace_back(if_indextoname(k, a) ? a : std::to_string(k), if_indextoname(v, b) ? b : std::to_string(v));
  }

  // The flow cache: size and the busiest entries (bounded by the map size).
  std::vector<FlowRow> rows;
  uint32_t max_entries = map_max_entries(flows.fd);
  gpo_flow_key key, next_key;
  for (int r = bpf_map_get_next_key(flows.fd, nullptr, &key); r == 0 && rows.size() < max_entries;
       r = bpf_map_get_next_key(flows.fd, &key, &next_key), key = next_key) {
    FlowRow fr{key, {}};
    if (bpf_map_lookup_elem(flows.fd, &key, &fr.v) == 0) rows.push_back(fr);
  }
  size_t entries = rows.size();
  std::sort(rows.begin(), rows.end(), [](const FlowRow& a, const FlowRow& b) { return a.v.hits > b.v.hits; });
  if (rows.size() > top_n) rows.resize(top_n);
  uint64_t now = now_ns();
  auto age_s = [&](uint64_t t) { return t && t <= now ? double(now - t) / 1e9 : 0.0; };
  auto flow_a = [](const gpo_flow_key& k) { return addr_str(k.addr_a) + ":" + std::to_string(ntohs(k.port_a)); };
  auto flow_b = [](const gpo_flow_key& k) { return addr_str(k.addr_b) + ":" + std::to_string(ntohs(k.port_b)); };
  const char* fail = cfg.fail_policy == GPO_ACT_DROP ? "fail-closed" : "fail-open";

  if (json) {
    nlohmann::json j;
    j["running"] = !ifaces.empty();
    j["pin_dir"] = pin_dir;
    j["interfaces"] = nlohmann::json::array();
    for (const auto& a : ifaces)
      j["interfaces"].push_back({{"name", a.name}, {"ifindex", a.ifindex}, {"mode", a.mode}, {"prog_id", a.prog_id}});
    j["config"] = {{"fail_policy", loader::action_name(cfg.fail_policy)},
                   {"unparsed_policy", loader::action_name(cfg.unparsed_policy)},
                   {"inline_mode", bool(cfg.inline_mode)}};
    j["tx_ports"] = nlohmann::json::object();
    for (const auto& [from, to] : peers) j["tx_ports"][from] = to;
    for (const auto& s : kStatRows) j["stats"][s.name] = {{"packets", (st.*s.c).packets}, {"bytes", (st.*s.c).bytes}};
    j["flows"] = {{"entries", entries}, {"max_entries", max_entries}, {"top", nlohmann::json::array()}};
    if (nlohmann::json live = live_status(status_file); !live.is_null() && live.contains("rule_set"))
      j["rule_set"] = live["rule_set"];
    for (const auto& r : rows)
      j["flows"]["top"].push_back({{"a", flow_a(r.key)}, {"b", flow_b(r.key)}, {"proto", proto_str(r.key.proto)},
                                   {"action", loader::action_name(r.v.action)}, {"rule_id", r.v.rule_id},
                                   {"hits", r.v.hits}, {"last_seen_s_ago", age_s(r.v.last_seen_ns)}});
    std::printf("%s\n", j.dump(2).c_str());
    return;
  }

  std::printf("gpuoffload packet filter (maps pinned in %s)\n", pin_dir.c_str());
  if (ifaces.empty())
    std::printf("  attached: nowhere in this network namespace (maps are left from an earlier run)\n");
  for (const auto& a : ifaces)
    std::printf("  attached: xdp_filter on %s (ifindex %d, %s mode, prog id %u)\n", a.name.c_str(), a.ifindex,
                a.mode.c_str(), a.prog_id);
  std::printf("  mode: %s, %s (miss without an agent socket: %s), unparsed packets: %s\n",
              cfg.inline_mode ? "inline" : "host", fail, loader::action_name(cfg.fail_policy),
              loader::action_name(cfg.unparsed_policy));
  for (const auto& [from, to] : peers) std::printf("  peer port: %s -> %s\n", from.c_str(), to.c_str());
  std::printf("\n  %-16s %14s %16s\n", "path", "packets", "bytes");
  for (const auto& s : kStatRows)
    std::printf("  %-16s %14llu %16llu  %s\n", s.name, (unsigned long long)(st.*s.c).packets,
                (unsigned long long)(st.*s.c).bytes, s.what);
  std::printf("\n  flow cache: %zu of %u entries\n", entries, max_entries);
  if (!rows.empty()) {
    std::printf("  %10s  %-6s %8s  %-5s  %s\n", "hits", "action", "rule", "seen", "flow");
    for (const auto& r : rows)
      std::printf("  %10llu  %-6s %8u  %4.0fs  %s <-> %s %s\n", (unsigned long long)r.v.hits,
                  loader::action_name(r.v.action), r.v.rule_id, age_s(r.v.last_seen_ns), flow_a(r.key).c_str(),
                  flow_b(r.key).c_str(), proto_str(r.key.proto).c_str());
  }
}

// The offload service's part of the status file that `run` writes: its
// backend and what the planner decided. Text mode only; nothing
// when no live agent wrote the file.
void print_offload_status(const std::string& file) {
  std::ifstream f(file);
  if (!f) return;
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(f);
  } catch (const std::exception&) {
    return;
  }
  const int pid = j.value("pid", 0);
  if (pid <= 0 || (kill(pid, 0) != 0 && errno != EPERM)) return;
  const auto off = j.value("offload", nlohmann::json::object());
  if (!off.value("enabled", false)) {
    std::printf("\noffload (agent pid %d): off\n", pid);
    return;
  }
  std::printf("\noffload (agent pid %d): backend %s\n", pid, off.value("backend", std::string("?")).c_str());
  std::printf("  %llu jobs done in %llu batches\n", (unsigned long long)off.value("jobs_done", 0ull),
              (unsigned long long)off.value("batches", 0ull));
  auto u64 = [&](const nlohmann::json& o, const char* k) { return (unsigned long long)o.value(k, 0ull); };
  std::printf("  socket %s (%s); %llu clients connected, %llu MiB of slabs\n",
              off.value("socket", std::string("?")).c_str(), off.value("access", std::string("?")).c_str(),
              u64(off, "clients_connected"), u64(off, "slab_bytes") >> 20);
  std::printf("  refused: %llu connections, %llu registrations, %llu jobs over quota, %llu jobs rejected; "
              "%llu connections dropped out of fds; %llu doorbells lost\n",
              u64(off, "connections_refused"), u64(off, "registrations_refused"), u64(off, "jobs_over_quota"),
              u64(off, "jobs_rejected"), u64(off, "connections_dropped_no_fd"), u64(off, "doorbells_lost"));
  const auto lim = off.value("limits", nlohmann::json::object());
  if (!lim.empty())
    std::printf("  limits: per client %llu MiB, %llu jobs; per uid %llu MiB, %llu jobs, %llu connections, %llu "
                "uprobe files; %llu MiB of slabs in all; zstd up to level %d\n",
                u64(lim, "slab_bytes_per_client") >> 20, u64(lim, "jobs_in_flight_per_client"),
                u64(lim, "slab_bytes_per_uid") >> 20, u64(lim, "jobs_in_flight_per_uid"),
                u64(lim, "connections_per_uid"), u64(lim, "uprobe_files_per_uid"), u64(lim, "slab_bytes_total") >> 20,
                lim.value("zstd_max_level", 0));
  for (const auto& u : off.value("uids", nlohmann::json::array()))
    std::printf("  uid %-6llu %3llu connections, %5llu MiB of slabs, %6llu jobs in flight, %llu jobs; refused %llu, "
                "over quota %llu\n",
                u64(u, "uid"), u64(u, "connections"), u64(u, "slab_bytes") >> 20, u64(u, "jobs_in_flight"),
                u64(u, "jobs"), u64(u, "refused"), u64(u, "jobs_over_quota"));
  const auto t = off.value("per_job_us", nlohmann::json::object());
  if (t.value("jobs", 0ull) > 0)
    std::printf("  per job in the agent: %.1f us gathering, %.1f us at the backend, %.1f us completing\n",
                t.value("gathering", 0.0), t.value("at_backend", 0.0), t.value("completing", 0.0));
  const auto plan = off.value("plan", nlohmann::json());
  if (plan.is_object()) {
    std::string sent;
    for (const auto& [op, v] : plan.value("client_min_bytes", nlohmann::json::object()).items())
      if (!v.is_string()) sent += (sent.empty() ? "" : ", ") + op + " >= " + std::to_string(v.get<uint64_t>()) + " B";
    std::printf("  clients send: %s (plan page %s)\n", sent.empty() ? "nothing, every job stays in its process" : sent.c_str(),
                plan.value("path", std::string("?")).c_str());
  }
  const auto pl = off.value("planner", nlohmann::json::object());
  std::printf("  %s\n", pl.value("status", std::string("planner: unknown")).c_str());
  if (pl.contains("cpu_seconds")) {
    const auto c = pl["cpu_seconds"];
    std::printf("  CPU seconds saved: %.2f (%.2f s of CPU work moved to the GPU, %.2f s of host CPU spent on it; "
                "%.2f s on the CPU backend)\n",
                c.value("saved", 0.0), c.value("moved_to_gpu", 0.0), c.value("gpu_host", 0.0),
                c.value("cpu_backend", 0.0));
  }
  for (const auto& [op, c] : pl.value("ops", nlohmann::json::object()).items())
    std::printf("  %-22s %8llu batches on the CPU (%llu jobs), %8llu on the GPU (%llu jobs)\n", op.c_str(),
                (unsigned long long)c.value("cpu_batches", 0ull), (unsigned long long)c.value("cpu_jobs", 0ull),
                (unsigned long long)c.value("gpu_batches", 0ull), (unsigned long long)c.value("gpu_jobs", 0ull));
}

}  // namespace

void add_status(CLI::App& app) {
  auto* cmd = app.add_subcommand(
      "status",
      "Show the packet filter's state from its pinned BPF maps: where it is attached, its policies, per-path\n"
      "packet counters and the busiest flows in the flow cache. Works while `run` is running.\n"
      "Example:\n"
      "  sudo gpuoffload-agent status\n"
      "  sudo gpuoffload-agent status --json --top 20");
  struct Opts {
    bool json = false;
    size_t top = 10;
    std::string pin_dir = GPO_PIN_DIR;
    std::string status_file = "/run/gpuoffload/status.json";
  };
  auto o = std::make_shared<Opts>();
  cmd->add_flag("--json", o->json, "Print JSON instead of text");
  cmd->add_option("--top", o->top, "How many flows to list, busiest first")->capture_default_str();
  cmd->add_option("--pin-dir", o->pin_dir, "Where the maps are pinned")->capture_default_str();
  cmd->add_option("--status-file", o->status_file, "The status file `run` writes (rule set, offload and planner lines)")
      ->capture_default_str();
  cmd->callback([o] {
    try {
      run_status(o->pin_dir, o->json, o->top, o->status_file);
    } catch (const CLI::RuntimeError&) {
      if (!o->json) print_rules_status(o->status_file);
      if (!o->json) print_offload_status(o->status_file);
      throw;
    }
    if (!o->json) print_rules_status(o->status_file);
    if (!o->json) print_offload_status(o->status_file);
  });
}

}  // namespace gpo::cli
