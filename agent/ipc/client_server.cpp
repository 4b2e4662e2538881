#include "ipc/client_server.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <stdexcept>

#include "backend/ops.h"
#include "ipc/doorbell_probe.h"
#include "ipc/plan_page.h"
#include "ipc/slab_job.h"
#include "ipc/slab_validate.h"
#include "loop/event_loop.h"
#include "util/cpus.h"
#include "util/fd_passing.h"
#include "util/log.h"

namespace gpo::ipc {

namespace {

uint64_t mono_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000u + uint64_t(ts.tv_nsec);
}

void futex_wake(uint32_t* addr) {
  // Shared (not FUTEX_PRIVATE): the waiter is another process mapping the same memfd.
  syscall(SYS_futex, addr, FUTEX_WAKE, INT32_MAX, nullptr, nullptr, 0);
}

// The address range ("start-end") of a mapping of process pid whose file is
// path, read from /proc/PID/maps: the name is compared, never resolved.
std::string mapping_of(pid_t pid, const std::string& path) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/maps");
  std::string line;
  while (std::getline(in, line)) {
    auto pos = line.find('/');
    if (pos != std::string::npos && line.compare(pos, std::string::npos, path) == 0) return line.substr(0, line.find(' '));
  }
  return "";
}

std::string errno_text(int e) { return std::strerror(e); }

constexpr std::chrono::milliseconds kListenPause{100};  // out of fds: how long the socket stays closed

// At most one warning a second from what clients can provoke (refusals,
// dropped connections): the rest go to the debug level.
bool warn_now() {
  static uint64_t last_ns = 0;
  const uint64_t now = mono_ns();
  if (now - last_ns < 1000000000u && last_ns) return false;
  last_ns = now;
  return true;
}

template <typename... A>
void client_warn(fmt::format_string<A...> f, A&&... a) {
  if (warn_now())
    log::warn(f, std::forward<A>(a)...);
  else
    log::debug(f, std::forward<A>(a)...);
}

// The same for lines that are news, not trouble (one a second at info).
template <typename... A>
void client_info(fmt::format_string<A...> f, A&&... a) {
  static uint64_t last_ns = 0;
  const uint64_t now = mono_ns();
  if (!last_ns || now - last_ns >= 1000000000u) {
    last_ns = now;
    log::info(f, std::forward<A>(a)...);
  } else {
    log::debug(f, std::forward<A>(a)...);
  }
}

uint64_t quarter_of_memory() {
  const long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? uint64_t(pages) * uint64_t(page) / 4 : 4ull << 30;
}

}  // namespace

struct ClientServer::AtomicStats {
  std::atomic<uint64_t> clients{0}, slabs{0}, slabs_released{0}, registrations_refused{0}, doorbells_socket{0},
      doorbells_uprobe{0}, doorbells_on_client_cpu{0}, doorbells_refused{0}, doorbells_stale{0}, jobs_rejected{0},
      jobs_over_quota{0}, jobs_done{0}, jobs_released{0}, batches{0}, connections_refused{0}, accept_no_fd{0};
  std::atomic<uint64_t> slab_bytes{0};  // registered and still mapped, all clients
  // In flight at the backend (handed over, not completed), and claimed jobs
  // waiting in the batcher. A completion that finds jobs waiting wakes the
  // loop through wake_fd (both sides update theirs before reading the other's).
  std::atomic<uint32_t> running_batches{0}, running_jobs{0}, waiting_jobs{0};
  std::atomic<uint64_t> running_bytes{0};  // input bytes of the jobs handed over and not completed
  // Where a job's time in the agent goes, summed over jobs: from the claim to
  // its batch's hand-over (gathering), at the backend (queue and run), and
  // writing results and waking clients (completing).
  std::atomic<uint64_t> ns_gathering{0}, ns_backend{0}, ns_completing{0}, jobs_timed{0};
  // From the client's doorbell (its rung_ns) to the claim, over the jobs
  // whose stamp is plausible (the client's clock value, not trusted further).
  std::atomic<uint64_t> ns_reaching{0}, jobs_reached{0};
  // Closed with the last reference (completions of batches still running hold one).
  int wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  ~AtomicStats() {
    if (wake_fd >= 0) close(wake_fd);
  }
};

// What one user (uid) holds: its quotas are counted here. Counters that
// completions (backend threads) or status readers touch are atomic.
struct ClientServer::UidAccount {
  uid_t uid = 0;
  std::atomic<uint32_t> connections{0}, slabs{0}, inflight{0}, uprobe_count{0};
  std::atomic<uint64_t> slab_bytes{0}, jobs{0}, refused{0}, over_quota{0};
  std::map<std::string, uint32_t> uprobe_files;  // loop thread: library files its slabs use, and how many
};

// One client's registered slab. Kept alive by the connection and by every
// batch that holds one of its jobs, so the mapping outlives a client that
// exits while the backend still writes into it.
struct ClientServer::Slab {
  uint32_t id = 0;
  pid_t owner = 0;  // SO_PEERCRED pid at registration
  uint8_t* base = nullptr;
  SlabLayout layout;
  std::atomic<uint32_t> inflight{0};
  backend::Backend* be = nullptr;
  std::shared_ptr<AtomicStats> st;  // shared: a batch may outlive the server
  std::shared_ptr<UidAccount> acct;

  gpo_job* job(uint32_t i) { return reinterpret_cast<gpo_job*>(base + layout.job_off) + i; }
  ~Slab() {
    if (base) {
      be->unregister_memory(base);
      munmap(base, layout.size);
      st->slab_bytes -= layout.size;
      acct->slab_bytes -= layout.size;
      acct->slabs--;
    }
    st->slabs_released++;
  }
};

