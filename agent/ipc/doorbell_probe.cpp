#include "ipc/doorbell_probe.h"

#include <bpf/libbpf.h>

#include <cerrno>
#include <cstring>

#include "doorbell.skel.h"
#include "ipc/slab_protocol.h"
#include "loop/event_loop.h"

namespace gpo::ipc {

std::unique_ptr<DoorbellProbe> DoorbellProbe::load(Handler h, std::string* why) {
  std::unique_ptr<DoorbellProbe> p(new DoorbellProbe());
  p->handler_ = std::move(h);
  p->skel_ = doorbell__open_and_load();
  if (!p->skel_) {
    *why = std::string("loading bpf/doorbell.bpf.c failed: ") + std::strerror(errno);
    return nullptr;
  }
  p->rb_ = ring_buffer__new(bpf_map__fd(p->skel_->maps.doorbell_events), &DoorbellProbe::on_event, p.get(), nullptr);
  if (!p->rb_) {
    *why = std::string("doorbell ring buffer: ") + std::strerror(errno);
    return nullptr;
  }
  return p;
}

DoorbellProbe::~DoorbellProbe() {
  for (auto& [k, l] : links_) bpf_link__destroy(l.link);
  if (rb_) ring_buffer__free(rb_);
  if (skel_) doorbell__destroy(skel_);
}

int DoorbellProbe::on_event(void* ctx, void* data, size_t len) {
  auto* self = static_cast<DoorbellProbe*>(ctx);
  if (len >= sizeof(gpo_doorbell_event)) self->handler_(*static_cast<const gpo_doorbell_event*>(data));
  return 0;
}

bool DoorbellProbe::attach(int fd, const std::string& key, std::string* why) {
  if (auto it = links_.find(key); it != links_.end()) {
    it->second.users++;
    return true;
  }
  if (auto it = failed_.find(key); it != failed_.end()) {
    *why = it->second;
    return false;
  }
  // A bound on distinct files, so clients cannot make the agent attach without end.
  if (links_.size() >= kMaxFiles) {
    *why = "too many client library files attached (" + std::to_string(kMaxFiles) + ")";
    return false;
  }
  // The file the caller opened, whatever its name: libbpf reads its ELF and
  // the kernel resolves the probe's inode through this fd's magic link.
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  LIBBPF_OPTS(bpf_uprobe_opts, uo, .func_name = GPO_DOORBELL_SYMBOL);
  bpf_link* link = bpf_program__attach_uprobe_opts(skel_->progs.gpo_doorbell_probe, -1, path.c_str(), 0, &uo);
  if (!link) {
    *why = std::string("uprobe on " GPO_DOORBELL_SYMBOL " failed: ") + std::strerror(errno);
    if (failed_.size() >= 256) failed_.erase(failed_.begin());
    failed_[key] = *why;
    return false;
  }
  links_[key] = {link, 1};
  attached_ = links_.size();
  return true;
}

void DoorbellProbe::release(const std::string& key) {
  auto it = links_.find(key);
  if (it == links_.end() || --it->second.users > 0) return;
  bpf_link__destroy(it->second.link);
  links_.erase(it);
  attached_ = links_.size();
}

void DoorbellProbe::register_with(loop::EventLoop& loop) {
  loop.add_fd(ring_buffer__epoll_fd(rb_), [this] { ring_buffer__consume(rb_); });
}

void DoorbellProbe::unregister(loop::EventLoop& loop) { loop.remove_fd(ring_buffer__epoll_fd(rb_)); }

uint64_t DoorbellProbe::dropped() const {
  uint32_t zero = 0;
  uint64_t v = 0;
  bpf_map__lookup_elem(skel_->maps.doorbell_dropped, &zero, sizeof(zero), &v, sizeof(v), 0);
  return v;
}

}  // namespace gpo::ipc
