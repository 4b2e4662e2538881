#include "afxdp/checksum.h"

namespace gpo::afxdp {

bool complete_partial_checksum(uint8_t* frame, uint32_t len, const classify::ParsedFrame& p) {
  if (!p.ok() || (p.proto != 6 && p.proto != 17)) return false;
  const uint32_t check_off = p.l4_offset + (p.proto == 6 ? 16 : 6);
  if (check_off + 2 > len) return false;

  // L4 length from the IP header (bytes past it are link padding).
  uint32_t l4_end;
  uint32_t pseudo = 0;
  if (p.ip_version == 4) {
    const uint8_t* ip = frame + p.l3_offset;
    l4_end = p.l3_offset + (uint32_t(ip[2]) << 8 | ip[3]);
    pseudo = csum_add(ip + 12, 8, 0);  // saddr, daddr
  } else {
    const uint8_t* ip = frame + p.l3_offset;
    l4_end = p.l3_offset + 40 + (uint32_t(ip[4]) << 8 | ip[5]);
    pseudo = csum_add(ip + 8, 32, 0);
  }
  if (l4_end > len || l4_end <= p.l4_offset) return false;
  const uint32_t l4_len = l4_end - p.l4_offset;
  pseudo += p.proto;
  pseudo += l4_len;  // fits 32 bits: l4_len < 2^16 for IPv4, jumbograms are not parsed

  uint8_t* field = frame + check_off;
  const uint16_t stored = uint16_t(field[0] << 8 | field[1]);
  if (p.proto == 17 && stored == 0 && p.ip_version == 4) return false;  // UDP over IPv4: no checksum
  if (stored != csum_fold(pseudo)) return false;                        // not an offload leftover
  // Does it verify as it is? (the sum over everything, field included, folds to 0xffff)
  if (csum_fold(csum_add(frame + p.l4_offset, l4_len, pseudo)) == 0xffff) return false;

  field[0] = field[1] = 0;
  uint16_t c = uint16_t(~csum_fold(csum_add(frame + p.l4_offset, l4_len, pseudo)));
  if (p.proto == 17 && c == 0) c = 0xffff;  // 0 means "no checksum" for UDP
  field[0] = uint8_t(c >> 8);
  field[1] = uint8_t(c);
  return true;
}

}  // namespace gpo::afxdp
