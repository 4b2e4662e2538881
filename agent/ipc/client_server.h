// The agent's side of the offload path: a Unix socket that
// clients (libgpuoffload) register their slabs with, doorbells from the uprobe
// ring buffer or the socket, validation of every descriptor, batching of jobs
// of one op across clients (handed over at once while the backend has room,
// gathered while it has none), the backend, completion into the slab with a
// futex wake, and the plan page that keeps other jobs in their process.
// docs/offload.md describes the protocol and the security model.
#pragma once
#include <sys/types.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "backend/backend.h"
#include "ipc/slab_protocol.h"

namespace gpo::loop {
class EventLoop;
}

namespace gpo::ipc {

class DoorbellProbe;
class PlanPage;

// register_with(): another live agent already serves the socket path.
struct SocketBusy : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct ServerOptions {
  std::string socket_path = GPO_DEFAULT_SOCKET;
  uint64_t max_slab_bytes = 256ull << 20;  // per client
  uint32_t max_inflight = 4096;            // jobs per client claimed and not yet completed
  uint32_t batch_max = 64;                 // jobs of one op handed to the backend at once
  uint32_t batch_window_us = 200;          // fixed windows only: wait at most this long for a batch to fill
  // true: jobs go to the backend at once while it has room (Backend::capacity())
  // and gather into the next batch while it has none, until a batch completes
  // or batch_max are waiting. false: fixed windows of batch_window_us (tests).
  bool flush_when_idle = true;
  bool uprobe_doorbell = true;             // try the BPF doorbell (needs root); else socket only
  // The plan page clients read (socket path + ".plan"): per op id, from which
  // input size jobs come to the agent (GPO_PLAN_NEVER: none). Default: all.
  bool plan_page = true;
  std::array<uint64_t, GPO_PLAN_OPS> plan_min_bytes{};
};

struct ServerStats {
  uint64_t clients = 0;              // connections accepted
  uint64_t slabs = 0;                // slabs registered
  uint64_t slabs_released = 0;
  uint64_t registrations_refused = 0;
  uint64_t doorbells_socket = 0;
  uint64_t doorbells_uprobe = 0;
  uint64_t doorbells_refused = 0;    // unknown slab, or a slab of another process
  uint64_t doorbells_stale = 0;      // job not SUBMITTED (already taken or revoked)
  uint64_t jobs_rejected = 0;        // descriptor out of bounds, unknown op, mismatch
  uint64_t jobs_over_quota = 0;
  uint64_t jobs_done = 0;            // completed into the slab (DONE)
  uint64_t jobs_released = 0;        // finished after the client abandoned them
  uint64_t batches = 0;
};

class ClientServer {
 public:
  ClientServer(ServerOptions opt, backend::Backend& be);
  ~ClientServer();
  ClientServer(const ClientServer&) = delete;
  ClientServer& operator=(const ClientServer&) = delete;

  // Listens on the socket (replacing a stale one), loads the uprobe doorbell
  // when possible, and adds its fds to loop. Throws std::runtime_error with a
  // one-line reason when the socket cannot be created.
  void register_with(loop::EventLoop& loop);
  // Removes the fds, closes every connection, unlinks the socket.
  void unregister(loop::EventLoop& loop);

  ServerStats stats() const;
  // Updates the plan page (no-op without one): jobs of op with at least
  // min_bytes of input come to the agent.
  void set_plan(uint16_t op, uint64_t min_bytes);
  std::string plan_page_path() const;  // "" without one
  nlohmann::json to_json() const;
  nlohmann::json plan_json() const;  // the plan page: path and per op the clients' threshold
  // Mean time per job in the agent, in us: gathering into a batch, at the
  // backend (its queue and the run), completing (results, futex wakes).
  nlohmann::json per_job_us() const;
  std::string describe() const;  // one line: socket, doorbell kind, batching
  bool uprobe_doorbell() const { return probe_ != nullptr; }

 private:
  struct Slab;
  struct Conn;
  struct Pending;
  struct Running;

  void on_accept();
  void on_conn(int fd);
  void close_conn(int fd);
  void on_register(Conn& c, const gpo_msg_register& m, int memfd);
  void on_doorbell(pid_t tgid, uint32_t slab_id, uint32_t job, uint32_t op, uint64_t len, bool uprobe);
  void flush(uint16_t op);
  void flush_all();
  void flush_while_room();  // a batch completed: what waited goes now
  bool has_room() const;
  void arm_timer();
  static void complete(Slab& s, uint32_t job, uint8_t status, uint64_t out_len, const uint8_t* tag);

  ServerOptions opt_;
  backend::Backend& be_;
  loop::EventLoop* loop_ = nullptr;
  int listen_fd_ = -1;
  int timer_fd_ = -1;
  bool timer_armed_ = false;
  int wake_fd_ = -1;  // eventfd: a backend thread says a batch completed while jobs wait
  std::unique_ptr<PlanPage> plan_;
  std::unique_ptr<DoorbellProbe> probe_;
  std::string probe_why_;
  std::map<int, std::unique_ptr<Conn>> conns_;
  std::map<uint32_t, std::shared_ptr<Slab>> slabs_;
  uint32_t next_slab_id_ = 1;
  std::map<uint16_t, std::vector<Pending>> pending_;  // claimed jobs waiting for their batch

  struct AtomicStats;
  std::shared_ptr<AtomicStats> st_;
};

}  // namespace gpo::ipc