struct ClientServer::Conn {
  int fd = -1;
  pid_t pid = 0;
  uid_t uid = 0;
  gid_t gid = 0;
  std::shared_ptr<UidAccount> acct;
  std::shared_ptr<Slab> slab;
  std::string uprobe_key;  // the library file the doorbell uprobe watches for it ("": socket doorbell)
};

// A job the agent claimed (SUBMITTED -> RUNNING), with its descriptor copied
// out of shared memory: only this copy is validated and used.
struct ClientServer::Pending {
  std::shared_ptr<Slab> slab;  // slab->acct: its user
  uint32_t job = 0;
  gpo_job d{};
  uint64_t claimed_ns = 0;  // when the doorbell claimed it (mono_ns)
  int32_t cpu = -1;         // where the client waits (the uprobe doorbell's), or -1
};

struct ClientServer::Running {
  backend::Batch batch;
  std::vector<Pending> items;  // items[i] is batch.jobs[i]
};

ClientServer::ClientServer(ServerOptions opt, backend::Backend& be)
    : opt_(std::move(opt)), be_(be), st_(std::make_shared<AtomicStats>()) {
  if (opt_.max_slab_bytes_total == 0) opt_.max_slab_bytes_total = quarter_of_memory();
}

ClientServer::~ClientServer() {
  if (loop_) unregister(*loop_);
  if (reserve_fd_ >= 0) close(reserve_fd_);
}

void ClientServer::listen_on_socket() {
  const std::string& path = opt_.socket_path;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) throw std::runtime_error("offload socket path too long: " + path);
  std::strcpy(addr.sun_path, path.c_str());
  std::error_code ec;
  auto dir = std::filesystem::path(path).parent_path();
  if (!dir.empty()) std::filesystem::create_directories(dir, ec);

  std::string group_note;
  if (!opt_.socket_group.empty()) {
    group gr{}, *res = nullptr;
    std::vector<char> buf(16384);
    if (getgrnam_r(opt_.socket_group.c_str(), &gr, buf.data(), buf.size(), &res) == 0 && res)
      group_gid_ = gr.gr_gid;
    else
      group_note = " (group " + opt_.socket_group + " does not exist: create it with tools/install-deps or "
                   "`groupadd --system " + opt_.socket_group + "`)";
  }

  // What is at the path: nothing; a socket of this user that refuses
  // connections (the leftover of a killed agent: replaced); one that accepts
  // them (a live agent: never stolen); or anything else, left alone.
  struct stat st {};
  if (lstat(path.c_str(), &st) == 0) {
    if (!S_ISSOCK(st.st_mode) || st.st_uid != geteuid())
      throw std::runtime_error("offload socket " + path + " exists and is not a socket of this user (uid " +
                               std::to_string(geteuid()) + "): not replacing it; remove it or use --offload-socket PATH");
    int probe = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    if (probe < 0) throw std::runtime_error("offload socket: " + errno_text(errno));
    const int rc = connect(probe, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    const int e = errno;
    close(probe);
    if (rc == 0) throw SocketBusy("offload socket " + path + " is served by another agent");
    if (e != ECONNREFUSED)
      throw std::runtime_error("offload socket " + path + ": cannot tell whether another agent serves it (" +
                               errno_text(e) + ")");
    unlink(path.c_str());
  } else if (errno != ENOENT) {
    throw std::runtime_error("offload socket " + path + ": " + errno_text(errno));
  }

  listen_fd_ = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) throw std::runtime_error("offload socket: " + errno_text(errno));
  // The file takes its mode from the socket's inode and the umask at bind():
  // set both, so it never exists with more rights and is never chmod-ed by
  // name (a name another process could point elsewhere).
  const mode_t mode = opt_.allow_all_users ? 0666 : 0660;
  int rc = fchmod(listen_fd_, mode);
  int e = errno;
  if (rc == 0) {
    const mode_t old = umask(~mode & 0777);  // process-wide, for the one bind() (no thread creates files now)
    rc = bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
    e = errno;
    umask(old);
  }
  if (rc == 0 && lstat(path.c_str(), &st) == 0) {
    sock_dev_ = st.st_dev;
    sock_ino_ = st.st_ino;
  }
  // The group: set on the name bind() just created (a socket cannot be
  // opened), not following a link; connections wait until listen().
  if (rc == 0 && group_gid_ != gid_t(-1) &&
      fchownat(AT_FDCWD, path.c_str(), uid_t(-1), group_gid_, AT_SYMLINK_NOFOLLOW) != 0) {
    group_note = " (could not give it group " + opt_.socket_group + ": " + errno_text(errno) + ")";
  }
  if (rc == 0) {
    rc = listen(listen_fd_, 128);
    e = errno;
  }
  if (rc != 0) {
    close(listen_fd_);
    listen_fd_ = -1;
    throw std::runtime_error("offload socket " + path + ": " + errno_text(e) +
                             " (is the directory writable? use --offload-socket PATH)");
  }
  // Who the file lets in is who the credentials check lets in: its group.
  if (lstat(path.c_str(), &st) == 0 && !opt_.allow_all_users) group_gid_ = st.st_gid;
  std::string gname = std::to_string(group_gid_);
  {
    group gr{}, *res = nullptr;
    std::vector<char> buf(16384);
    if (getgrgid_r(group_gid_, &gr, buf.data(), buf.size(), &res) == 0 && res) gname = gr.gr_name;
  }
  access_ = opt_.allow_all_users ? fmt::format("{:04o}, every local user", mode)
                                 : fmt::format("{:04o}, root and group {}", mode, gname);
  if (!group_note.empty() && !opt_.allow_all_users)
    log::warn("offload: socket {}: only root and group {} may connect{}", path, gname, group_note);
}

