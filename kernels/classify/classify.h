// The packet filter's classifier interface: a batch of L2 frames in, one
// verdict per frame out. The CPU classifier (classify_cpu.h) and the GPU
// classifier (classify_runner.h, also AsyncClassifier) implement it.
#pragma once
#include <cstdint>
#include <span>
#include <string_view>

namespace gpo::classify {

// Where a packet stands in its flow, for rules with `flow:` (docs/rules.md).
// The packet path's FlowTracker (agent/afxdp/flow_state.h) computes it per
// packet; 0 means "no flow information": then no rule that asks for a
// direction or for `established` matches (Suricata treats a packet without a
// flow the same way), and `not_established` does.
enum FlowBits : uint8_t {
  kFlowToServer = 1u << 0,     // sent by the flow's initiator (the client)
  kFlowToClient = 1u << 1,     // sent by the responder (the server)
  kFlowEstablished = 1u << 2,  // TCP: the handshake completed before this packet; others: both directions seen
};

// One received frame, starting at the Ethernet header. Not owned.
struct Frame {
  const uint8_t* data = nullptr;
  uint32_t len = 0;
  uint8_t flow = 0;  // FlowBits
};

struct Verdict {
  uint32_t rule_id = 0;  // sid of the first matching rule; 0 = the rule file's default policy
  uint8_t action = 0;    // enum gpo_action (bpf/xdp_filter.h): pass, drop, alert
  // True when later packets of the same flow cannot get another verdict, so the
  // agent may install it in the XDP flow cache. False when a rule earlier in
  // file order matched the headers but not (yet) the payload: content may still
  // arrive in later packets, so the flow keeps coming to the agent.
  bool cacheable = true;
};

class Classifier {
 public:
  virtual ~Classifier() = default;
  virtual std::string_view name() const = 0;
  // out.size() == frames.size(). Frames that do not parse as IPv4/IPv6 get the
  // default policy's verdict with cacheable = false.
  virtual void classify(std::span<const Frame> frames, std::span<Verdict> out) = 0;
};

// A classifier that can also take batches asynchronously (the GPU
// classifier): submit, keep receiving, collect when ready. The packet path
// keeps the results in batch order.
class AsyncClassifier : public Classifier {
 public:
  // Queues the batch; returns a ticket, or -1 when no buffer is free. The
  // frames must stay valid until collect().
  virtual int submit(std::span<const Frame> frames) = 0;
  virtual bool ready(int ticket) const = 0;  // never blocks
  // Waits if needed, writes the verdicts (out.size() == the batch's size).
  virtual void collect(int ticket, std::span<Verdict> out) = 0;
  // Readable whenever a submitted batch completes (an eventfd), for an event loop.
  virtual int completion_fd() const = 0;
  virtual int in_flight() const = 0;
  virtual uint32_t max_batch() const = 0;
};

}  // namespace gpo::classify
