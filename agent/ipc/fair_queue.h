// Jobs waiting for a batch, handed out in turns so that one client flooding
// the agent cannot push another's jobs back: users (uid) take turns, and
// within a user its clients (connections) take turns, one job per turn, each
// client's jobs in the order they came. A batch taken from it holds at most
// max_items jobs and stops once max_bytes are in it (at least one job), so a
// job waits behind at most one batch's worth of others per turn.
#pragma once
#include <cstdint>
#include <deque>
#include <map>
#include <utility>
#include <vector>

namespace gpo::ipc {

template <typename T>
class FairQueue {
 public:
  void push(uint32_t uid, uint32_t client, T item) {
    User& u = users_[uid];
    if (u.clients.empty()) turn_.push_back(uid);
    auto& q = u.clients[client];
    if (q.empty()) u.turn.push_back(client);
    q.push_back(std::move(item));
    ++size_;
  }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }

  // Up to max_items jobs in turns; stops once their bytes (bytes_of) reach
  // max_bytes, with at least one job.
  template <typename BytesOf>
  std::vector<T> take(size_t max_items, uint64_t max_bytes, BytesOf bytes_of) {
    std::vector<T> out;
    uint64_t bytes = 0;
    while (size_ && out.size() < max_items && (out.empty() || bytes < max_bytes)) {
      const uint32_t uid = turn_.front();
      turn_.pop_front();
      User& u = users_[uid];
      const uint32_t client = u.turn.front();
      u.turn.pop_front();
      auto it = u.clients.find(client);
      bytes += bytes_of(it->second.front());
      out.push_back(std::move(it->second.front()));
      it->second.pop_front();
      --size_;
      if (it->second.empty())
        u.clients.erase(it);
      else
        u.turn.push_back(client);
      if (u.clients.empty())
        users_.erase(uid);
      else
        turn_.push_back(uid);
    }
    return out;
  }

 private:
  struct User {
    std::map<uint32_t, std::deque<T>> clients;  // non-empty queues only
    std::deque<uint32_t> turn;                  // clients with jobs, next first
  };
  std::map<uint32_t, User> users_;  // users with jobs
  std::deque<uint32_t> turn_;       // their uids, next first
  size_t size_ = 0;
};

}  // namespace gpo::ipc