void ClientServer::register_with(loop::EventLoop& loop) {
  loop_ = &loop;
  listen_on_socket();
  reserve_fd_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (reserve_fd_ < 0) throw std::runtime_error("offload: out of file descriptors at start: " + errno_text(errno));
  pause_timer_ = std::make_unique<loop::OneShotTimer>(loop, [this] { listen_again(); });
  window_timer_ = std::make_unique<loop::OneShotTimer>(loop, [this] {
    std::lock_guard lk(mu_);
    flush_all();
  });
  loop.add_fd(listen_fd_, [this] { on_accept(); });
  listening_ = true;

  wake_fd_ = st_->wake_fd;
  if (wake_fd_ < 0) throw std::runtime_error(std::string("offload: eventfd: ") + std::strerror(errno));
  loop.add_fd(wake_fd_, [this] {
    uint64_t n;
    while (read(wake_fd_, &n, sizeof(n)) > 0) {
    }
    std::lock_guard lk(mu_);
    flush_while_room();
  });

  if (opt_.uprobe_doorbell) {
    if (geteuid() != 0) {
      probe_why_ = "not root";
    } else {
      probe_ = DoorbellProbe::load(
          [this](const gpo_doorbell_event& e, bool on_its_cpu) {
            if (on_its_cpu) st_->doorbells_on_client_cpu++;
            on_doorbell(pid_t(e.tgid), e.slab_id, e.job, e.op, e.len, int32_t(e.cpu));
          },
          &probe_why_);
      if (probe_) {
        probe_->register_with(loop);
        if (!opt_.cpu_doorbells) {
          cpu_doorbells_why_ = "disabled";
        } else if (!opt_.flush_when_idle) {
          cpu_doorbells_why_ = "fixed batching windows";
        } else {
          const size_t n = probe_->start_cpu_lanes(util::allowed_cpus(), opt_.cpu_doorbell_sched, &cpu_doorbells_why_);
          if (n == 0 && cpu_doorbells_why_.empty()) cpu_doorbells_why_ = "no CPU in the agent's affinity mask";
          else if (!cpu_doorbells_why_.empty())
            log::warn("offload: {} CPUs ring a doorbell thread of their own, the others the event loop ({})", n,
                      cpu_doorbells_why_);
        }
      }
    }
  } else {
    probe_why_ = "disabled";
  }

  if (opt_.plan_page) {
    std::string why;
    // Readable by those who may connect: others would only try and be refused.
    plan_ = PlanPage::create(ipc::plan_page_path(opt_.socket_path), opt_.allow_all_users ? 0644 : 0640,
                             opt_.allow_all_users ? gid_t(-1) : group_gid_, &why);
    if (!plan_) {
      log::warn("offload: no plan page ({}); clients without it keep every job in their process", why);
    } else {
      for (uint16_t op = 0; op < GPO_PLAN_OPS; ++op) plan_->set(op, opt_.plan_min_bytes[op]);
      plan_->set_serving(true);
    }
  }
}

void ClientServer::set_plan(uint16_t op, uint64_t min_bytes) {
  if (op < GPO_PLAN_OPS) opt_.plan_min_bytes[op] = min_bytes;
  if (plan_) plan_->set(op, min_bytes);
}

std::string ClientServer::plan_page_path() const { return plan_ ? plan_->path() : ""; }

void ClientServer::unregister(loop::EventLoop& loop) {
  if (!loop_) return;
  plan_.reset();  // clients stop sending before the socket goes
  if (probe_) probe_->stop_cpu_lanes();  // from here on only the loop claims
  {
    std::lock_guard lk(mu_);
    flush_all();
  }
  while (!conns_.empty()) close_conn(conns_.begin()->first);
  if (probe_) {
    probe_->unregister(loop);
    probe_.reset();
  }
  window_timer_.reset();
  if (wake_fd_ >= 0) {
    loop.remove_fd(wake_fd_);  // closed with st_: completions still to come may write it
    wake_fd_ = -1;
  }
  pause_timer_.reset();
  if (listen_fd_ >= 0) {
    if (listening_) loop.remove_fd(listen_fd_);
    listening_ = false;
    close(listen_fd_);
    listen_fd_ = -1;
    // Only the socket this agent bound: a file put in its place stays.
    struct stat st {};
    if (lstat(opt_.socket_path.c_str(), &st) == 0 && st.st_dev == sock_dev_ && st.st_ino == sock_ino_)
      unlink(opt_.socket_path.c_str());
  }
  loop_ = nullptr;
}

void ClientServer::on_accept() {
  for (int n = 0; n < 64 && listening_; ++n) {  // bounded: the loop's other fds get their turn
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR || errno == ECONNABORTED) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      if (errno == EMFILE || errno == ENFILE) {
        shed_one_connection();
        continue;
      }
      // Anything else (ENOMEM, ENOBUFS): the socket stays readable, and the
      // loop is level-triggered: stop listening for a moment instead of spinning.
      client_warn("offload: accept: {}; not taking connections for 100 ms", errno_text(errno));
      pause_listening();
      return;
    }
    ucred cred{};
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
      close(fd);
      continue;
    }
    if (!peer_allowed(fd, cred)) {
      refuse_conn(fd, fmt::format("uid {} may not use this agent (not root, not in its group)", cred.uid));
      continue;
    }
    auto acct = account(cred.uid);
    if (acct->connections.load() >= opt_.uid_max_connections) {
      acct->refused++;
      refuse_conn(fd, fmt::format("uid {} has {} connections, its quota (--offload-uid-connections)", cred.uid,
                                  acct->connections.load()));
      continue;
    }
    try {
      loop_->add_fd(fd, [this, fd] { on_conn(fd); });
    } catch (const std::exception& e) {
      // epoll full (max_user_watches) or out of memory: this client computes locally.
      client_warn("offload: cannot watch a new connection ({}); dropping it", e.what());
      close(fd);
      continue;
    }
    auto c = std::make_unique<Conn>();
    c->fd = fd;
    c->pid = cred.pid;
    c->uid = cred.uid;
    c->gid = cred.gid;
    c->acct = acct;
    acct->connections++;
    conns_[fd] = std::move(c);
    st_->clients++;
  }
}

