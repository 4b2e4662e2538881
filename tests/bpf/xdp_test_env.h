// Helpers for the "bpf" layer: BPF_PROG_TEST_RUN on xdp_filter, and a
// throw-away network namespace with a veth pair (198.18.0.0/15 only) for the
// few cases that need a real interface or a real AF_XDP socket.
#pragma once
#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace gpo::test {

// A network namespace "gpo<tag><pid>" holding veth pair v0 <-> v1, both up;
// v0 has 198.18.0.1/24, v1 198.18.0.2/24. Deleted (with the veths) on destruction.
class TestNetns {
 public:
  explicit TestNetns(const std::string& tag);
  ~TestNetns();
  TestNetns(const TestNetns&) = delete;
  TestNetns& operator=(const TestNetns&) = delete;

  bool ok() const { return ok_; }
  const std::string& error() const { return error_; }
  const std::string& name() const { return name_; }
  std::string path() const { return "/run/netns/" + name_; }
  // Runs fn on a thread that has joined the namespace (setns is per thread),
  // so the rest of the test process stays where it is.
  void run_inside(const std::function<void()>& fn) const;

 private:
  std::string name_;
  bool ok_ = false;
  std::string error_;
};

// One BPF_PROG_TEST_RUN of an XDP program. ingress_ifindex 0 = the namespace's lo.
struct XdpRun {
  int rc = -1;         // syscall result (0 = ran)
  int err = 0;         // errno when rc != 0
  uint32_t action = 0; // XDP_* returned by the program
};
XdpRun xdp_test_run(int prog_fd, const std::vector<uint8_t>& pkt, uint32_t ingress_ifindex = 0,
                    uint32_t rx_queue = 0, bool live_frames = false);

const char* xdp_action_name(uint32_t action);

}  // namespace gpo::test
