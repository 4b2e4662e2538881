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

// What is at path: nothing (true), a page an earlier agent of this user left
// (marked closed so its readers look again, removed: true), or something the
// agent must not touch (false, *why).
bool clear_stale(const std::string& path, std::string* why) {
  struct stat st {};
  if (lstat(path.c_str(), &st) != 0) return errno == ENOENT;
  if (!S_ISREG(st.st_mode) || st.st_uid != geteuid()) {
    if (why) *why = path + " exists and is not a plan page of this user: leaving it";
    return false;
  }
  int fd = open(path.c_str(), O_RDWR | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
  if (fd >= 0) {
    struct stat fst {};
    if (fstat(fd, &fst) == 0 && fst.st_ino == st.st_ino && uint64_t(fst.st_size) >= sizeof(gpo_plan_page)) {
      void* p = mmap(nullptr, sizeof(gpo_plan_page), PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
      if (p != MAP_FAILED) {
        auto* pg = static_cast<gpo_plan_page*>(p);
        if (pg->magic == GPO_PLAN_MAGIC) __atomic_store_n(&pg->state, uint32_t(GPO_PLAN_CLOSED), __ATOMIC_RELEASE);
        munmap(p, sizeof(gpo_plan_page));
      }
    }
    close(fd);
  }
  unlink(path.c_str());
  return true;
}

}  // namespace

std::unique_ptr<PlanPage> PlanPage::create(const std::string& path, mode_t mode, gid_t gid, std::string* why) {
  if (!clear_stale(path, why)) return nullptr;
  // A new file every time (O_EXCL, never through a link); mode and group set
  // on the descriptor, whatever the umask.
  int fd = open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
  if (fd < 0) {
    if (why) *why = path + ": " + std::strerror(errno);
    return nullptr;
  }
  struct stat st {};
  // The group is the socket's, which the caller could set: should this fail
  // anyway, the page keeps the agent's own group (readable by fewer, not more).
  if (gid != gid_t(-1) && fchown(fd, uid_t(-1), gid) != 0) {
  }
  if (fchmod(fd, mode) != 0 || ftruncate(fd, kPageBytes) != 0 || fstat(fd, &st) != 0) {
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
  pp->dev_ = st.st_dev;
  pp->ino_ = st.st_ino;
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
  struct stat st {};
  if (lstat(path_.c_str(), &st) == 0 && st.st_dev == dev_ && st.st_ino == ino_) unlink(path_.c_str());
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