void ClientServer::shed_one_connection() {
  // Out of file descriptors: the waiting connection would keep the listening
  // socket readable and the level-triggered loop spinning. The reserve fd
  // makes room to accept it and close it (its client computes locally).
  st_->accept_no_fd++;
  client_warn("offload: out of file descriptors ({}): dropped a connection; raise the agent's RLIMIT_NOFILE "
              "(LimitNOFILE=) or lower --offload-uid-connections",
              errno_text(errno));
  if (reserve_fd_ >= 0) {
    close(reserve_fd_);
    reserve_fd_ = -1;
    int c = accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (c >= 0) close(c);
  }
  reserve_fd_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (reserve_fd_ < 0) pause_listening();  // another thread took it: wait for fds to free up
}

void ClientServer::pause_listening() {
  if (!listening_) return;
  loop_->remove_fd(listen_fd_);
  listening_ = false;
  if (!pause_timer_->arm(kListenPause))
    log::error("offload: timerfd_settime: {}; the socket stays closed", errno_text(errno));
}

void ClientServer::listen_again() {
  if (listening_ || listen_fd_ < 0) return;
  if (reserve_fd_ < 0) reserve_fd_ = open("/dev/null", O_RDONLY | O_CLOEXEC);
  try {
    loop_->add_fd(listen_fd_, [this] { on_accept(); });
    listening_ = true;
  } catch (const std::exception& e) {
    log::warn("offload: cannot listen again yet ({}); retrying", e.what());
    pause_timer_->arm(kListenPause);
  }
}

bool ClientServer::peer_allowed(int fd, const ucred& cred) const {
  if (opt_.allow_all_users || cred.uid == 0 || cred.uid == geteuid()) return true;
  if (group_gid_ == gid_t(-1)) return false;
  if (cred.gid == group_gid_) return true;
  // The peer's supplementary groups as they were at connect() (SO_PEERGROUPS, Linux 4.13).
  std::vector<gid_t> groups(64);
  socklen_t len = socklen_t(groups.size() * sizeof(gid_t));
  if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &len) != 0) {
    if (errno != ERANGE) return false;
    groups.resize(len / sizeof(gid_t) + 1);
    len = socklen_t(groups.size() * sizeof(gid_t));
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &len) != 0) return false;
  }
  groups.resize(len / sizeof(gid_t));
  return std::find(groups.begin(), groups.end(), group_gid_) != groups.end();
}

void ClientServer::refuse_conn(int fd, const std::string& why) {
  st_->connections_refused++;
  client_warn("offload: refused a connection: {}", why);
  gpo_msg_registered rep{};
  rep.type = GPO_MSG_REFUSED;
  std::snprintf(rep.reason, sizeof(rep.reason), "%s", why.c_str());
  // Best effort: the client falls back either way (it sees the close).
  [[maybe_unused]] ssize_t n = send(fd, &rep, sizeof(rep), MSG_NOSIGNAL | MSG_DONTWAIT);
  close(fd);
}

std::shared_ptr<ClientServer::UidAccount> ClientServer::account(uid_t uid) {
  std::lock_guard lk(acct_mu_);
  auto& a = uids_[uid];
  if (!a) {
    a = std::make_shared<UidAccount>();
    a->uid = uid;
  }
  return a;
}

void ClientServer::close_conn(int fd) {
  auto it = conns_.find(fd);
  if (it == conns_.end()) return;
  loop_->remove_fd(fd);
  close(fd);
  Conn& c = *it->second;
  c.acct->connections--;
  if (!c.uprobe_key.empty()) {
    if (probe_) probe_->release(c.uprobe_key);
    auto f = c.acct->uprobe_files.find(c.uprobe_key);
    if (f != c.acct->uprobe_files.end() && --f->second == 0) {
      c.acct->uprobe_files.erase(f);
      c.acct->uprobe_count--;
    }
  }
  if (c.slab) {
    log::debug("offload: client pid {} gone, slab {} released", c.pid, c.slab->id);
    std::lock_guard lk(mu_);
    slabs_.erase(c.slab->id);
  }
  conns_.erase(it);  // the slab is unmapped once no batch holds it
}

void ClientServer::on_conn(int fd) {
  for (int n = 0; n < 256; ++n) {  // bounded: other clients get their turn
    auto it = conns_.find(fd);
    if (it == conns_.end()) return;
    Conn& c = *it->second;
    union {
      gpo_msg_register reg;
      gpo_msg_doorbell bell;
      uint32_t type;
    } m{};
    // Only one fd is expected: the memfd of a registration (others are closed).
    util::Received got = util::recv_with_fd(fd, &m, sizeof(m), MSG_DONTWAIT);
    const ssize_t r = got.len;
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (r <= 0) {
      close_conn(fd);
      return;
    }
    if (size_t(r) >= sizeof(gpo_msg_register) && m.type == GPO_MSG_REGISTER) {
      if (!on_register(c, m.reg, got.fd.get())) return;
      continue;
    } else if (size_t(r) >= sizeof(gpo_msg_doorbell) && m.type == GPO_MSG_DOORBELL) {
      // The socket's peer is the process: same check as the kernel-stamped tgid.
      on_doorbell(c.pid, m.bell.slab_id, m.bell.job, m.bell.op, m.bell.len, kSocketDoorbell);
    } else {
      st_->doorbells_refused++;
    }
  }
}

