// Where on a function to put its uprobe so that a hit costs one trap.
//
// On x86-64 the kernel emulates a few instructions at a uprobe (push of a
// register, call/jmp/jcc with a relative target, nop); any other instruction
// is copied and single-stepped out of line: a second trap on every hit, and
// several times the cost (measured by gpuoffload-bench spot, docs/spotting.md). When a
// function starts with such an instruction, the probe moves forward to the
// first emulated one, provided everything before it is straight-line code that
// leaves the argument registers alone (endbr64, test, cmp, loads into scratch
// registers, stack adjustments): the probe then still fires on every call and
// still reads the arguments. Anything the decoder below does not know stops
// the search, and the probe stays on the first instruction.
//
// This is a whitelist of the few instruction forms seen at the entry of the
// spotted functions in distribution builds, not a disassembler.
#pragma once
#include <cstdint>
#include <span>
#include <string>

namespace gpo::spot {

struct ProbeSite {
  uint64_t skip = 0;       // bytes from the function's first instruction to the probed one
  bool emulated = false;   // the kernel emulates the probed instruction (one trap per hit)
  bool tail_call = false;  // the function is a thunk: register moves, then jmp elsewhere
  std::string insn;        // what is probed: "push", "jcc", "jmp", "call", "nop", or "other"
};

// code: the function's first bytes (32 are plenty).
ProbeSite choose_probe_site(std::span<const uint8_t> code);

}  // namespace gpo::spot
