// The uprobe doorbell: loads bpf/doorbell.bpf.c, attaches its uprobe to the
// gpo_doorbell symbol of each client library file a client registers with,
// and hands ring-buffer descriptors (kernel-stamped tgid) to a callback.
// Needs root (CAP_BPF + CAP_PERFMON); without it the socket doorbell serves.
#pragma once
#include <atomic>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "doorbell.h"  // bpf/doorbell.h

struct doorbell;
struct ring_buffer;
struct bpf_link;

namespace gpo::loop {
class EventLoop;
}

namespace gpo::ipc {

class DoorbellProbe {
 public:
  using Handler = std::function<void(const gpo_doorbell_event&)>;
  // Loads the BPF object; returns null with *why when BPF is not usable here.
  static std::unique_ptr<DoorbellProbe> load(Handler h, std::string* why);
  ~DoorbellProbe();
  // Attaches the uprobe to gpo_doorbell in the library file open at fd (O_PATH will do), whose
  // identity is key ("dev:ino"): once per file, counted, so that the uprobe
  // goes when the last user releases it. The caller has checked the file
  // (who owns it, who maps it): its ELF is parsed here. False with *why when
  // the file has no such symbol, attach fails (remembered: a file is parsed
  // at most once), or kMaxFiles files are attached.
  bool attach(int fd, const std::string& key, std::string* why);
  void release(const std::string& key);
  void register_with(loop::EventLoop& loop);
  void unregister(loop::EventLoop& loop);
  size_t attached() const { return attached_.load(); }  // any thread (status)
  uint64_t dropped() const;  // descriptors lost to a full ring buffer

  static constexpr size_t kMaxFiles = 64;

 private:
  DoorbellProbe() = default;
  static int on_event(void* ctx, void* data, size_t len);
  ::doorbell* skel_ = nullptr;
  ring_buffer* rb_ = nullptr;
  Handler handler_;
  struct Link {
    bpf_link* link = nullptr;
    uint32_t users = 0;
  };
  std::map<std::string, Link> links_;         // by "dev:inode" of the library file
  std::map<std::string, std::string> failed_;  // files that could not be attached, and why (bounded)
  std::atomic<size_t> attached_{0};
};

}  // namespace gpo::ipc