bool ClientServer::on_register(Conn& c, const gpo_msg_register& m, int memfd) {
  gpo_msg_registered rep{};
  UidAccount& acct = *c.acct;
  // A refused client falls back to its own CPU and may try again later; the
  // connection goes (its quota with it).
  auto refuse = [&](const std::string& why) {
    st_->registrations_refused++;
    acct.refused++;
    client_warn("offload: refused slab of pid {} (uid {}): {}", c.pid, c.uid, why);
    rep.type = GPO_MSG_REFUSED;
    std::snprintf(rep.reason, sizeof(rep.reason), "%s", why.c_str());
    [[maybe_unused]] ssize_t n = send(c.fd, &rep, sizeof(rep), MSG_NOSIGNAL | MSG_DONTWAIT);
    close_conn(c.fd);
    return false;
  };
  if (c.slab) return refuse("one slab per connection");
  if (m.version != GPO_PROTO_VERSION) return refuse("protocol version " + std::to_string(m.version));
  if (memfd < 0) return refuse("no memfd attached");
  if (m.slab_size > opt_.max_slab_bytes)
    return refuse(fmt::format("slab of {} bytes over the per-client quota of {} (--offload-max-slab-mb)",
                              m.slab_size, opt_.max_slab_bytes));
  if (acct.slab_bytes.load() + m.slab_size > opt_.uid_max_slab_bytes)
    return refuse(fmt::format("uid {} holds {} bytes of slabs; {} more would pass its quota of {} "
                              "(--offload-uid-slab-mb)",
                              c.uid, acct.slab_bytes.load(), m.slab_size, opt_.uid_max_slab_bytes));
  if (st_->slab_bytes.load() + m.slab_size > opt_.max_slab_bytes_total)
    return refuse(fmt::format("the agent holds {} bytes of slabs; {} more would pass its cap of {} "
                              "(--offload-max-slab-total-mb)",
                              st_->slab_bytes.load(), m.slab_size, opt_.max_slab_bytes_total));
  // Sealed against shrinking, or the client could truncate it under the agent (SIGBUS).
  int seals = fcntl(memfd, F_GET_SEALS);
  if (seals < 0 || !(seals & F_SEAL_SHRINK)) return refuse("memfd not sealed with F_SEAL_SHRINK");
  struct stat st {};
  if (fstat(memfd, &st) != 0 || uint64_t(st.st_size) < m.slab_size) return refuse("memfd smaller than slab_size");
  const SlabLayout layout{m.slab_size, m.njobs, m.job_off, m.data_off};
  if (const char* why = check_layout(layout)) return refuse(std::string("slab layout: ") + why);
  void* p = mmap(nullptr, m.slab_size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
  if (p == MAP_FAILED) return refuse(std::string("mmap: ") + std::strerror(errno));
  auto s = std::make_shared<Slab>();
  s->id = next_slab_id_++;
  s->owner = c.pid;
  s->base = static_cast<uint8_t*>(p);
  s->layout = layout;
  s->be = &be_;
  s->st = st_;
  s->acct = c.acct;
  st_->slab_bytes += m.slab_size;
  acct.slab_bytes += m.slab_size;
  acct.slabs++;
  // Pinned only once the GPU gets work in it: registration does not wait for
  // every page of the slab to be faulted in and locked.
  if (!be_.register_memory(p, m.slab_size, backend::Backend::Pin::on_first_gpu_use))
    log::warn("offload: backend could not pin slab {} (pid {})", s->id, c.pid);
  c.slab = s;
  {
    std::lock_guard lk(mu_);
    slabs_[s->id] = s;
  }
  st_->slabs++;

  rep.type = GPO_MSG_REGISTERED;
  rep.slab_id = s->id;
  rep.max_inflight = opt_.max_inflight;
  rep.doorbell = GPO_DOORBELL_SOCKET;
  const std::string lib(m.lib_path, strnlen(m.lib_path, sizeof(m.lib_path)));
  if (probe_ && !lib.empty() && lib[0] == '/') {
    std::string why;
    c.uprobe_key = attach_uprobe(c, lib, &why);
    if (!c.uprobe_key.empty()) rep.doorbell = GPO_DOORBELL_UPROBE;
    else client_info("offload: socket doorbell for pid {}: {}", c.pid, why);
  }
  log::debug("offload: pid {} (uid {}) registered slab {} ({} bytes, {} jobs, {} doorbell)", c.pid, c.uid, s->id,
             layout.size, layout.njobs, rep.doorbell == GPO_DOORBELL_UPROBE ? "uprobe" : "socket");
  // A client that cannot hear the answer would never use the slab the agent
  // maps and pins for it: drop it now.
  if (send(c.fd, &rep, sizeof(rep), MSG_NOSIGNAL | MSG_DONTWAIT) != ssize_t(sizeof(rep))) {
    client_warn("offload: pid {}: reply not delivered ({}); slab {} dropped", c.pid, errno_text(errno), s->id);
    close_conn(c.fd);
    return false;
  }
  return true;
}

std::string ClientServer::attach_uprobe(Conn& c, const std::string& lib, std::string* why) {
  // The file the client names must be one it maps: open that mapping
  // through /proc/PID/map_files (the kernel's own reference to the file, no
  // name the client controls is resolved), then parse and probe it only if
  // root owns it and nobody else can write it: its ELF is read here, as root.
  const std::string range = mapping_of(c.pid, lib);
  if (range.empty()) {
    *why = lib + " is not mapped by pid " + std::to_string(c.pid);
    return "";
  }
  const std::string mf = "/proc/" + std::to_string(c.pid) + "/map_files/" + range;
  // O_PATH: nothing is opened for reading until the file is known to be a
  // regular file of root's (a device node is never opened here).
  int fd = open(mf.c_str(), O_PATH | O_CLOEXEC);
  if (fd < 0) {
    *why = mf + ": " + errno_text(errno);
    return "";
  }
  struct stat st {};
  std::string key;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    *why = lib + ": not a regular file";
  } else if (st.st_uid != 0 || (st.st_mode & 022)) {
    *why = fmt::format("{} is owned by uid {} with mode {:04o}: the uprobe doorbell goes only on library files that "
                       "root owns and only root can write",
                       lib, st.st_uid, st.st_mode & 07777);
  } else {
    key = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
    auto& files = c.acct->uprobe_files;
    if (!files.count(key) && files.size() >= opt_.uid_max_uprobe_files) {
      *why = fmt::format("uid {} already has {} library files under the uprobe doorbell", c.uid, files.size());
      key.clear();
    } else if (!probe_->attach(fd, key, why)) {
      *why = lib + ": " + *why;
      key.clear();
    } else if (files[key]++ == 0) {
      c.acct->uprobe_count++;
    }
  }
  close(fd);
  return key;
}

