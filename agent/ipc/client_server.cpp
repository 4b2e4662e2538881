#include "ipc/client_server.h"

#include <fcntl.h>
#include <linux/futex.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
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
#include "loop/event_loop.h"
#include "util/log.h"

namespace gpo::ipc {

namespace {

bool in_range(uint64_t off, uint64_t len, uint64_t lo, uint64_t hi) {
  return off >= lo && off <= hi && len <= hi - off;
}

uint64_t mono_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000000u + uint64_t(ts.tv_nsec);
}

void futex_wake(uint32_t* addr) {
  // Shared (not FUTEX_PRIVATE): the waiter is another process mapping the same memfd.
  syscall(SYS_futex, addr, FUTEX_WAKE, INT32_MAX, nullptr, nullptr, 0);
}

// Is path mapped by process pid? Keeps clients from pointing the uprobe at
// files they do not run.
bool maps_file(pid_t pid, const std::string& path) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/maps");
  std::string line;
  while (std::getline(in, line)) {
    auto pos = line.find('/');
    if (pos != std::string::npos && line.compare(pos, std::string::npos, path) == 0) return true;
  }
  return false;
}

}  // namespace

struct ClientServer::AtomicStats {
  std::atomic<uint64_t> clients{0}, slabs{0}, slabs_released{0}, registrations_refused{0}, doorbells_socket{0},
      doorbells_uprobe{0}, doorbells_refused{0}, doorbells_stale{0}, jobs_rejected{0}, jobs_over_quota{0},
      jobs_done{0}, jobs_released{0}, batches{0};
  // In flight at the backend (handed over, not completed), and claimed jobs
  // waiting in the batcher. A completion that finds jobs waiting wakes the
  // loop through wake_fd (both sides update theirs before reading the other's).
  std::atomic<uint32_t> running_batches{0}, running_jobs{0}, waiting_jobs{0};
  // Where a job's time in the agent goes, summed over jobs: from the claim to
  // its batch's hand-over (gathering), at the backend (queue and run), and
  // writing results and waking clients (completing).
  std::atomic<uint64_t> ns_gathering{0}, ns_backend{0}, ns_completing{0}, jobs_timed{0};
  // Closed with the last reference (completions of batches still running hold one).
  int wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  ~AtomicStats() {
    if (wake_fd >= 0) close(wake_fd);
  }
};

// One client's registered slab. Kept alive by the connection and by every
// batch that holds one of its jobs, so the mapping outlives a client that
// exits while the backend still writes into it.
struct ClientServer::Slab {
  uint32_t id = 0;
  pid_t owner = 0;  // SO_PEERCRED pid at registration
  uint8_t* base = nullptr;
  uint64_t size = 0;
  uint32_t njobs = 0;
  uint64_t job_off = 0, data_off = 0;
  std::atomic<uint32_t> inflight{0};
  backend::Backend* be = nullptr;
  std::shared_ptr<AtomicStats> st;  // shared: a batch may outlive the server

  gpo_job* job(uint32_t i) { return reinterpret_cast<gpo_job*>(base + job_off) + i; }
  ~Slab() {
    if (base) {
      be->unregister_memory(base);
      munmap(base, size);
    }
    st->slabs_released++;
  }
};

struct ClientServer::Conn {
  int fd = -1;
  pid_t pid = 0;
  std::shared_ptr<Slab> slab;
};

// A job the agent claimed (SUBMITTED -> RUNNING), with its descriptor copied
// out of shared memory: only this copy is validated and used.
struct ClientServer::Pending {
  std::shared_ptr<Slab> slab;
  uint32_t job = 0;
  gpo_job d{};
  uint64_t claimed_ns = 0;  // when the doorbell claimed it (mono_ns)
};

struct ClientServer::Running {
  backend::Batch batch;
  std::vector<Pending> items;  // items[i] is batch.jobs[i]
};

