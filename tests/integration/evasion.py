#!/usr/bin/python3
"""Evasion cases against the inline filter, built with scapy (Debian's python3-scapy).

Each case sends one trick at a content rule or a port rule, and its clean twin
(the same traffic without the trick, or the same trick on traffic the rules
allow). test_evasion.cpp runs this twice:

  evasion.py sniff --iface s0 --out RESULT.json   # in the server's namespace, first
  evasion.py send --iface c0 --dst-mac MAC        # in the client's namespace

The sniffer captures what reaches the far side of the bridge, stops at the
end marker, and judges every case from the frames that arrived:
  attack "blocked": the receiver cannot assemble the forbidden thing from what
      arrived, whatever its overlap policy (TCP streams are rebuilt from the
      ISN with first-wins and with last-wins overlaps; fragments likewise);
  twin "passed": every frame of the twin arrived.

The addresses are unowned ones of 198.18.0.0/15 (and 2001:2::/48, the IPv6
benchmarking prefix), so no host stack answers and only the crafted frames
cross. The rules the agent runs are in RULES (the test writes them).
"""
import argparse
import json
import select
import sys
import time

from scapy.all import (  # noqa: E402
    Dot1AD, Dot1Q, Ether, IP, IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, Raw, TCP, UDP,
    conf, sendp,
)

conf.verb = 0

RULES = """\
drop tcp any any -> any 8080 (msg:"content over tcp"; content:"EVILPATTERN"; sid:201;)
drop udp any any -> any 8081 (msg:"content over udp"; content:"EVILPATTERN"; sid:202;)
drop tcp any any -> any 9999 (msg:"port rule, tcp"; sid:203;)
drop udp any any -> any 9999 (msg:"port rule, udp"; sid:204;)
default pass
"""

PATTERN = b"EVILPATTERN"
SRC4, DST4 = "198.18.0.98", "198.18.0.99"
SRC6, DST6 = "2001:2::98", "2001:2::99"
ISN = 1000
DONE_PORT = 7777


class Frames:
    """Frames of one side of a case, plus how to find them again on arrival."""

    def __init__(self, kind, key, frames, forbidden=None):
        self.kind = kind            # "tcp" (stream), "frag" (IPv4 fragments), "frame" (single frames)
        self.key = key              # tcp: source port; frag: IP id; frame: a marker in the payload
        self.frames = frames
        self.forbidden = forbidden  # tcp/frag: the bytes (pattern) or port that must not get through


def eth(dst_mac, *tags):
    e = Ether(src="02:00:00:00:01:01", dst=dst_mac)
    for t in tags:
        e = e / t
    return e


def tcp_case(dst_mac, sport, dport, segments, tags=()):
    """segments: [(offset from ISN+1, bytes)] in sending order; a SYN first."""
    base = eth(dst_mac, *tags) / IP(src=SRC4, dst=DST4)
    frames = [base / TCP(sport=sport, dport=dport, flags="S", seq=ISN)]
    for off, data in segments:
        frames.append(base / TCP(sport=sport, dport=dport, flags="PA", seq=ISN + 1 + off, ack=1) / Raw(data))
    return frames


def split(l4_bytes, cuts):
    """(offset, bytes, more) pieces of an L4 datagram cut at (offset, length)."""
    return [(off, l4_bytes[off:off + length], off + length < len(l4_bytes)) for off, length in cuts]


