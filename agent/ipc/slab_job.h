// The backend job for a descriptor that check_job() accepted: what the agent
// hands the backend for a client's job, and what the slab fuzz target runs.
#pragma once
#include <cstring>

#include "backend/backend.h"
#include "backend/ops.h"
#include "ipc/slab_protocol.h"

namespace gpo::ipc {

// d: the agent's private copy of the descriptor (key, IV and tag point into
// it: it must outlive the job), of a known op. Input, output and AAD are
// spans of the slab at base; the client may still write them, so the input is
// marked private where the op's library must not see it change
// (OpInfo::input_snapshot).
inline backend::Job to_backend_job(uint8_t* base, const gpo_job& d) {
  backend::Job j;
  j.op = backend::OpId(d.op);
  j.in = {base + d.in_off, size_t(d.in_len)};
  j.out = {base + d.out_off, size_t(d.out_cap)};
  j.level = d.level;
  j.crc = d.crc;
  // The library reads a copy (the CPU backend's staging; a GPU reads the
  // copy it made on the device), or the slab in place.
  const backend::OpInfo* op = backend::find_op(j.op);
  j.private_input = !op || op->input_snapshot;
  if (backend::op_params(j.op).key_bytes) {  // the ciphers
    j.key = {d.key, 32};
    j.iv = {d.iv, d.iv_len};
    j.aad = {base + d.aad_off, size_t(d.aad_len)};
    std::memcpy(j.tag.data(), d.tag, 16);
  }
  return j;
}

// The output length the agent reports for a finished job (gpo_job.out_len).
inline uint64_t reported_out_len(const backend::Job& j) {
  return backend::fixed_out_bytes(j.op, j.in.size()).value_or(j.out_len);
}

}  // namespace gpo::ipc