void ClientServer::complete(Slab& s, uint32_t i, uint8_t status, uint64_t out_len, const uint8_t* tag) {
  gpo_job* j = s.job(i);
  j->status = status;
  j->out_len = out_len;
  if (tag) std::memcpy(j->tag, tag, 16);
  j->done_ns = mono_ns();
  uint32_t expect = GPO_JOB_RUNNING;
  if (__atomic_compare_exchange_n(&j->state, &expect, GPO_JOB_DONE, false, __ATOMIC_RELEASE, __ATOMIC_RELAXED)) {
    s.st->jobs_done++;
  } else {
    // The client gave up on it (ABANDONED): hand the buffers back, result unused.
    __atomic_store_n(&j->state, GPO_JOB_RELEASED, __ATOMIC_RELEASE);
    s.st->jobs_released++;
  }
  futex_wake(&j->state);
}

void ClientServer::on_doorbell(pid_t tgid, uint32_t slab_id, uint32_t job, uint32_t op, uint64_t len, int32_t cpu) {
  (cpu == kSocketDoorbell ? st_->doorbells_socket : st_->doorbells_uprobe)++;
  std::lock_guard lk(mu_);
  auto it = slabs_.find(slab_id);
  // Only the process that registered a slab may ring for it; anything else is
  // dropped without touching any slab.
  if (it == slabs_.end() || it->second->owner != tgid || job >= it->second->layout.njobs) {
    st_->doorbells_refused++;
    return;
  }
  auto& s = it->second;
  gpo_job* j = s->job(job);
  uint32_t expect = GPO_JOB_SUBMITTED;
  if (!__atomic_compare_exchange_n(&j->state, &expect, GPO_JOB_RUNNING, false, __ATOMIC_ACQUIRE, __ATOMIC_RELAXED)) {
    st_->doorbells_stale++;  // a second ring, or the client already took it back
    return;
  }
  Pending p;
  p.slab = s;
  p.job = job;
  p.claimed_ns = mono_ns();
  p.cpu = cpu;
  std::memcpy(&p.d, j, sizeof(gpo_job));  // from here on only the copy counts
  if (p.d.rung_ns && p.d.rung_ns <= p.claimed_ns && p.claimed_ns - p.d.rung_ns < 10'000'000'000ull) {
    st_->ns_reaching += p.claimed_ns - p.d.rung_ns;
    st_->jobs_reached++;
  }
  JobLimits lim;
  lim.zstd_max_level = opt_.max_zstd_level;
  if (check_job(s->layout, p.d, op, len, lim) || !backend::find_op(backend::OpId(p.d.op))) {
    st_->jobs_rejected++;
    complete(*s, job, GPO_JS_REJECTED, 0, nullptr);
    return;
  }
  UidAccount& acct = *s->acct;
  if (s->inflight.load() >= opt_.max_inflight || acct.inflight.load() >= opt_.uid_max_inflight) {
    st_->jobs_over_quota++;
    acct.over_quota++;
    complete(*s, job, GPO_JS_REJECTED, 0, nullptr);
    return;
  }
  s->inflight++;
  acct.inflight++;
  auto& q = pending_[p.d.op];
  q.push(uint32_t(acct.uid), s->id, std::move(p));
  st_->waiting_jobs++;
  if (!opt_.flush_when_idle) {
    // Fixed windows: a batch goes when full or when the window ends.
    if (q.size() >= opt_.batch_max || opt_.batch_window_us == 0) flush(uint16_t(op));
    else arm_timer();
    return;
  }
  // The backend has room: waiting would only add latency. Otherwise the jobs
  // gather until a batch completes (wake_fd); a full batch may wait at the
  // backend behind the running ones, so it never idles between batches.
  if (has_room() || (q.size() >= opt_.batch_max && may_queue())) flush(uint16_t(op));
}

bool ClientServer::has_room() const {
  const backend::Capacity c = be_.capacity();
  return st_->running_batches.load() < c.batches && st_->running_jobs.load() < c.jobs;
}

