// Reading a job's input where its submitter left it: in the memory of the
// client process, which waits for the result (Job::caller).
//
// A client's copy of its input into the shared slab and the CPU worker's
// private copy of that become one read, by the worker, straight from the
// client (process_vm_readv). The agent runs as root and could read any
// process; the client names the address. So the read is made with the
// client's own credentials, set on the reading thread alone for that one
// call, and the kernel applies its ptrace rules as it would to the client
// reading itself from another process: a process that has since run a
// setuid program, one that made itself undumpable, or a Yama policy that
// forbids it refuses the read, and the job fails (the client then computes
// it). docs/security.md has the argument.
#pragma once
#include <cstdint>
#include <span>

#include "backend/backend.h"

namespace gpo::backend {

// Reads dst.size() bytes at from.addr + off of process from.pid into dst,
// with from.uid and from.gid as the thread's credentials (unchanged when the
// process does not run as root or from.uid is 0). False with errno set when
// any byte could not be read.
bool read_caller(const CallerInput& from, uint64_t off, std::span<uint8_t> dst);

// For backends that read Job::in itself: fills in with the caller's input and
// clears j.caller. False (j.status = failed) when the read failed.
bool fill_from_caller(Job& j);

}  // namespace gpo::backend