ClientServer::ClientServer(ServerOptions opt, backend::Backend& be)
    : opt_(std::move(opt)), be_(be), st_(std::make_shared<AtomicStats>()) {}

ClientServer::~ClientServer() {
  if (loop_) unregister(*loop_);
}

void ClientServer::register_with(loop::EventLoop& loop) {
  loop_ = &loop;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (opt_.socket_path.size() >= sizeof(addr.sun_path))
    throw std::runtime_error("offload socket path too long: " + opt_.socket_path);
  std::strcpy(addr.sun_path, opt_.socket_path.c_str());
  std::error_code ec;
  auto dir = std::filesystem::path(opt_.socket_path).parent_path();
  if (!dir.empty()) std::filesystem::create_directories(dir, ec);
  listen_fd_ = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) throw std::runtime_error(std::string("offload socket: ") + std::strerror(errno));
  // A socket that still answers belongs to a live agent: never steal it. One
  // that refuses is the leftover of a killed agent: replace it.
  {
    int probe = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    bool live = probe >= 0 && connect(probe, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0;
    if (probe >= 0) close(probe);
    if (live) {
      close(listen_fd_);
      listen_fd_ = -1;
      throw SocketBusy("offload socket " + opt_.socket_path + " is served by another agent");
    }
  }
  unlink(opt_.socket_path.c_str());
  if (bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 || listen(listen_fd_, 128) != 0) {
    int e = errno;
    close(listen_fd_);
    listen_fd_ = -1;
    throw std::runtime_error("offload socket " + opt_.socket_path + ": " + std::strerror(e) +
                             " (is the directory writable? use --offload-socket PATH)");
  }
  // Any local process may opt in: every descriptor is checked against its own slab.
  chmod(opt_.socket_path.c_str(), 0666);
  loop.add_fd(listen_fd_, [this] { on_accept(); });

  wake_fd_ = st_->wake_fd;
  if (wake_fd_ < 0) throw std::runtime_error(std::string("offload: eventfd: ") + std::strerror(errno));
  loop.add_fd(wake_fd_, [this] {
    uint64_t n;
    while (read(wake_fd_, &n, sizeof(n)) > 0) {
    }
    flush_while_room();
  });

  timer_fd_ = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
  loop.add_fd(timer_fd_, [this] {
    uint64_t n;
    while (read(timer_fd_, &n, sizeof(n)) > 0) {
    }
    timer_armed_ = false;
    flush_all();
  });

  if (opt_.uprobe_doorbell) {
    if (geteuid() != 0) {
      probe_why_ = "not root";
    } else {
      probe_ = DoorbellProbe::load(
          [this](const gpo_doorbell_event& e) {
            on_doorbell(pid_t(e.tgid), e.slab_id, e.job, e.op, e.len, true);
          },
          &probe_why_);
      if (probe_) probe_->register_with(loop);
    }
  } else {
    probe_why_ = "disabled";
  }

  if (opt_.plan_page) {
    std::string why;
    plan_ = PlanPage::create(ipc::plan_page_path(opt_.socket_path), &why);
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
  flush_all();
  while (!conns_.empty()) close_conn(conns_.begin()->first);
  if (probe_) {
    probe_->unregister(loop);
    probe_.reset();
  }
  if (timer_fd_ >= 0) {
    loop.remove_fd(timer_fd_);
    close(timer_fd_);
    timer_fd_ = -1;
  }
  if (wake_fd_ >= 0) {
    loop.remove_fd(wake_fd_);  // closed with st_: completions still to come may write it
    wake_fd_ = -1;
  }
  if (listen_fd_ >= 0) {
    loop.remove_fd(listen_fd_);
    close(listen_fd_);
    listen_fd_ = -1;
    unlink(opt_.socket_path.c_str());
  }
  loop_ = nullptr;
}

void ClientServer::on_accept() {
  for (;;) {
    int fd = accept4(listen_fd_, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) return;
    ucred cred{};
    socklen_t len = sizeof(cred);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0) {
      close(fd);
      continue;
    }
    auto c = std::make_unique<Conn>();
    c->fd = fd;
    c->pid = cred.pid;
    conns_[fd] = std::move(c);
    st_->clients++;
    loop_->add_fd(fd, [this, fd] { on_conn(fd); });
  }
}

