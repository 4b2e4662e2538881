#include "spot/probe_site.h"

namespace gpo::spot {
namespace {

enum class Kind { unknown, push, call, jmp, jcc, nop, plain };

struct Insn {
  Kind kind = Kind::unknown;
  size_t len = 0;
  bool writes_arg = false;  // writes rdi, rsi, rdx, rcx, r8 or r9 (System V argument registers)
};

bool is_arg_reg(int r) { return r == 7 || r == 6 || r == 2 || r == 1 || r == 8 || r == 9; }

// Length of a ModRM operand (modrm byte included) without SIB forms; 0 if unsupported.
size_t modrm_len(uint8_t modrm) {
  int mod = modrm >> 6, rm = modrm & 7;
  if (mod == 3) return 1;
  if (rm == 4) return 0;              // SIB: not needed here
  if (mod == 0) return rm == 5 ? 5 : 1;  // rip-relative disp32, or (reg)
  return mod == 1 ? 2 : 5;
}

Insn decode(std::span<const uint8_t> c) {
  Insn in;
  // endbr64 (CET builds, e.g. Ubuntu's libraries): a hint nop the kernel does
  // not emulate; it writes nothing, so the probe can go past it.
  if (c.size() >= 4 && c[0] == 0xf3 && c[1] == 0x0f && c[2] == 0x1e && c[3] == 0xfa) return {Kind::plain, 4, false};
  size_t i = 0;
  uint8_t rex = 0;
  if (i < c.size() && (c[i] & 0xf0) == 0x40) rex = c[i++];
  if (i >= c.size()) return in;
  uint8_t op = c[i];
  bool rex_r = rex & 4, rex_b = rex & 1;
  auto need = [&](size_t n) { return i + n <= c.size(); };

  if (op >= 0x50 && op <= 0x57 && (rex == 0 || rex == 0x41)) return {Kind::push, i + 1, false};
  if (rex) {
    // REX only in front of the register forms below.
  } else {
    if (op == 0x90) return {Kind::nop, 1, false};
    if (op == 0xe8 && need(5)) return {Kind::call, 5, true};  // the callee may write anything
    if (op == 0xe9 && need(5)) return {Kind::jmp, 5, false};
    if (op == 0xeb && need(2)) return {Kind::jmp, 2, false};
    if (op >= 0x70 && op <= 0x7f && need(2)) return {Kind::jcc, 2, false};
    if (op == 0x0f && need(6) && c[i + 1] >= 0x80 && c[i + 1] <= 0x8f) return {Kind::jcc, 6, false};
  }
  if (op >= 0xb8 && op <= 0xbf && !(rex & 8) && need(5)) {  // mov $imm32, %r32
    int dst = (op - 0xb8) + (rex_b ? 8 : 0);
    return {Kind::plain, i + 5, is_arg_reg(dst)};
  }
  if (!need(2)) return in;
  uint8_t modrm = c[i + 1];
  int mod = modrm >> 6;
  int reg = ((modrm >> 3) & 7) + (rex_r ? 8 : 0);
  int rm = (modrm & 7) + (rex_b ? 8 : 0);
  switch (op) {
    case 0x84: case 0x85:  // test r/m, r: flags only
    case 0x38: case 0x39: case 0x3a: case 0x3b:  // cmp: flags only
      if (mod != 3) return in;
      return {Kind::plain, i + 2, false};
    case 0x89: case 0x31:  // mov/xor r/m <- r: register destination only
      if (mod != 3) return in;
      return {Kind::plain, i + 2, is_arg_reg(rm)};
    case 0x8b: case 0x33: {  // mov/xor r <- r/m: register destination, memory source without SIB
      size_t m = modrm_len(modrm);
      if (!m || !need(1 + m)) return in;
      return {Kind::plain, i + 1 + m, is_arg_reg(reg)};
    }
    case 0x83:  // add/sub $imm8 on %rsp (stack frame)
      if ((rex & 8) && mod == 3 && (modrm & 7) == 4 && !rex_b && (((modrm >> 3) & 7) == 0 || ((modrm >> 3) & 7) == 5) &&
          need(3))
        return {Kind::plain, i + 3, false};
      return in;
    case 0x81:  // add/sub $imm32 on %rsp
      if ((rex & 8) && mod == 3 && (modrm & 7) == 4 && !rex_b && (((modrm >> 3) & 7) == 0 || ((modrm >> 3) & 7) == 5) &&
          need(6))
        return {Kind::plain, i + 6, false};
      return in;
  }
  return in;
}

const char* name(Kind k) {
  switch (k) {
    case Kind::push: return "push";
    case Kind::call: return "call";
    case Kind::jmp: return "jmp";
    case Kind::jcc: return "jcc";
    case Kind::nop: return "nop";
    default: return "other";
  }
}

bool emulated(Kind k) { return k == Kind::push || k == Kind::call || k == Kind::jmp || k == Kind::jcc || k == Kind::nop; }

}  // namespace

ProbeSite choose_probe_site(std::span<const uint8_t> code) {
  ProbeSite site;
  Insn first = decode(code);
  site.insn = name(first.kind);
  site.emulated = emulated(first.kind);

  // A thunk: register set-up (argument registers included), then a jmp.
  size_t off = 0;
  for (int n = 0; n < 4 && off < code.size(); n++) {
    Insn in = decode(code.subspan(off));
    if (in.kind == Kind::jmp) site.tail_call = true;
    if (in.kind != Kind::plain) break;
    off += in.len;
  }
  if (site.emulated) return site;

  // Move forward over straight-line code that keeps the arguments intact.
  off = 0;
  for (int n = 0; n < 6 && off < code.size(); n++) {
    Insn in = decode(code.subspan(off));
    if (emulated(in.kind)) {
      site.skip = off;
      site.emulated = true;
      site.insn = name(in.kind);
      return site;
    }
    if (in.kind != Kind::plain || in.writes_arg) break;
    off += in.len;
  }
  return site;
}

}  // namespace gpo::spot
