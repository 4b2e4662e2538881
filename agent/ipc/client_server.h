// The agent's side of the offload path: a Unix socket that
// clients (libgpuoffload) register their slabs with, doorbells from the uprobe
// ring buffer or the socket, validation of every descriptor, batching of jobs
// of one op across clients (handed over at once while the backend has room,
// gathered while it has none), the backend, completion into the slab with a
// futex wake, and the plan page that keeps other jobs in their process.
// Who may connect (socket mode and group, peer credentials), what one user
// may hold (quotas per uid, a global cap on slab memory) and how clients
// share the backend (turns per user and client) are here too.
// docs/offload.md describes the protocol, docs/security.md the threat model.
#pragma once
#include <sys/socket.h>
#include <sys/types.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <map>
#include <stdexcept>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "backend/backend.h"
#include "ipc/fair_queue.h"
#include "ipc/slab_protocol.h"

namespace gpo::loop {
class EventLoop;
class OneShotTimer;
}

namespace gpo::ipc {

class DoorbellProbe;
enum class LaneSched : uint8_t;  // ipc/doorbell_probe.h
class PlanPage;

// register_with(): another live agent already serves the socket path.
struct SocketBusy : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct ServerOptions {
  std::string socket_path = GPO_DEFAULT_SOCKET;
  // Who may connect: root, the agent's own user, and members of socket_group
  // (socket 0660 and plan page 0640 in that group, and the peer's
  // credentials checked); "" or a group that does not exist: root and the
  // agent's user only. allow_all_users: socket 0666, any local user.
  std::string socket_group = "gpuoffload";
  bool allow_all_users = false;
  uint64_t max_slab_bytes = 256ull << 20;  // per client (one slab per connection)
  uint32_t max_inflight = 4096;            // jobs per client claimed and not yet completed
  // Per uid, over all its connections.
  uint64_t uid_max_slab_bytes = 1ull << 30;
  uint32_t uid_max_inflight = 16384;
  uint32_t uid_max_connections = 64;
  uint32_t uid_max_uprobe_files = 4;       // library files the uprobe doorbell attaches to for one uid
  // Slab memory of all clients together (the CUDA backend pins it); 0: a
  // quarter of the machine's memory.
  uint64_t max_slab_bytes_total = 0;
  int max_zstd_level = 19;                 // higher levels cost a worker ~1 GB; the client runs those
  uint32_t batch_max = 64;                 // jobs of one op handed to the backend at once
  uint64_t batch_max_bytes = 256ull << 20; // ... and at most this much input (at least one job)
  uint32_t batch_window_us = 200;          // fixed windows only: wait at most this long for a batch to fill
  // true: jobs go to the backend at once while it has room (Backend::capacity())
  // and gather into the next batch while it has none, until a batch completes
  // or batch_max are waiting. false: fixed windows of batch_window_us (tests).
  bool flush_when_idle = true;
  bool uprobe_doorbell = true;             // try the BPF doorbell (needs root); else socket only
  // The uprobe doorbell rings a thread of the agent pinned to the client's
  // CPU (a ring and thread per CPU) instead of the event loop. Only with
  // flush_when_idle: fixed windows are the loop's. Scheduled to preempt
  // (cpu_doorbell_sched), it claims a job in 17-44 us where the loop takes
  // 100-135 us on a 16-vCPU virtual machine (docs/offload.md, "Doorbell threads").
  bool cpu_doorbells = true;
  // How those threads are scheduled: the first the kernel grants from this
  // one on (LaneSched{}: SCHED_FIFO first).
  LaneSched cpu_doorbell_sched{};
  // The plan page clients read (socket path + ".plan"): per op id, from which
  // input size jobs come to the agent (GPO_PLAN_NEVER: none). Default: all.
  bool plan_page = true;
  std::array<uint64_t, GPO_PLAN_OPS> plan_min_bytes{};
};

struct ServerStats {
  uint64_t clients = 0;              // connections accepted
  uint64_t connections_refused = 0;  // credentials, or the uid's connection quota
  uint64_t accept_no_fd = 0;         // connections dropped because the agent was out of file descriptors
  uint64_t slabs = 0;                // slabs registered
  uint64_t slabs_released = 0;
  uint64_t registrations_refused = 0;
  uint64_t doorbells_socket = 0;
  uint64_t doorbells_uprobe = 0;
  uint64_t doorbells_on_client_cpu = 0;  // uprobe doorbells handled on the CPU the client rang on
  uint64_t doorbells_refused = 0;    // unknown slab, or a slab of another process
  uint64_t doorbells_stale = 0;      // job not SUBMITTED (already taken or revoked)
  uint64_t jobs_rejected = 0;        // descriptor out of bounds, unknown op, mismatch
  uint64_t jobs_over_quota = 0;
  uint64_t jobs_done = 0;            // completed into the slab (DONE)
  uint64_t jobs_released = 0;        // finished after the client abandoned them
  uint64_t batches = 0;
  uint64_t slab_bytes = 0;           // registered now, all clients
  uint64_t doorbells_lost = 0;       // uprobe doorbells lost to a full ring buffer
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
  // Mean time per job in the agent, in us: reaching it (from the client's
  // doorbell to the claim), gathering into a batch, at the backend (its queue
  // and the run), completing (results, futex wakes).
  nlohmann::json per_job_us() const;
  std::string describe() const;  // one line: socket, doorbell mode, batching
  bool uprobe_doorbell() const { return probe_ != nullptr; }
  size_t cpu_doorbells() const;  // CPUs whose clients ring a thread of the agent on that CPU
  // Of those, how many threads got each LaneSched: "16 fifo", "12 short-slice, 4 normal"...
  std::string cpu_doorbells_sched() const;
  size_t cpu_doorbells_scheduled(LaneSched s) const;
  size_t uprobe_files() const;   // library files the doorbell uprobe is attached to now
  const ServerOptions& options() const { return opt_; }