void ClientServer::close_conn(int fd) {
  auto it = conns_.find(fd);
  if (it == conns_.end()) return;
  loop_->remove_fd(fd);
  close(fd);
  if (it->second->slab) {
    log::debug("offload: client pid {} gone, slab {} released", it->second->pid, it->second->slab->id);
    slabs_.erase(it->second->slab->id);
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
    alignas(cmsghdr) char ctl[CMSG_SPACE(sizeof(int) * 4)];
    iovec iov{&m, sizeof(m)};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = ctl;
    mh.msg_controllen = sizeof(ctl);
    ssize_t r = recvmsg(fd, &mh, MSG_CMSG_CLOEXEC | MSG_DONTWAIT);
    if (r < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (r <= 0) {
      close_conn(fd);
      return;
    }
    int memfd = -1;
    for (cmsghdr* cm = CMSG_FIRSTHDR(&mh); cm; cm = CMSG_NXTHDR(&mh, cm)) {
      if (cm->cmsg_level == SOL_SOCKET && cm->cmsg_type == SCM_RIGHTS) {
        int nfd = int((cm->cmsg_len - CMSG_LEN(0)) / sizeof(int));
        for (int i = 0; i < nfd; ++i) {
          int f;
          std::memcpy(&f, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
          if (memfd < 0) memfd = f;
          else close(f);  // only one fd is expected
        }
      }
    }
    if (size_t(r) >= sizeof(gpo_msg_register) && m.type == GPO_MSG_REGISTER) {
      on_register(c, m.reg, memfd);
    } else if (size_t(r) >= sizeof(gpo_msg_doorbell) && m.type == GPO_MSG_DOORBELL) {
      // The socket's peer is the process: same check as the kernel-stamped tgid.
      on_doorbell(c.pid, m.bell.slab_id, m.bell.job, m.bell.op, m.bell.len, false);
    } else {
      st_->doorbells_refused++;
    }
    if (memfd >= 0) close(memfd);
  }
}

void ClientServer::on_register(Conn& c, const gpo_msg_register& m, int memfd) {
  gpo_msg_registered rep{};
  auto refuse = [&](const std::string& why) {
    st_->registrations_refused++;
    log::warn("offload: refused slab of pid {}: {}", c.pid, why);
    rep.type = GPO_MSG_REFUSED;
    std::snprintf(rep.reason, sizeof(rep.reason), "%s", why.c_str());
    send(c.fd, &rep, sizeof(rep), MSG_NOSIGNAL | MSG_DONTWAIT);
  };
  if (c.slab) return refuse("one slab per connection");
  if (m.version != GPO_PROTO_VERSION) return refuse("protocol version " + std::to_string(m.version));
  if (memfd < 0) return refuse("no memfd attached");
  if (m.slab_size > opt_.max_slab_bytes)
    return refuse("slab of " + std::to_string(m.slab_size) + " bytes over the quota of " +
                  std::to_string(opt_.max_slab_bytes));
  // Sealed against shrinking, or the client could truncate it under the agent (SIGBUS).
  int seals = fcntl(memfd, F_GET_SEALS);
  if (seals < 0 || !(seals & F_SEAL_SHRINK)) return refuse("memfd not sealed with F_SEAL_SHRINK");
  struct stat st {};
  if (fstat(memfd, &st) != 0 || uint64_t(st.st_size) < m.slab_size) return refuse("memfd smaller than slab_size");
  if (m.njobs == 0 || m.njobs > 65536 || m.job_off < sizeof(gpo_slab_header) || m.job_off % alignof(gpo_job) ||
      !in_range(m.job_off, uint64_t(m.njobs) * sizeof(gpo_job), 0, m.slab_size) ||
      m.data_off < m.job_off + uint64_t(m.njobs) * sizeof(gpo_job) || m.data_off > m.slab_size)
    return refuse("slab layout out of bounds");
  void* p = mmap(nullptr, m.slab_size, PROT_READ | PROT_WRITE, MAP_SHARED, memfd, 0);
  if (p == MAP_FAILED) return refuse(std::string("mmap: ") + std::strerror(errno));
  auto s = std::make_shared<Slab>();
  s->id = next_slab_id_++;
  s->owner = c.pid;
  s->base = static_cast<uint8_t*>(p);
  s->size = m.slab_size;
  s->njobs = m.njobs;
  s->job_off = m.job_off;
  s->data_off = m.data_off;
  s->be = &be_;
  s->st = st_;
  if (!be_.register_memory(p, m.slab_size)) log::warn("offload: backend could not pin slab {} (pid {})", s->id, c.pid);
  c.slab = s;
  slabs_[s->id] = s;
  st_->slabs++;

  rep.type = GPO_MSG_REGISTERED;
  rep.slab_id = s->id;
  rep.max_inflight = opt_.max_inflight;
  rep.doorbell = GPO_DOORBELL_SOCKET;
  std::string lib(m.lib_path, strnlen(m.lib_path, sizeof(m.lib_path)));
  if (probe_ && !lib.empty() && lib[0] == '/') {
    // The loader's name may be a symlink (libgpuoffload.so.0); maps shows the file.
    std::error_code rec;
    auto real = std::filesystem::canonical(lib, rec);
    if (!rec) lib = real.string();
    std::string why;
    if (!maps_file(c.pid, lib)) why = lib + " is not mapped by pid " + std::to_string(c.pid);
    else if (probe_->attach(lib, &why)) rep.doorbell = GPO_DOORBELL_UPROBE;
    if (rep.doorbell != GPO_DOORBELL_UPROBE) log::info("offload: socket doorbell for pid {}: {}", c.pid, why);
  }
  log::debug("offload: pid {} registered slab {} ({} bytes, {} jobs, {} doorbell)", c.pid, s->id, s->size, s->njobs,
             rep.doorbell == GPO_DOORBELL_UPROBE ? "uprobe" : "socket");
  send(c.fd, &rep, sizeof(rep), MSG_NOSIGNAL | MSG_DONTWAIT);
}

void ClientServer::complete(Slab& s, uint32_t i, uint8_t status, uint64_t out_len, const uint8_t* tag) {
  gpo_job* j = s.job(i);
  j->status = status;
  j->out_len = out_len;
  if (tag) std::memcpy(j->tag, tag, 16);
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

void ClientServer::on_doorbell(pid_t tgid, uint32_t slab_id, uint32_t job, uint32_t op, uint64_t len, bool uprobe) {
  (uprobe ? st_->doorbells_uprobe : st_->doorbells_socket)++;
  auto it = slabs_.find(slab_id);
  // Only the process that registered a slab may ring for it; anything else is
  // dropped without touching any slab.
  if (it == slabs_.end() || it->second->owner != tgid || job >= it->second->njobs) {
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
  std::memcpy(&p.d, j, sizeof(gpo_job));  // from here on only the copy counts
  const backend::OpInfo* info = backend::find_op(backend::OpId(p.d.op));
  bool ok = info && p.d.op == op && p.d.in_len == len &&
            in_range(p.d.in_off, p.d.in_len, s->data_off, s->size) &&
            in_range(p.d.out_off, p.d.out_cap, s->data_off, s->size) &&
            in_range(p.d.aad_off, p.d.aad_len, s->data_off, s->size) && p.d.iv_len <= sizeof(p.d.iv);
  if (ok) {
    switch (p.d.op) {
      case GPO_OP_AES256_GCM_ENCRYPT:
      case GPO_OP_AES256_GCM_DECRYPT: ok = p.d.out_cap == p.d.in_len && p.d.iv_len == 12; break;
      case GPO_OP_AES256_CTR: ok = p.d.out_cap == p.d.in_len && p.d.iv_len == 16 && p.d.aad_len == 0; break;
      case GPO_OP_SHA256: ok = p.d.out_cap == 32; break;
      case GPO_OP_CRC32: ok = p.d.out_cap == 4 && p.d.aad_len == 0 && p.d.iv_len == 0; break;
      case GPO_OP_MEMCPY: ok = p.d.out_cap == p.d.in_len && p.d.aad_len == 0 && p.d.iv_len == 0; break;
      default: ok = p.d.aad_len == 0 && p.d.iv_len == 0; break;
    }
  }
  if (!ok) {
    st_->jobs_rejected++;
    complete(*s, job, GPO_JS_REJECTED, 0, nullptr);
    return;
  }
  if (s->inflight.load() >= opt_.max_inflight) {
    st_->jobs_over_quota++;
    complete(*s, job, GPO_JS_REJECTED, 0, nullptr);
    return;
  }
  s->inflight++;
  auto& q = pending_[p.d.op];
  q.push_back(std::move(p));
  st_->waiting_jobs++;
  if (!opt_.flush_when_idle) {
    // Fixed windows: a batch goes when full or when the window ends.
    if (q.size() >= opt_.batch_max || opt_.batch_window_us == 0) flush(uint16_t(op));
    else arm_timer();
    return;
  }
  // The backend has room: waiting would only add latency. Otherwise the jobs
  // gather until a batch completes (wake_fd) or a full batch is waiting.
  if (q.size() >= opt_.batch_max || has_room()) flush(uint16_t(op));
}

bool ClientServer::has_room() const {
  const backend::Capacity c = be_.capacity();
  return st_->running_batches.load() < c.batches && st_->running_jobs.load() < c.jobs;
}

void ClientServer::flush_while_room() {
  // Oldest op first would need timestamps; ops take turns in id order, and a
  // completion wakes the loop again while jobs wait.
  for (auto& [op, q] : pending_)
    if (!q.empty() && has_room()) flush(op);
}

void ClientServer::arm_timer() {
  if (timer_armed_) return;
  itimerspec ts{};
  ts.it_value.tv_sec = opt_.batch_window_us / 1000000;
  ts.it_value.tv_nsec = long(opt_.batch_window_us % 1000000) * 1000;
  timerfd_settime(timer_fd_, 0, &ts, nullptr);
  timer_armed_ = true;
}

void ClientServer::flush_all() {
  for (auto& [op, q] : pending_)
    if (!q.empty()) flush(op);
}

void ClientServer::flush(uint16_t op) {
  auto& q = pending_[op];
  if (q.empty()) return;
  auto run = std::make_shared<Running>();
  run->items = std::move(q);
  q.clear();
  const uint32_t n = uint32_t(run->items.size());
  const uint64_t flushed = mono_ns();
  uint64_t gathering = 0;
  for (const auto& p : run->items) gathering += flushed - p.claimed_ns;
  st_->ns_gathering += gathering;
  run->batch.jobs.resize(run->items.size());
  for (size_t i = 0; i < run->items.size(); ++i) {
    Pending& p = run->items[i];
    backend::Job& j = run->batch.jobs[i];
    uint8_t* b = p.slab->base;
    j.op = backend::OpId(p.d.op);
    j.in = {b + p.d.in_off, size_t(p.d.in_len)};
    j.out = {b + p.d.out_off, size_t(p.d.out_cap)};
    j.level = p.d.level;
    j.crc = p.d.crc;
    if (p.d.op <= GPO_OP_AES256_CTR) {
      j.key = {p.d.key, 32};
      j.iv = {p.d.iv, p.d.iv_len};
      j.aad = {b + p.d.aad_off, size_t(p.d.aad_len)};
      std::memcpy(j.tag.data(), p.d.tag, 16);
    }
    j.cookie = i;
  }
  st_->batches++;
  st_->running_batches++;
  st_->running_jobs += n;
  st_->waiting_jobs -= n;
  be_.submit(run->batch, [run, st = st_, n, flushed](backend::Batch& b) {
    const uint64_t ran = mono_ns();
    // Room again before the wakes: a client's next job must find it. Jobs
    // that waited for this room go now (the loop flushes them).
    st->running_batches--;
    st->running_jobs -= n;
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
      uint64_t out_len = j.op == backend::OpId::sha256                                          ? 32
                         : (j.op == backend::OpId::zstd_compress || j.op == backend::OpId::zstd_decompress ||
                            j.op == backend::OpId::zlib_compress || j.op == backend::OpId::crc32) ? j.out_len
                                                                                                 : j.in.size();
      complete(*p.slab, p.job, st, out_len, j.op == backend::OpId::aes256_gcm_encrypt ? j.tag.data() : nullptr);
      p.slab->inflight--;
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
  s.doorbells_refused = st_->doorbells_refused;
  s.doorbells_stale = st_->doorbells_stale;
  s.jobs_rejected = st_->jobs_rejected;
  s.jobs_over_quota = st_->jobs_over_quota;
  s.jobs_done = st_->jobs_done;
  s.jobs_released = st_->jobs_released;
  s.batches = st_->batches;
  return s;
}

nlohmann::json ClientServer::per_job_us() const {
  const double n = double(std::max<uint64_t>(1, st_->jobs_timed.load()));
  return {{"jobs", st_->jobs_timed.load()},
          {"gathering", double(st_->ns_gathering.load()) / n / 1e3},
          {"at_backend", double(st_->ns_backend.load()) / n / 1e3},
          {"completing", double(st_->ns_completing.load()) / n / 1e3}};
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
  return {{"socket", opt_.socket_path},
          {"doorbell", probe_ ? "uprobe+socket" : "socket"},
          {"clients_connected", conns_.size()},
          {"clients", s.clients},
          {"slabs", s.slabs},
          {"slabs_released", s.slabs_released},
          {"registrations_refused", s.registrations_refused},
          {"doorbells_socket", s.doorbells_socket},
          {"doorbells_uprobe", s.doorbells_uprobe},
          {"doorbells_refused", s.doorbells_refused},
          {"doorbells_stale", s.doorbells_stale},
          {"jobs_done", s.jobs_done},
          {"jobs_released", s.jobs_released},
          {"jobs_rejected", s.jobs_rejected},
          {"jobs_over_quota", s.jobs_over_quota},
          {"batches", s.batches},
          {"jobs_waiting", st_->waiting_jobs.load()},
          {"per_job_us", per_job_us()},
          {"jobs_at_backend", st_->running_jobs.load()},
          {"plan", plan_json()}};
}

std::string ClientServer::describe() const {
  const std::string batching =
      opt_.flush_when_idle
          ? fmt::format("batches of up to {} jobs, gathered while the backend is busy", opt_.batch_max)
          : fmt::format("batches of up to {} jobs / {} us windows", opt_.batch_max, opt_.batch_window_us);
  return fmt::format("socket {}, doorbell {}{}, {}, plan page {}, quota {} MiB and {} jobs per client",
                     opt_.socket_path, probe_ ? "uprobe (socket as fallback)" : "socket",
                     probe_ ? "" : " (uprobe: " + probe_why_ + ")", batching, plan_ ? plan_->path() : "none",
                     opt_.max_slab_bytes >> 20, opt_.max_inflight);
}

}  // namespace gpo::ipc
