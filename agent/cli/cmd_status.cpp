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
#include <filesystem>
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
#include "util/unique_fd.h"

namespace gpo::cli {

namespace {

using util::UniqueFd;

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
#define GPO_X_ROW(name, what) {#name, &gpo_xdp_stats::name, what},
    GPO_XDP_PATHS(GPO_X_ROW)
};
constexpr StatRow kEventRows[] = {
    GPO_XDP_EVENTS(GPO_X_ROW)
#undef GPO_X_ROW
};

std::string secs(uint64_t ns) {
  if (ns == 0) return "never";
  return fmt::format("{}s", ns / 1000000000ull);
}

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
  const auto rl = j.value("rules", nlohmann::json::object());
  if (rl.is_object() && rl.value("reloads", 0ull) > 0) {
    const auto last = rl.value("last_reload", nlohmann::json::object());
    std::printf("  %llu reload(s), last: %s\n", (unsigned long long)rl.value("reloads", 0ull),
                last.value("message", std::string("?")).c_str());
  }
}

void run_status(const std::string& pin_dir_arg, bool json, size_t top_n, const std::string& status_file) {
  if (!loader::have_bpf_privileges())
    throw CLI::RuntimeError("status: reading the pinned BPF maps needs root (or CAP_BPF); run it with sudo",
                            kNoPrivilege);
  // `ip netns exec` hides the host's bpffs: find it as `run` does.
  std::string pin_dir;
  try {
    pin_dir = loader::resolve_pin_dir(pin_dir_arg);
  } catch (const loader::XdpError& e) {
    throw CLI::RuntimeError(std::string("status: ") + e.what(), kUsage);
  }
  auto open_pinned = [&](const char* name) { return UniqueFd(bpf_obj_get((pin_dir + "/" + name).c_str())); };
  UniqueFd stats = open_pinned("stats"), flows = open_pinned("flows"), config = open_pinned("config"),
           tx = open_pinned("tx_ports"), agent = open_pinned("agent");
  if (!stats.valid() || !flows.valid() || !config.valid()) {
    if (json) std::printf("%s\n", nlohmann::json{{"running", false}, {"pin_dir", pin_dir_arg}}.dump(2).c_str());
    throw CLI::RuntimeError("not running: no pinned maps under " + pin_dir_arg +
                                " (start the filter with `sudo gpuoffload-agent run --xdp IFACE`)",
                            kFailure);
  }

  gpo_xdp_stats st = loader::sum_stats(stats.get());
  gpo_xdp_config cfg{};
  uint32_t zero = 0;
  bpf_map_lookup_elem(config.get(), &zero, &cfg);
  gpo_agent_beat beat{};
  if (agent.valid()) bpf_map_lookup_elem(agent.get(), &zero, &beat);
  // Pinned links: the attachments that outlive the agent.
  std::vector<std::string> links;
  {
    std::error_code ec;
    for (auto& e : std::filesystem::directory_iterator(pin_dir, ec)) {
      std::string n = e.path().filename().string();
      if (n.rfind("xdp_link_", 0) == 0) links.push_back(n);
    }
    std::sort(links.begin(), links.end());
  }
  auto ifaces = attached_interfaces(map_id(flows.get()));
  std::vector<std::pair<std::string, std::string>> peers;
  if (tx.valid()) {
    uint32_t k, next, v;
    char a[IF_NAMESIZE], b[IF_NAMESIZE];
    for (int r = bpf_map_get_next_key(tx.get(), nullptr, &k); r == 0; r = bpf_map_get_next_key(tx.get(), &k, &next), k = next)
      if (bpf_map_lookup_elem(tx.get(), &k, &v) == 0)
        peers.emplace_back(if_indextoname(k, a) ? a : std::to_string(k), if_indextoname(v, b) ? b : std::to_string(v));
  }

  // The flow cache: size and the busiest entries (bounded by the map size).
  std::vector<FlowRow> rows;
  uint32_t max_entries = map_max_entries(flows.get());
  gpo_flow_key key, next_key;
  for (int r = bpf_map_get_next_key(flows.get(), nullptr, &key); r == 0 && rows.size() < max_entries;
       r = bpf_map_get_next_key(flows.get(), &key, &next_key), key = next_key) {
    FlowRow fr{key, {}};
    if (bpf_map_lookup_elem(flows.get(), &key, &fr.v) == 0) rows.push_back(fr);
  }
  size_t entries = rows.size();
  std::sort(rows.begin(), rows.end(), [](const FlowRow& a, const FlowRow& b) { return a.v.hits > b.v.hits; });
  if (rows.size() > top_n) rows.resize(top_n);
  uint64_t now = now_ns();
  auto age_s = [&](uint64_t t) { return t && t <= now ? double(now - t) / 1e9 : 0.0; };
  auto flow_a = [](const gpo_flow_key& k) { return addr_str(k.addr_a) + ":" + std::to_string(ntohs(k.port_a)); };
  auto flow_b = [](const gpo_flow_key& k) { return addr_str(k.addr_b) + ":" + std::to_string(ntohs(k.port_b)); };
  const char* fail = cfg.fail_policy == GPO_ACT_DROP ? "fail-closed" : "fail-open";
  const bool agent_alive = beat.pid != 0 && (kill(pid_t(beat.pid), 0) == 0 || errno == EPERM);
  const double beat_age = age_s(beat.heartbeat_ns);
  const char* frag = cfg.frag_policy == GPO_FRAG_DROP ? "drop" : "reassemble";

  if (json) {
    nlohmann::json j;
    j["running"] = !ifaces.empty();
    j["pin_dir"] = pin_dir_arg;
    j["links"] = links;
    j["agent"] = {{"pid", beat.pid}, {"alive", agent_alive}, {"heartbeat_s_ago", beat_age}};
    j["interfaces"] = nlohmann::json::array();
    for (const auto& a : ifaces)
      j["interfaces"].push_back({{"name", a.name}, {"ifindex", a.ifindex}, {"mode", a.mode}, {"prog_id", a.prog_id}});
    j["config"] = {{"fail_policy", gpo_action_name(cfg.fail_policy)},
                   {"overload_policy", loader::overload_name(cfg.overload_policy)},
                   {"credit_reserve", cfg.credit_reserve},
                   {"unparsed_policy", gpo_action_name(cfg.unparsed_policy)},
                   {"non_ip_policy", gpo_action_name(cfg.non_ip_policy)},
                   {"frag_policy", frag},
                   {"inline_mode", bool(cfg.inline_mode)},
                   {"agent_timeout_ms", cfg.agent_timeout_ns / 1000000},
                   {"tcp_timeout_s", cfg.tcp_timeout_ns / 1000000000},
                   {"tcp_closed_timeout_s", cfg.tcp_closed_timeout_ns / 1000000000},
                   {"udp_timeout_s", cfg.udp_timeout_ns / 1000000000},
                   {"other_timeout_s", cfg.other_timeout_ns / 1000000000}};
    j["tx_ports"] = nlohmann::json::object();
    for (const auto& [from, to] : peers) j["tx_ports"][from] = to;
    for (const auto& s : kStatRows) j["stats"][s.name] = {{"packets", (st.*s.c).packets}, {"bytes", (st.*s.c).bytes}};
    for (const auto& s : kEventRows) j["events"][s.name] = (st.*s.c).packets;
    j["flows"] = {{"entries", entries}, {"max_entries", max_entries}, {"top", nlohmann::json::array()}};
    if (nlohmann::json live = live_status(status_file); !live.is_null()) {
      if (live.contains("rule_set")) j["rule_set"] = live["rule_set"];
      if (live.contains("packet_filter") && live["packet_filter"].contains("rates")) {
        const auto& pf = live["packet_filter"];
        j["miss_path"] = {{"workers", pf.value("workers", 1)},
                          {"overload_policy", pf.value("overload_policy", std::string())},
                          {"rates", pf["rates"]},
                          {"socket_drops", pf.value("socket_drops", 0ull)}};
      }
    }
    for (const auto& r : rows)
      j["flows"]["top"].push_back({{"a", flow_a(r.key)}, {"b", flow_b(r.key)}, {"proto", proto_str(r.key.proto)},
                                   {"action", gpo_action_name(r.v.action)}, {"rule_id", r.v.rule_id},
                                   {"client", (r.v.flags & GPO_FLOW_CLIENT_A) ? "a" : (r.v.flags & GPO_FLOW_CLIENT_B) ? "b" : ""},
                                   {"closed", GPO_FLOW_CLOSED(r.v.flags) != 0},
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
  for (const auto& l : links) std::printf("  pinned link: %s/%s (outlives the agent)\n", pin_dir_arg.c_str(), l.c_str());
  if (beat.pid == 0) std::printf("  agent: none has run with these maps\n");
  else
    std::printf("  agent: pid %u, %s, last heartbeat %.1fs ago%s\n", beat.pid, agent_alive ? "running" : "gone",
                beat_age,
                !agent_alive || (cfg.agent_timeout_ns && beat_age * 1e9 > double(cfg.agent_timeout_ns))
                    ? " -> XDP applies the fail policy to new flows"
                    : "");
  std::printf("  mode: %s, %s (miss while the agent is gone: %s), overload: %s, unparsed packets: %s, non-IP: %s, "
              "fragments: %s\n",
              cfg.inline_mode ? "inline" : "host", fail, gpo_action_name(cfg.fail_policy),
              loader::overload_name(cfg.overload_policy), gpo_action_name(cfg.unparsed_policy),
              gpo_action_name(cfg.non_ip_policy), frag);
  std::printf("  verdict idle timeouts: tcp %s (closed %s), udp %s, other %s; agent heartbeat timeout %s\n",
              secs(cfg.tcp_timeout_ns).c_str(), secs(cfg.tcp_closed_timeout_ns).c_str(),
              secs(cfg.udp_timeout_ns).c_str(), secs(cfg.other_timeout_ns).c_str(),
              cfg.agent_timeout_ns ? fmt::format("{}ms", cfg.agent_timeout_ns / 1000000).c_str() : "off");
  for (const auto& [from, to] : peers) std::printf("  peer port: %s -> %s\n", from.c_str(), to.c_str());
  std::printf("\n  %-16s %14s %16s\n", "path", "packets", "bytes");
  for (const auto& s : kStatRows)
    std::printf("  %-16s %14llu %16llu  %s\n", s.name, (unsigned long long)(st.*s.c).packets,
                (unsigned long long)(st.*s.c).bytes, s.what);
  for (const auto& s : kEventRows)
    std::printf("  %-16s %14llu %16s  %s\n", s.name, (unsigned long long)(st.*s.c).packets, "", s.what);
  std::printf("\n  flow cache: %zu of %u entries\n", entries, max_entries);
  if (!rows.empty()) {
    std::printf("  %10s  %-6s %8s  %-5s  %s\n", "hits", "action", "rule", "seen", "flow");
    for (const auto& r : rows)
      std::printf("  %10llu  %-6s %8u  %4.0fs  %s <-> %s %s\n", (unsigned long long)r.v.hits,
                  gpo_action_name(r.v.action), r.v.rule_id, age_s(r.v.last_seen_ns), flow_a(r.key).c_str(),
                  flow_b(r.key).c_str(), proto_str(r.key.proto).c_str());
  }
}

// The offload service's part of the status file that `run` writes: its
// backend and what the planner decided. Text mode only; nothing
// when no live agent wrote the file.
void print_offload_status(const std::string& file) {
  nlohmann::json j = live_status(file);
  if (j.is_null()) return;
  const int pid = j.value("pid", 0);
  // The packet filter as the agent sees it: its counters, inspection, reassembly.
  if (j.contains("packet_filter")) {
    try {
      const auto& pf = j["packet_filter"];
      std::printf("\npacket filter agent (pid %d): %s mode, classifier %s\n", pid,
                  pf.value("mode", std::string("?")).c_str(), pf.value("classifier", std::string("?")).c_str());
      const auto& a = pf["agent"];
      std::printf("  to the agent %llu, passed %llu, dropped %llu, verdicts cached %llu, lost at the sockets %llu\n",
                  (unsigned long long)a.value("rx", 0ull), (unsigned long long)a.value("passed", 0ull),
                  (unsigned long long)a.value("dropped", 0ull), (unsigned long long)a.value("cache_installs", 0ull),
                  (unsigned long long)pf.value("socket_drops", 0ull));
      if (pf.contains("rates")) {
        const auto& r = pf["rates"];
        const auto& x = pf.value("xdp", nlohmann::json::object());
        auto pk = [&](const char* k) { return (unsigned long long)x.value(k, nlohmann::json::object()).value("packets", 0ull); };
        std::printf("  miss path: %llu worker(s); last %.1fs: %.0f misses/s, %.0f/s to the agent, %.0f/s decided, "
                    "%.0f/s overload (policy %s); overload in all: %llu passed, %llu dropped\n",
                    (unsigned long long)pf.value("workers", 1ull), r.value("seconds", 0.0), r.value("misses_per_s", 0.0),
                    r.value("to_agent_per_s", 0.0), r.value("decided_per_s", 0.0), r.value("overload_per_s", 0.0),
                    pf.value("overload_policy", std::string("?")).c_str(), pk("overload_pass"), pk("overload_drop"));
      }
      const auto& in = pf["inspection"];
      std::printf("  under inspection: %llu flows, %llu stream bytes (depth %llu, past it: %s); segments dropped: "
                  "%llu conflicting, %llu before the start, %llu over the out-of-order bound\n",
                  (unsigned long long)in.value("flows", 0ull), (unsigned long long)in.value("bytes_held", 0ull),
                  (unsigned long long)in.value("depth", 0ull), in.value("depth_policy", std::string("?")).c_str(),
                  (unsigned long long)in.value("conflicts", 0ull), (unsigned long long)in.value("before_start", 0ull),
                  (unsigned long long)in.value("ooo_full", 0ull));
      const auto& re = pf["reassembly"];
      std::printf("  fragments: %llu in, %llu datagrams reassembled, %llu held now; dropped: %llu overlapping, %llu "
                  "timed out, %llu over limits, %llu invalid\n",
                  (unsigned long long)re.value("fragments", 0ull), (unsigned long long)re.value("datagrams", 0ull),
                  (unsigned long long)re.value("datagrams_held", 0ull), (unsigned long long)re.value("overlaps", 0ull),
                  (unsigned long long)re.value("timeouts", 0ull), (unsigned long long)re.value("over_limit", 0ull),
                  (unsigned long long)re.value("invalid", 0ull));
    } catch (const std::exception&) {
      // An older agent's file: no such section.
    }
  }
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
  const std::string lane_sched = off.value("cpu_doorbells_sched", std::string());
  std::printf("  doorbells: %s; %llu by uprobe (%llu handled on the client's CPU, %llu CPUs with a doorbell "
              "thread%s), %llu by socket\n",
              off.value("doorbell", std::string("?")).c_str(), u64(off, "doorbells_uprobe"),
              u64(off, "doorbells_on_client_cpu"), u64(off, "cpu_doorbells"),
              lane_sched.empty() ? "" : (": " + lane_sched).c_str(), u64(off, "doorbells_socket"));
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
    std::printf("  per job in the agent: %.1f us from the doorbell to the claim, %.1f us gathering, %.1f us at the "
                "backend, %.1f us completing; %llu of %llu jobs ran on the CPU where their client waited\n",
                t.value("reaching", 0.0), t.value("gathering", 0.0), t.value("at_backend", 0.0),
                t.value("completing", 0.0), u64(t, "on_client_cpu"), u64(t, "jobs"));
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