def ip_fragments(dst_mac, ip_id, proto, pieces):
    """IPv4 fragments, in the order given, of (offset, bytes, more) pieces."""
    return [eth(dst_mac) / IP(src=SRC4, dst=DST4, id=ip_id, proto=proto, frag=off // 8, flags="MF" if more else 0) /
            Raw(data) for off, data, more in pieces]


def l4(pkt):
    """The bytes of an L4 header + payload as scapy builds them (checksum over SRC4 -> DST4)."""
    return bytes(IP(src=SRC4, dst=DST4) / pkt)[20:]


def cases(dst_mac):
    """name -> (rule, attack Frames, twin Frames)."""
    c = {}
    benign = b"EVILPATTERX"

    # --- TCP stream tricks at the content rule (dport 8080) ---
    c["tcp_pattern_split_across_segments"] = (
        "content",
        Frames("tcp", 30001, tcp_case(dst_mac, 30001, 8080, [(0, b"GET /EVIL"), (9, b"PATTERN HTTP/1.0")]), PATTERN),
        Frames("tcp", 30002, tcp_case(dst_mac, 30002, 8080, [(0, b"GET /EVIL"), (9, b"PATTERX HTTP/1.0")])))
    c["tcp_one_byte_segments"] = (
        "content",
        Frames("tcp", 30003, tcp_case(dst_mac, 30003, 8080, [(i, PATTERN[i:i + 1]) for i in range(len(PATTERN))]),
               PATTERN),
        Frames("tcp", 30004, tcp_case(dst_mac, 30004, 8080, [(i, benign[i:i + 1]) for i in range(len(benign))])))
    c["tcp_out_of_order_segments"] = (
        "content",
        Frames("tcp", 30005, tcp_case(dst_mac, 30005, 8080, [(9, b"PATTERN tail"), (0, b"GET /EVIL")]), PATTERN),
        Frames("tcp", 30006, tcp_case(dst_mac, 30006, 8080, [(9, b"PATTERX tail"), (0, b"GET /EVIL")])))
    # A receiver that keeps the newer bytes of an overlap reads EVILPATTERN.
    c["tcp_overlap_rewrites_for_last_wins"] = (
        "content",
        Frames("tcp", 30007, tcp_case(dst_mac, 30007, 8080, [(0, b"EVILPXXXXXX"), (5, b"ATTERN")]), PATTERN),
        Frames("tcp", 30008, tcp_case(dst_mac, 30008, 8080, [(0, b"HELLOWORLD!"), (5, b"WORLD!MORE")])))
    # A receiver that keeps the older (held out-of-order) bytes reads EVILPATTERN.
    c["tcp_overlap_rewrites_for_first_wins"] = (
        "content",
        Frames("tcp", 30009, tcp_case(dst_mac, 30009, 8080, [(5, b"ATTERN"), (0, b"EVILPXXXXXX")]), PATTERN),
        Frames("tcp", 30010, tcp_case(dst_mac, 30010, 8080, [(5, b"WORLD!"), (0, b"HELLOWORLD!")])))
    c["tcp_in_vlan"] = (
        "content",
        Frames("tcp", 30011, tcp_case(dst_mac, 30011, 8080, [(0, b"x " + PATTERN)], (Dot1Q(vlan=10),)), PATTERN),
        Frames("tcp", 30012, tcp_case(dst_mac, 30012, 8080, [(0, b"x " + benign)], (Dot1Q(vlan=10),))))
    c["tcp_in_qinq"] = (
        "content",
        Frames("tcp", 30013, tcp_case(dst_mac, 30013, 8080, [(0, b"x " + PATTERN)], (Dot1AD(vlan=100), Dot1Q(vlan=10))),
               PATTERN),
        Frames("tcp", 30014, tcp_case(dst_mac, 30014, 8080, [(0, b"x " + benign)], (Dot1AD(vlan=100), Dot1Q(vlan=10)))))

    # --- IP fragment tricks ---
    def tcp_seg(sport, dport, data, flags="PA"):
        return l4(TCP(sport=sport, dport=dport, flags=flags, seq=ISN + 1, ack=1) / Raw(data))

    # A TCP segment whose first fragment holds 8 bytes of its 20-byte header.
    seg = tcp_seg(30015, 8080, b"....." + PATTERN + b".....")
    twin = tcp_seg(30016, 8080, b"....." + benign + b".....")
    c["tcp_tiny_first_fragment"] = (
        "content",
        Frames("frag", 101, [tcp_case(dst_mac, 30015, 8080, [])[0]] +
               ip_fragments(dst_mac, 101, 6, split(seg, [(0, 8), (8, len(seg) - 8)])), PATTERN),
        Frames("frag", 102, [tcp_case(dst_mac, 30016, 8080, [])[0]] +
               ip_fragments(dst_mac, 102, 6, split(twin, [(0, 24), (24, len(twin) - 24)]))))
    seg = tcp_seg(30017, 8080, b"........" + PATTERN + b"........")
    twin = tcp_seg(30018, 8080, b"........" + benign + b"........")
    c["tcp_pattern_split_across_fragments"] = (
        "content",
        Frames("frag", 103, [tcp_case(dst_mac, 30017, 8080, [])[0]] +
               ip_fragments(dst_mac, 103, 6, split(seg, [(0, 32), (32, len(seg) - 32)])), PATTERN),
        Frames("frag", 104, [tcp_case(dst_mac, 30018, 8080, [])[0]] +
               ip_fragments(dst_mac, 104, 6, split(twin, [(0, 32), (32, len(twin) - 32)]))))
    dgram = l4(UDP(sport=30019, dport=8081) / Raw(b"........" + PATTERN + b"........"))
    twin = l4(UDP(sport=30020, dport=8081) / Raw(b"........" + benign + b"........"))
    c["udp_pattern_split_across_fragments"] = (
        "content",
        Frames("frag", 105, ip_fragments(dst_mac, 105, 17, split(dgram, [(0, 16), (16, len(dgram) - 16)])), PATTERN),
        Frames("frag", 106, ip_fragments(dst_mac, 106, 17, split(twin, [(0, 16), (16, len(twin) - 16)]))))
    # Overlap: a second fragment rewrites bytes of the first so that a
    # last-wins receiver reads the pattern. Twin: an exact duplicate fragment.
    clean = l4(UDP(sport=30021, dport=8081) / Raw(b"EVILPXXXXXXXXXXXXXXXXXXX"))
    first, last = split(clean, [(0, 16), (16, len(clean) - 16)])
    dup = split(l4(UDP(sport=30022, dport=8081) / Raw(b"A" * 24)), [(0, 16), (16, 16)])
    c["udp_overlapping_fragments"] = (
        "content",
        Frames("frag", 107, ip_fragments(dst_mac, 107, 17, [first, (8, b"EVILPATTERN_____", True), last]), PATTERN),
        Frames("frag", 108, ip_fragments(dst_mac, 108, 17, [dup[0], dup[0], dup[1]])))
    # Port rule: a second offset-0 fragment replaces the UDP header's port.
    allowed = split(l4(UDP(sport=30023, dport=8082) / Raw(b"B" * 24)), [(0, 16), (16, 16)])
    forbidden = split(l4(UDP(sport=30023, dport=9999) / Raw(b"B" * 24)), [(0, 16), (16, 16)])
    c["udp_overlap_rewrites_the_port"] = (
        "port",
        Frames("frag", 109, ip_fragments(dst_mac, 109, 17, [allowed[0], forbidden[0], allowed[1]]), 9999),
        Frames("frag", 110, ip_fragments(dst_mac, 110, 17, split(l4(UDP(sport=30024, dport=8082) / Raw(b"B" * 24)),
                                                                 [(0, 16), (16, 16)]))))
    # Port rule: a TCP SYN to 9999 whose first fragment is 8 bytes (flags hidden).
    syn = l4(TCP(sport=30025, dport=9999, flags="S", seq=ISN) / Raw(b"S" * 32))
    syn_twin = l4(TCP(sport=30026, dport=8082, flags="S", seq=ISN) / Raw(b"S" * 32))
    c["tcp_syn_tiny_first_fragment"] = (
        "port",
        Frames("frag", 111, ip_fragments(dst_mac, 111, 6, split(syn, [(0, 8), (8, len(syn) - 8)])), 9999),
        Frames("frag", 112, ip_fragments(dst_mac, 112, 6, split(syn_twin, [(0, 24), (24, len(syn_twin) - 24)]))))

    # --- header tricks ---
    def v6(sport, dport, payload, n_ext):
        p = eth(dst_mac) / IPv6(src=SRC6, dst=DST6)
        for _ in range(n_ext):
            p = p / IPv6ExtHdrDestOpt()
        return [p / UDP(sport=sport, dport=dport) / Raw(payload)]

    c["ipv6_long_extension_chain_content"] = (
        "content",
        Frames("frame", b"MARK-EXT-A", v6(30027, 8081, b"MARK-EXT-A " + PATTERN, 7)),
        Frames("frame", b"MARK-EXT-T", v6(30028, 8081, b"MARK-EXT-T " + benign, 2)))
    c["ipv6_long_extension_chain_port"] = (
        "port",
        Frames("frame", b"MARK-EXT-P", v6(30029, 9999, b"MARK-EXT-P", 7)),
        Frames("frame", b"MARK-EXT-Q", v6(30030, 8082, b"MARK-EXT-Q", 2)))
    c["port_rule_in_vlan"] = (
        "port",
        Frames("frame", b"MARK-VLAN-P",
               [eth(dst_mac, Dot1Q(vlan=10)) / IP(src=SRC4, dst=DST4) / UDP(sport=30031, dport=9999) / Raw(b"MARK-VLAN-P")]),
        Frames("frame", b"MARK-VLAN-Q",
               [eth(dst_mac, Dot1Q(vlan=10)) / IP(src=SRC4, dst=DST4) / UDP(sport=30032, dport=8082) / Raw(b"MARK-VLAN-Q")]))
    c["port_rule_in_qinq"] = (
        "port",
        Frames("frame", b"MARK-QINQ-P",
               [eth(dst_mac, Dot1AD(vlan=100), Dot1Q(vlan=10)) / IP(src=SRC4, dst=DST4) / UDP(sport=30033, dport=9999) /
                Raw(b"MARK-QINQ-P")]),
        Frames("frame", b"MARK-QINQ-Q",
               [eth(dst_mac, Dot1AD(vlan=100), Dot1Q(vlan=10)) / IP(src=SRC4, dst=DST4) / UDP(sport=30034, dport=8082) /
                Raw(b"MARK-QINQ-Q")]))
    return c


def done_frame(dst_mac):
    return eth(dst_mac) / IP(src=SRC4, dst=DST4) / UDP(sport=DONE_PORT, dport=DONE_PORT) / Raw(b"EVASION-DONE")


def send(args):
    for name, (_, attack, twin) in cases(args.dst_mac).items():
        for f in attack.frames + twin.frames:
            sendp(f, iface=args.iface)
            time.sleep(0.003)  # keeps the order on the wire; the filter sees what a sender would send
    time.sleep(0.2)
    sendp(done_frame(args.dst_mac), iface=args.iface)


# ---- judging what arrived -------------------------------------------------------

def stream(segments, last_wins):
    """Contiguous stream from ISN+1 rebuilt from (seq, bytes), in arrival order."""
    data = {}
    for seq, payload in segments:
        for i, b in enumerate(payload):
            pos = seq - (ISN + 1) + i
            if pos < 0:
                continue
            if last_wins or pos not in data:
                data[pos] = b
    out = bytearray()
    while len(out) in data:
        out.append(data[len(out)])
    return bytes(out)


def reassemble(frags, last_wins):
    """IPv4 payload of a datagram from (offset, bytes, more) fragments, or None if incomplete."""
    data, end = {}, None
    for off, payload, more in frags:
        if not more:
            end = off + len(payload)
        for i, b in enumerate(payload):
            if last_wins or off + i not in data:
                data[off + i] = b
    if end is None or any(i not in data for i in range(end)):
        return None
    return bytes(data[i] for i in range(end))


def raw_ip(pkt):
    return pkt[IP] if IP in pkt else None


def judge(frames_spec, arrived, attack):
    """For an attack: True when blocked. For a twin: True when it fully passed."""
    if frames_spec.kind == "tcp":
        sent = [(f[TCP].seq, bytes(f[TCP].payload)) for f in frames_spec.frames if len(f[TCP].payload)]
        got = [(p[TCP].seq, bytes(p[TCP].payload)) for p in arrived
               if TCP in p and p[TCP].sport == frames_spec.key and len(p[TCP].payload)]
        if attack:
            return all(frames_spec.forbidden not in stream(got, lw) for lw in (False, True))
        return all(s in got for s in sent)
    if frames_spec.kind == "frag":
        got = []
        for p in arrived:
            ip = raw_ip(p)
            if ip is not None and ip.id == frames_spec.key and (ip.flags.MF or ip.frag):
                got.append((ip.frag * 8, bytes(ip.payload), bool(ip.flags.MF)))
        if attack:
            for lw in (False, True):
                d = reassemble(got, lw)
                if d is None:
                    continue
                if isinstance(frames_spec.forbidden, int):
                    if int.from_bytes(d[2:4], "big") == frames_spec.forbidden:
                        return False
                elif frames_spec.forbidden in d:
                    return False
            return True
        sent = {(f[IP].frag * 8, bytes(f[IP].payload), bool(f[IP].flags.MF))
                for f in frames_spec.frames if IP in f and (f[IP].flags.MF or f[IP].frag)}
        return sent <= set(got) and reassemble(got, False) is not None
    marker = frames_spec.key
    seen = any(marker in bytes(p) for p in arrived)
    return not seen if attack else seen


def sniff(args):
    # scapy's own listening socket (it puts back the VLAN tags the kernel strips
    # into packet metadata), read in this loop rather than by AsyncSniffer: a
    # frame scapy fails to read (a stray one of the kernel's, say) ends an
    # AsyncSniffer's capture silently, here it is counted and skipped.
    sock = conf.L2listen(iface=args.iface)
    print("READY", flush=True)
    arrived, unreadable, done = [], 0, False
    deadline = time.time() + args.timeout
    while not done and time.time() < deadline:
        if not select.select([sock], [], [], 0.2)[0]:
            continue
        try:
            p = sock.recv()
        except Exception as e:  # noqa: BLE001 - any frame scapy cannot read
            unreadable += 1
            print("unreadable frame: %r" % e, flush=True)
            continue
        if p is None:
            continue
        arrived.append(p)
        done = UDP in p and p[UDP].dport == DONE_PORT
    sock.close()
    result = {"frames": len(arrived), "unreadable": unreadable,
              "done_seen": any(UDP in p and p[UDP].dport == DONE_PORT for p in arrived),
              "cases": {}}
    for name, (rule, attack, twin) in cases(args.dst_mac).items():
        result["cases"][name] = {"rule": rule,
                                 "attack_blocked": judge(attack, arrived, True),
                                 "twin_passed": judge(twin, arrived, False)}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    print("DONE", flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", choices=["send", "sniff", "rules"])
    ap.add_argument("--iface")
    ap.add_argument("--dst-mac", default="02:00:00:00:02:02")
    ap.add_argument("--out")
    ap.add_argument("--timeout", type=float, default=60)
    args = ap.parse_args()
    if args.mode == "rules":
        sys.stdout.write(RULES)
    elif args.mode == "send":
        send(args)
    else:
        sniff(args)


if __name__ == "__main__":
    main()
