// Test doubles of the offload tests: a client written against the slab
// protocol by hand (to send what libgpuoffload never would), and a backend
// that holds batches until the test releases them (to see what the batcher
// hands over while the backend is busy).
#pragma once
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "backend/backend.h"
#include "backend/ops.h"
#include "ipc/slab_protocol.h"
#include "util/fd_passing.h"

namespace gpo::test {

struct RawClient {
  int fd = -1;
  uint8_t* base = nullptr;
  uint64_t size = 0;
  gpo_msg_registered rep{};
  std::string lib_path;       // sent in the registration ("" = none)
  bool shut_read = false;     // shutdown(SHUT_RD) before registering: the agent's reply cannot be delivered

  static constexpr uint32_t kJobs = 16;
  static constexpr uint32_t kJobOff = 4096;
  static constexpr uint64_t kDataOff = 8192;

  // Connects; false when the agent refuses the connection.
  bool connect_to(const std::string& path) {
    fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
    sockaddr_un a{};
    a.sun_family = AF_UNIX;
    std::strcpy(a.sun_path, path.c_str());
    return connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof(a)) == 0;
  }
  // seal = false: a memfd the client could shrink under the agent.
  bool connect_and_register(const std::string& path, uint64_t slab = 1 << 20, bool seal = true) {
    return connect_to(path) && register_slab(slab, seal);
  }
  bool register_slab(uint64_t slab = 1 << 20, bool seal = true) {
    int mfd = memfd_create("raw", MFD_ALLOW_SEALING);
    if (ftruncate(mfd, off_t(slab)) != 0) return false;
    if (seal) fcntl(mfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW);
    size = slab;
    base = static_cast<uint8_t*>(mmap(nullptr, slab, PROT_READ | PROT_WRITE, MAP_SHARED, mfd, 0));
    gpo_msg_register m{};
    m.type = GPO_MSG_REGISTER;
    m.version = GPO_PROTO_VERSION;
    m.slab_size = slab;
    m.njobs = kJobs;
    m.job_off = kJobOff;
    m.data_off = kDataOff;
    std::snprintf(m.lib_path, sizeof(m.lib_path), "%s", lib_path.c_str());
    if (shut_read) shutdown(fd, SHUT_RD);
    bool ok = util::send_with_fd(fd, &m, sizeof(m), mfd) == ssize_t(sizeof(m));
    close(mfd);
    if (shut_read) return ok;
    timeval tv{5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    // Read the answer even when the send failed: a refusal at accept comes
    // before the close (which reports ECONNRESET first when our message was unread).
    ssize_t n = recv(fd, &rep, sizeof(rep), 0);
    if (n < 0 && errno == ECONNRESET) n = recv(fd, &rep, sizeof(rep), 0);
    const bool got = n == ssize_t(sizeof(rep));
    return ok && got && rep.type == GPO_MSG_REGISTERED;
  }
  gpo_job* job(uint32_t i) { return reinterpret_cast<gpo_job*>(base + kJobOff) + i; }
  void ring(uint32_t slab_id, uint32_t j, uint32_t op, uint64_t len) {
    gpo_msg_doorbell d{GPO_MSG_DOORBELL, slab_id, j, op, len};
    send(fd, &d, sizeof(d), MSG_NOSIGNAL);
  }
  void ring(uint32_t j) { ring(rep.slab_id, j, job(j)->op, job(j)->in_len); }
  // A well-formed job of op over n bytes at data offset 0, submitted: its
  // output (out_cap bytes) in job i's own 4 KiB after the first 64 KiB.
  void submit_job(uint32_t i, uint16_t op, uint64_t n, uint64_t out_cap, int level = 0) {
    gpo_job* j = job(i);
    std::memset(j, 0, sizeof(*j));
    j->op = op;
    j->level = level;
    j->in_off = kDataOff;
    j->in_len = n;
    j->out_off = kDataOff + 65536 + 4096 * i;
    j->out_cap = out_cap;
    j->aad_off = kDataOff;
    __atomic_store_n(&j->state, GPO_JOB_SUBMITTED, __ATOMIC_RELEASE);
  }
  void sha_job(uint32_t i, uint64_t n) { submit_job(i, GPO_OP_SHA256, n, 32); }
  void zstd_job(uint32_t i, uint64_t n) { submit_job(i, GPO_OP_ZSTD_COMPRESS, n, 4096, 1); }
  // Waits (bounded) until job i leaves SUBMITTED/RUNNING.
  uint32_t wait_final(uint32_t i, int ms = 3000) {
    for (int t = 0; t < ms; ++t) {
      uint32_t s = __atomic_load_n(&job(i)->state, __ATOMIC_ACQUIRE);
      if (s != GPO_JOB_SUBMITTED && s != GPO_JOB_RUNNING) return s;
      usleep(1000);
    }
    return __atomic_load_n(&job(i)->state, __ATOMIC_ACQUIRE);
  }
  // Frees a finished job's slot for the next use.
  void reset(uint32_t i) { __atomic_store_n(&job(i)->state, GPO_JOB_FREE, __ATOMIC_RELEASE); }
  ~RawClient() {
    if (base) munmap(base, size);
    if (fd >= 0) close(fd);
  }
};

// A backend that holds every batch until the test releases it, with room for
// `room` batches of one job each: what the batcher does while the backend is
// busy shows. Keeps what it was handed (sizes, jobs' cookies and private_input).
class GateBackend final : public backend::Backend {
 public:
  explicit GateBackend(uint32_t room = 1, uint64_t queue_bytes = 0) : room_(room), queue_bytes_(queue_bytes) {}
  std::string name() const override { return "gate"; }
  void submit(backend::Batch& b, backend::Completion done) override {
    std::lock_guard lk(mu_);
    held_.push_back({&b, std::move(done)});
    sizes_.push_back(b.jobs.size());
    max_held_ = std::max(max_held_, held_.size());
    for (const auto& j : b.jobs) held_bytes_ += j.in.size();
    max_held_bytes_ = std::max(max_held_bytes_, held_bytes_);
    for (const auto& j : b.jobs) private_by_op_[uint16_t(j.op)].push_back(j.private_input);
    cv_.notify_all();
  }
  backend::Stats stats() const override { return {}; }
  backend::Capacity capacity() const override { return {room_, room_, queue_bytes_}; }
  // Waits (bounded) until n batches have arrived in all.
  bool wait_arrived(size_t n) {
    std::unique_lock lk(mu_);
    return cv_.wait_for(lk, std::chrono::seconds(10), [&] { return sizes_.size() >= n; });
  }
  // Runs the oldest held batch on the CPU and completes it, from another
  // thread, as a backend does. Returns the batch's jobs' input bytes' first
  // byte each (what the test wrote to tell clients apart).
  std::vector<uint8_t> release_one() {
    std::pair<backend::Batch*, backend::Completion> b;
    {
      std::lock_guard lk(mu_);
      if (held_.empty()) return {};
      b = std::move(held_.front());
      held_.pop_front();
      for (const auto& j : b.first->jobs) held_bytes_ -= j.in.size();
    }
    std::vector<uint8_t> tags;
    for (auto& j : b.first->jobs) tags.push_back(j.in.empty() ? 0 : j.in[0]);
    std::thread([b = std::move(b)]() mutable {
      for (auto& j : b.first->jobs) backend::run_on_cpu(j);
      b.second(*b.first);
    }).join();
    return tags;
  }
  size_t held() {
    std::lock_guard lk(mu_);
    return held_.size();
  }
  size_t max_held() {
    std::lock_guard lk(mu_);
    return max_held_;
  }
  uint64_t max_held_bytes() {
    std::lock_guard lk(mu_);
    return max_held_bytes_;
  }
  // private_input of every job of that op handed over so far, in order.
  std::vector<bool> private_flags(uint16_t op) {
    std::lock_guard lk(mu_);
    return private_by_op_[op];
  }
  std::vector<size_t> sizes() {
    std::lock_guard lk(mu_);
    return sizes_;
  }

 private:
  uint32_t room_;
  uint64_t queue_bytes_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::pair<backend::Batch*, backend::Completion>> held_;
  std::vector<size_t> sizes_;
  size_t max_held_ = 0;
  uint64_t held_bytes_ = 0, max_held_bytes_ = 0;
  std::map<uint16_t, std::vector<bool>> private_by_op_;
};

}  // namespace gpo::test