 private:
  struct Slab;
  struct Conn;
  struct Pending;
  struct Running;
  struct UidAccount;

  void listen_on_socket();
  void on_accept();
  void shed_one_connection();  // out of fds: accept and close one with the reserve fd
  void pause_listening();
  void listen_again();  // the pause is over
  bool peer_allowed(int fd, const ucred& cred) const;
  void on_conn(int fd);
  void close_conn(int fd);
  void refuse_conn(int fd, const std::string& why);  // sends GPO_MSG_REFUSED, closes
  // Returns false when the connection was closed.
  bool on_register(Conn& c, const gpo_msg_register& m, int memfd);
  std::string attach_uprobe(Conn& c, const std::string& lib, std::string* why);
  // cpu: where the client rang (the uprobe doorbell), or kSocketDoorbell.
  // Any thread: the loop's or a CPU's doorbell thread; takes mu_.
  static constexpr int32_t kSocketDoorbell = -1;
  void on_doorbell(pid_t tgid, uint32_t slab_id, uint32_t job, uint32_t op, uint64_t len, int32_t cpu);
  std::shared_ptr<UidAccount> account(uid_t uid);
  // mu_ held by the caller:
  void flush(uint16_t op);
  void flush_all();
  void flush_while_room();  // a batch completed: what waited goes now
  bool has_room() const;
  bool may_queue() const;   // a full batch may wait at the backend
  void arm_timer();
  static void complete(Slab& s, uint32_t job, uint8_t status, uint64_t out_len, const uint8_t* tag);

  ServerOptions opt_;
  backend::Backend& be_;
  loop::EventLoop* loop_ = nullptr;
  int listen_fd_ = -1;
  bool listening_ = false;  // listen_fd_ in the loop (false while paused)
  dev_t sock_dev_ = 0;      // the socket file bound, so that only it is removed
  ino_t sock_ino_ = 0;
  gid_t group_gid_ = gid_t(-1);  // socket_group's gid, when it exists
  std::string access_;           // "0660 root:gpuoffload", for the log and status
  int reserve_fd_ = -1;          // given up to accept (and close) a connection when out of fds
  std::unique_ptr<loop::OneShotTimer> pause_timer_;  // listening again after a pause
  std::unique_ptr<loop::OneShotTimer> window_timer_; // fixed batching windows: the window's end
  int wake_fd_ = -1;  // eventfd: a backend thread says a batch completed while jobs wait
  std::unique_ptr<PlanPage> plan_;
  std::unique_ptr<DoorbellProbe> probe_;
  std::string probe_why_;
  std::map<int, std::unique_ptr<Conn>> conns_;
  std::string cpu_doorbells_why_;  // why some or all CPUs ring the loop instead
  // What doorbells touch, from the loop and the CPUs' doorbell threads: the
  // slabs by id (the loop adds and removes them under mu_ and reads them
  // without), the jobs waiting for a batch and the batches' hand-over.
  std::mutex mu_;
  std::map<uint32_t, std::shared_ptr<Slab>> slabs_;
  uint32_t next_slab_id_ = 1;
  std::map<uint16_t, FairQueue<Pending>> pending_;  // claimed jobs waiting for their batch, per op
  uint16_t next_op_ = 0;                             // ops take turns too
  mutable std::mutex acct_mu_;                       // uids_ (the loop thread adds, status reads)
  std::map<uid_t, std::shared_ptr<UidAccount>> uids_;

  struct AtomicStats;
  std::shared_ptr<AtomicStats> st_;
};

}  // namespace gpo::ipc