bool ClientServer::may_queue() const {
  // What the backend holds stays bounded: what it runs plus as much again
  // waiting, or a GPU's run of queued batches (Capacity::queue_bytes).
  const backend::Capacity c = be_.capacity();
  return st_->running_batches.load() < 2 * uint64_t(c.batches) || st_->running_bytes.load() < c.queue_bytes;
}

void ClientServer::flush_while_room() {
  // Ops take turns (from the one after the last flushed), batches of each in
  // turns of users and clients (FairQueue); a completion wakes the loop
  // again while jobs wait.
  for (bool progress = true; progress;) {
    progress = false;
    const size_t n = pending_.size();
    auto it = pending_.lower_bound(next_op_);
    for (size_t k = 0; k < n; ++k, ++it) {
      if (it == pending_.end()) it = pending_.begin();
      auto& [op, q] = *it;
      if (q.empty() || !(has_room() || (q.size() >= opt_.batch_max && may_queue()))) continue;
      flush(op);
      next_op_ = uint16_t(op + 1);
      progress = true;
    }
  }
}

void ClientServer::arm_timer() {
  if (!window_timer_->arm(std::chrono::microseconds(opt_.batch_window_us))) {
    log::error("offload: timerfd_settime: {}; sending the batch now", errno_text(errno));
    flush_all();
  }
}

void ClientServer::flush_all() {
  for (auto& [op, q] : pending_)
    while (!q.empty()) flush(op);
}

void ClientServer::flush(uint16_t op) {
  auto& q = pending_[op];
  if (q.empty()) return;
  auto run = std::make_shared<Running>();
  run->items = q.take(opt_.batch_max, opt_.batch_max_bytes, [](const Pending& p) { return p.d.in_len; });
  const uint32_t n = uint32_t(run->items.size());
  const uint64_t flushed = mono_ns();
  uint64_t gathering = 0;
  for (const auto& p : run->items) gathering += flushed - p.claimed_ns;
  st_->ns_gathering += gathering;
  run->batch.jobs.resize(run->items.size());
  for (size_t i = 0; i < run->items.size(); ++i) {
    Pending& p = run->items[i];
    backend::Job& j = run->batch.jobs[i];
    j = to_backend_job(p.slab->base, p.d);
    j.cpu = p.cpu;
    j.cookie = i;
  }
  uint64_t bytes = 0;
  for (const auto& j : run->batch.jobs) bytes += j.in.size();
  st_->batches++;
  st_->running_batches++;
  st_->running_jobs += n;
  st_->running_bytes += bytes;
  st_->waiting_jobs -= n;
  be_.submit(run->batch, [run, st = st_, n, bytes, flushed](backend::Batch& b) {
    const uint64_t ran = mono_ns();
    // Room again before the wakes: a client's next job must find it. Jobs
    // that waited for this room go now (the loop flushes them).
    st->running_batches--;
    st->running_jobs -= n;
    st->running_bytes -= bytes;
    if (st->waiting_jobs.load() > 0 && st->wake_fd >= 0) {
      const uint64_t one = 1;
      ssize_t w = write(st->wake_fd, &one, sizeof(one));
      (void)w;  // EAGAIN: a wake is pending already
    }
    for (size_t i = 0; i < b.jobs.size(); ++i) {
      auto& j = b.jobs[i];
      Pending& p = run->items[i];
      uint8_t st = j.status == backend::Status::ok            ? GPO_JS_OK
                   : j.status == backend::Status::auth_failed ? GPO_JS_AUTH_FAILED
                   : j.status == backend::Status::invalid     ? GPO_JS_INVALID
                                                              : GPO_JS_FAILED;
      complete(*p.slab, p.job, st, reported_out_len(j), j.op == backend::OpId::aes256_gcm_encrypt ? j.tag.data() : nullptr);
      p.slab->inflight--;
      p.slab->acct->inflight--;
      p.slab->acct->jobs++;
    }
    st->ns_backend += (ran - flushed) * n;
    st->ns_completing += (mono_ns() - ran) * n;
    st->jobs_timed += n;
    // run (and with it the slab references) goes when this lambda is destroyed.
  });
}

ServerStats ClientServer::stats() const {
  ServerStats s;
  s.clients = st_->clients;
  s.slabs = st_->slabs;
  s.slabs_released = st_->slabs_released;
  s.registrations_refused = st_->registrations_refused;
  s.doorbells_socket = st_->doorbells_socket;
  s.doorbells_uprobe = st_->doorbells_uprobe;
  s.doorbells_on_client_cpu = st_->doorbells_on_client_cpu;
  s.doorbells_refused = st_->doorbells_refused;
  s.doorbells_stale = st_->doorbells_stale;
  s.jobs_rejected = st_->jobs_rejected;
  s.jobs_over_quota = st_->jobs_over_quota;
  s.jobs_done = st_->jobs_done;
  s.jobs_released = st_->jobs_released;
  s.batches = st_->batches;
  s.connections_refused = st_->connections_refused;
  s.accept_no_fd = st_->accept_no_fd;
  s.slab_bytes = st_->slab_bytes;
  s.doorbells_lost = probe_ ? probe_->dropped() : 0;
  return s;
}

size_t ClientServer::cpu_doorbells() const { return probe_ ? probe_->cpu_lanes() : 0; }
size_t ClientServer::cpu_doorbells_scheduled(LaneSched s) const { return probe_ ? probe_->lanes_scheduled(s) : 0; }
std::string ClientServer::cpu_doorbells_sched() const { return probe_ ? probe_->lanes_by_sched() : ""; }

size_t ClientServer::uprobe_files() const { return probe_ ? probe_->attached() : 0; }

