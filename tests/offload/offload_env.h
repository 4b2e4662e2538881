// Helpers for the offload tests: an in-process agent (the real ClientServer
// on the CPU backend, its event loop on a thread), libzstd references
// computed directly (not through the code under test); the OpenSSL ones,
// hex and random bytes come from common/crypto_refs.h.
#pragma once
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "backend/cpu_backend.h"
#include "common/crypto_refs.h"
#include "ipc/client_server.h"
#include "loop/event_loop.h"

namespace gpo::test {

// --- references straight from libzstd ---
inline Bytes ref_zstd(const Bytes& in, int level) {
  Bytes out(ZSTD_compressBound(in.size()));
  size_t n = ZSTD_compress(out.data(), out.size(), in.data(), in.size(), level);
  out.resize(ZSTD_isError(n) ? 0 : n);
  return out;
}
// A real agent may run zstd on the GPU: its frames are valid but not
// ZSTD_compress's bytes, so tests of a real agent check the round trip.
inline bool zstd_round_trips(const Bytes& frame, const Bytes& in) {
  Bytes back(in.size() + 1);
  size_t n = ZSTD_decompress(back.data(), back.size(), frame.data(), frame.size());
  return !ZSTD_isError(n) && n == in.size() && std::equal(in.begin(), in.end(), back.begin());
}

inline std::string unique_socket(const char* tag) {
  return "/tmp/gpo-test-" + std::string(tag) + "-" + std::to_string(getpid()) + ".sock";
}

// Options of an in-process agent on its own socket; doorbells come over the
// socket unless uprobe_doorbell (which needs root).
inline ipc::ServerOptions agent_options(const char* socket_tag, bool uprobe_doorbell = false) {
  ipc::ServerOptions o;
  o.socket_path = unique_socket(socket_tag);
  o.uprobe_doorbell = uprobe_doorbell;
  return o;
}

// The real agent-side component, on a thread, on the CPU backend.
class InProcessAgent {
 public:
  explicit InProcessAgent(ipc::ServerOptions o, unsigned cpu_threads = 2)
      : opt_(std::move(o)), be_(cpu_threads), server_(opt_, be_) {
    server_.register_with(loop_);
    thread_ = std::thread([this] { loop_.run(false); });
  }
  ~InProcessAgent() { stop(); }
  void stop() {
    if (!thread_.joinable()) return;
    loop_.stop();
    thread_.join();
    server_.unregister(loop_);
  }
  ipc::ClientServer& server() { return server_; }
  backend::CpuBackend& backend() { return be_; }
  const std::string& socket() const { return opt_.socket_path; }

 private:
  ipc::ServerOptions opt_;
  backend::CpuBackend be_;
  loop::EventLoop loop_;
  ipc::ClientServer server_;
  std::thread thread_;
};

}  // namespace gpo::test
