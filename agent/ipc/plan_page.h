// The agent's side of the plan page (slab_protocol.h, gpo_plan_page): a file
// next to the offload socket that clients map read-only to decide, per call
// and without IPC, whether a job goes to the agent or stays in the process.
#pragma once
#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>

#include "ipc/slab_protocol.h"

namespace gpo::ipc {

class PlanPage {
 public:
  // Creates path afresh with mode and group (gid -1: the agent's own), every
  // op at GPO_PLAN_NEVER and the state closed. A page an earlier agent of
  // this user left (it was killed) is first marked closed, so that its
  // readers look again, then replaced; anything else at path (another user's
  // file, a symlink, a folder) is left alone: null with *why.
  static std::unique_ptr<PlanPage> create(const std::string& path, mode_t mode, gid_t gid, std::string* why);
  ~PlanPage();  // marks the page closed and removes the file, if path is still this page
  PlanPage(const PlanPage&) = delete;
  PlanPage& operator=(const PlanPage&) = delete;

  // Jobs of op with at least min_bytes input go to the agent (GPO_PLAN_NEVER: none).
  void set(uint16_t op, uint64_t min_bytes);
  uint64_t get(uint16_t op) const;
  void set_serving(bool on);
  const std::string& path() const { return path_; }

 private:
  PlanPage() = default;
  std::string path_;
  gpo_plan_page* page_ = nullptr;
  dev_t dev_ = 0;  // the file created, so that only it is removed
  ino_t ino_ = 0;
};

// The plan page's path for an offload socket path.
inline std::string plan_page_path(const std::string& socket_path) { return socket_path + GPO_PLAN_SUFFIX; }

}  // namespace gpo::ipc