nlohmann::json ClientServer::per_job_us() const {
  const double n = double(std::max<uint64_t>(1, st_->jobs_timed.load()));
  const double r = double(std::max<uint64_t>(1, st_->jobs_reached.load()));
  return {{"jobs", st_->jobs_timed.load()},
          {"reaching", double(st_->ns_reaching.load()) / r / 1e3},
          {"reaching_jobs", st_->jobs_reached.load()},
          {"gathering", double(st_->ns_gathering.load()) / n / 1e3},
          {"at_backend", double(st_->ns_backend.load()) / n / 1e3},
          {"completing", double(st_->ns_completing.load()) / n / 1e3},
          {"on_client_cpu", be_.stats().jobs_on_waiter_cpu}};
}

nlohmann::json ClientServer::plan_json() const {
  if (!plan_) return nullptr;
  nlohmann::json ops = nlohmann::json::object();
  for (const auto& op : backend::ops()) {
    const auto id = uint16_t(op.id);
    if (id >= GPO_PLAN_OPS) continue;
    const uint64_t m = plan_->get(id);
    ops[std::string(op.name)] = m == GPO_PLAN_NEVER ? nlohmann::json("never") : nlohmann::json(m);
  }
  return {{"path", plan_->path()}, {"client_min_bytes", ops}};
}

nlohmann::json ClientServer::to_json() const {
  ServerStats s = stats();
  nlohmann::json users = nlohmann::json::array();
  uint64_t connected = 0;
  {
    std::lock_guard lk(acct_mu_);
    for (const auto& [uid, a] : uids_) {
      connected += a->connections.load();  // every uid that ever connected: as many as the host has users
      users.push_back({{"uid", uid},
                       {"connections", a->connections.load()},
                       {"slabs", a->slabs.load()},
                       {"slab_bytes", a->slab_bytes.load()},
                       {"jobs_in_flight", a->inflight.load()},
                       {"jobs", a->jobs.load()},
                       {"refused", a->refused.load()},
                       {"jobs_over_quota", a->over_quota.load()},
                       {"uprobe_files", a->uprobe_count.load()}});
    }
  }
  const nlohmann::json limits = {{"slab_bytes_per_client", opt_.max_slab_bytes},
                                 {"jobs_in_flight_per_client", opt_.max_inflight},
                                 {"slab_bytes_per_uid", opt_.uid_max_slab_bytes},
                                 {"jobs_in_flight_per_uid", opt_.uid_max_inflight},
                                 {"connections_per_uid", opt_.uid_max_connections},
                                 {"uprobe_files_per_uid", opt_.uid_max_uprobe_files},
                                 {"slab_bytes_total", opt_.max_slab_bytes_total},
                                 {"zstd_max_level", opt_.max_zstd_level},
                                 {"batch_jobs", opt_.batch_max},
                                 {"batch_bytes", opt_.batch_max_bytes}};
  return {{"socket", opt_.socket_path},
          {"access", access_},
          {"doorbell", probe_ ? "uprobe+socket" : "socket"},
          {"clients_connected", connected},
          {"clients", s.clients},
          {"connections_refused", s.connections_refused},
          {"connections_dropped_no_fd", s.accept_no_fd},
          {"slabs", s.slabs},
          {"slabs_released", s.slabs_released},
          {"slab_bytes", s.slab_bytes},
          {"registrations_refused", s.registrations_refused},
          {"doorbells_socket", s.doorbells_socket},
          {"doorbells_uprobe", s.doorbells_uprobe},
          {"doorbells_on_client_cpu", s.doorbells_on_client_cpu},
          {"cpu_doorbells", cpu_doorbells()},
          {"cpu_doorbells_sched", cpu_doorbells_sched()},
          {"doorbells_refused", s.doorbells_refused},
          {"doorbells_stale", s.doorbells_stale},
          {"doorbells_lost", s.doorbells_lost},
          {"uprobe_files", uprobe_files()},
          {"jobs_done", s.jobs_done},
          {"jobs_released", s.jobs_released},
          {"jobs_rejected", s.jobs_rejected},
          {"jobs_over_quota", s.jobs_over_quota},
          {"batches", s.batches},
          {"jobs_waiting", st_->waiting_jobs.load()},
          {"per_job_us", per_job_us()},
          {"jobs_at_backend", st_->running_jobs.load()},
          {"limits", limits},
          {"uids", users},
          {"plan", plan_json()}};
}

std::string ClientServer::describe() const {
  const std::string batching =
      opt_.flush_when_idle
          ? fmt::format("batches of up to {} jobs, gathered while the backend is busy", opt_.batch_max)
          : fmt::format("batches of up to {} jobs / {} us windows", opt_.batch_max, opt_.batch_window_us);
  return fmt::format("socket {} ({}), doorbell {}{}, {}, plan page {}; per client {} MiB and {} jobs, per uid {} "
                     "MiB, {} jobs and {} connections, {} MiB of slabs in all",
                     opt_.socket_path, access_, probe_ ? "uprobe (socket as fallback)" : "socket",
                     !probe_                 ? " (uprobe: " + probe_why_ + ")"
                     : probe_->cpu_lanes()   ? fmt::format(", a ring and thread on each of {} CPUs ({})",
                                                           cpu_doorbells(), cpu_doorbells_sched())
                                             : " to the event loop (" + cpu_doorbells_why_ + ")",
                     batching, plan_ ? plan_->path() : "none",
                     opt_.max_slab_bytes >> 20, opt_.max_inflight, opt_.uid_max_slab_bytes >> 20,
                     opt_.uid_max_inflight, opt_.uid_max_connections, opt_.max_slab_bytes_total >> 20);
}

}  // namespace gpo::ipc
