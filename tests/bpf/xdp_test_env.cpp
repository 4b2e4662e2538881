#include "bpf/xdp_test_env.h"

#include <bpf/bpf.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <thread>

#include "common/proc.h"

namespace gpo::test {

namespace {
std::atomic<int> g_netns_seq{0};

bool ip(const std::vector<std::string>& args, std::string* err) {
  std::vector<std::string> argv{"ip"};
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = run_proc(argv, 10.0);
  if (r.exit_code != 0 && err) {
    *err = "ip";
    for (const auto& a : args) *err += " " + a;
    *err += ": " + r.out;
  }
  return r.exit_code == 0;
}
}  // namespace

TestNetns::TestNetns(const std::string& tag) {
  name_ = "gpo" + tag + std::to_string(getpid()) + "_" + std::to_string(g_netns_seq++);
  if (!ip({"netns", "add", name_}, &error_)) return;
  ok_ = ip({"-n", name_, "link", "add", "v0", "type", "veth", "peer", "name", "v1"}, &error_) &&
        ip({"-n", name_, "addr", "add", "198.18.0.1/24", "dev", "v0"}, &error_) &&
        ip({"-n", name_, "addr", "add", "198.18.0.2/24", "dev", "v1"}, &error_) &&
        ip({"-n", name_, "link", "set", "v0", "up"}, &error_) &&
        ip({"-n", name_, "link", "set", "v1", "up"}, &error_) &&
        ip({"-n", name_, "link", "set", "lo", "up"}, &error_);
}

TestNetns::~TestNetns() { ip({"netns", "del", name_}, nullptr); }

void TestNetns::run_inside(const std::function<void()>& fn) const {
  std::thread t([&] {
    int fd = open(path().c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || setns(fd, CLONE_NEWNET) != 0) {
      if (fd >= 0) close(fd);
      return;  // fn not run: the caller's expectations fail visibly
    }
    close(fd);
    fn();
  });
  t.join();
}

XdpRun xdp_test_run(int prog_fd, const std::vector<uint8_t>& pkt, uint32_t ingress_ifindex, uint32_t rx_queue,
                    bool live_frames) {
  XdpRun r;
  xdp_md ctx{};
  ctx.data_end = uint32_t(pkt.size());  // the kernel insists on data_end == size
  ctx.ingress_ifindex = ingress_ifindex;
  ctx.rx_queue_index = rx_queue;
  std::vector<uint8_t> out(pkt.size() + 256);
  LIBBPF_OPTS(bpf_test_run_opts, opts, .data_in = pkt.data(), .data_size_in = uint32_t(pkt.size()));
  bool with_ctx = ingress_ifindex != 0 || rx_queue != 0 || live_frames;
  if (with_ctx) {
    opts.ctx_in = &ctx;
    opts.ctx_size_in = sizeof(ctx);
  }
  if (live_frames) {
    opts.flags = BPF_F_TEST_XDP_LIVE_FRAMES;
    opts.repeat = 1;
  } else {
    opts.data_out = out.data();
    opts.data_size_out = uint32_t(out.size());
  }
  r.rc = bpf_prog_test_run_opts(prog_fd, &opts);
  r.err = r.rc ? errno : 0;
  r.action = opts.retval;
  return r;
}

const char* xdp_action_name(uint32_t action) {
  switch (action) {
    case XDP_ABORTED: return "XDP_ABORTED";
    case XDP_DROP: return "XDP_DROP";
    case XDP_PASS: return "XDP_PASS";
    case XDP_TX: return "XDP_TX";
    case XDP_REDIRECT: return "XDP_REDIRECT";
  }
  return "XDP_?";
}

}  // namespace gpo::test
