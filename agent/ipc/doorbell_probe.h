// The uprobe doorbell: loads bpf/doorbell.bpf.c, attaches its uprobe to the
// gpo_doorbell symbol of each client library file a client registers with,
// and hands ring-buffer descriptors (kernel-stamped tgid) to a callback.
// Needs root (CAP_BPF + CAP_PERFMON); without it the socket doorbell serves.
#pragma once
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
  // Attaches the uprobe to gpo_doorbell in the library file at path (once per
  // file). False with *why when the file has no such symbol or attach fails.
  bool attach(const std::string& path, std::string* why);
  void register_with(loop::EventLoop& loop);
  void unregister(loop::EventLoop& loop);
  size_t attached() const { return links_.size(); }
  uint64_t dropped() const;  // descriptors lost to a full ring buffer

 private:
  DoorbellProbe() = default;
  static int on_event(void* ctx, void* data, size_t len);
  ::doorbell* skel_ = nullptr;
  ring_buffer* rb_ = nullptr;
  Handler handler_;
  std::map<std::string, bpf_link*> links_;  // by "dev:inode" of the library file
};

}  // namespace gpo::ipc
