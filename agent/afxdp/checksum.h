// Completing L4 checksums left unfinished by checksum offload.
//
// A packet sent by a local socket through a veth (containers, network
// namespaces) carries CHECKSUM_PARTIAL: the UDP/TCP checksum field holds only
// the folded pseudo-header sum, the rest was to be done by the NIC. The veth
// hands such frames to XDP as they are. A frame the agent re-injects (host
// mode) or sends out of the peer port (inline mode) becomes a new skb without
// that offload state, and the receiver drops it for a bad checksum. So before
// delivering a frame the agent completes the checksum when, and only when, the
// field holds exactly the pseudo-header sum and the full checksum does not
// verify. A valid checksum is never touched, and neither is a corrupted one
// (unless it happens to equal the pseudo-header sum: 1 in 65536).
#pragma once
#include <cstdint>

#include "kernels/classify/frame.h"

namespace gpo::afxdp {

// Returns true when it changed the frame.
bool complete_partial_checksum(uint8_t* frame, uint32_t len, const classify::ParsedFrame& parsed);

}  // namespace gpo::afxdp
