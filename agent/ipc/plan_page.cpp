#include "ipc/plan_page.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace gpo::ipc {
namespace {

constexpr size_t kPageBytes = 4096;
static_assert(sizeof(gpo_plan_page) <= kPageBytes);

// A page an earlier agent left (it was killed): tell its readers to look again.
void close_stale(const std::string& path) {
  int fd = open(path.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return;
  struct stat st {};
  if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && st.st_uid == geteuid() &&
      uint64_t(st.st_size) >= sizeof(gpo_plan_page)) {
    void* p = mmap(nullptr, sizeof(gpo_plan_page), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
    if (p != MAP_FAILED) {
      auto* pg = static_cast<gpo_plan_page*>(p);
      if (pg->magic == GPO_PLAN_MAGIC) __atomic_store_n(&pg->state, uint32_t(GPO_PLAN_CLOSED), __ATOMIC_RELEASE);
      munmap(p, sizeof(gpo_plan_page));
    }
  }
  close(fd);
}

}  // namespace

std::unique_ptr<PlanPage> PlanPage::create(const std::string& path, std::string* why) {
  close_stale(path);
  unlink(path.c_str());
  // A new file every time (O_EXCL, never through a link), readable by every client.
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
  if (fd < 0) {
    if (why) *why = path + ": " + std::strerror(errno);
    return nullptr;
  }
  fchmod(fd, 0644);  // whatever the umask
  if (ftruncate(fd, kPageBytes) != 0) {
    if (why) *why = path + ": " + std::strerror(errno);
    close(fd);
    unlink(path.c_str());
    return nullptr;
  }
  void* p = mmap(nullptr, kPageBytes, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
  close(fd);
  if (p == MAP_FAILED) {
    if (why) *why = path + ": mmap: " + std::strerror(errno);
    unlink(path.c_str());
    return nullptr;
  }
  std::unique_ptr<PlanPage> pp(new PlanPage);
  pp->path_ = path;
  pp->page_ = static_cast<gpo_plan_page*>(p);
  auto* pg = pp->page_;
  pg->magic = GPO_PLAN_MAGIC;
  pg->version = GPO_PLAN_VERSION;
  pg->agent_pid = uint32_t(getpid());
  for (auto& m : pg->min_bytes) m = GPO_PLAN_NEVER;
  __atomic_store_n(&pg->state, uint32_t(GPO_PLAN_CLOSED), __ATOMIC_RELEASE);
  return pp;
}

PlanPage::~PlanPage() {
  if (!page_) return;
  set_serving(false);
  munmap(page_, kPageBytes);
  unlink(path_.c_str());
}

void PlanPage::set(uint16_t op, uint64_t min_bytes) {
  if (op >= GPO_PLAN_OPS) return;
  if (__atomic_load_n(&page_->min_bytes[op], __ATOMIC_RELAXED) == min_bytes) return;
  __atomic_store_n(&page_->min_bytes[op], min_bytes, __ATOMIC_RELEASE);
  __atomic_fetch_add(&page_->generation, 1, __ATOMIC_RELEASE);
}

uint64_t PlanPage::get(uint16_t op) const {
  return op < GPO_PLAN_OPS ? __atomic_load_n(&page_->min_bytes[op], __ATOMIC_ACQUIRE) : GPO_PLAN_NEVER;
}

void PlanPage::set_serving(bool on) {
  __atomic_store_n(&page_->state, uint32_t(on ? GPO_PLAN_SERVING : GPO_PLAN_CLOSED), __ATOMIC_RELEASE);
  __atomic_fetch_add(&page_->generation, 1, __ATOMIC_RELEASE);
}

}  // namespace gpo::ipc
