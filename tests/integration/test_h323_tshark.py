"""Every kind of message the gatekeeper sends, decoded by tshark: no malformed frame.

The sans-IO core is driven through every RAS answer and request it can send and every
ReleaseComplete cause; the bytes go into a pcap (raw IPv4, UDP for RAS on a non-standard
port, TPKT over TCP for call signalling) that tshark dissects independently.
"""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import h323sim as sim
import pytest
from h323_harness import PHONE_A, PHONE_B, SIGNAL_A, SIGNAL_B, Harness, service

pytestmark = [pytest.mark.integration,
              pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark is not installed")]
RAS_PORT = 11719


def _ipv4(proto: int, payload: bytes) -> bytes:
    header = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0x4000, 64, proto, 0,
                         bytes((127, 0, 0, 1)), bytes((127, 0, 0, 1)))
    return header + payload


def pcap(path: Path, ras: list[bytes], q931: list[bytes]) -> None:
    packets = [_ipv4(17, struct.pack("!HHHH", RAS_PORT, 40000, 8 + len(d), 0) + d) for d in ras]
    seq = 1
    for data in q931:                          # one TCP stream, in order
        packets.append(_ipv4(6, struct.pack("!HHIIBBHHH", 1720, 40001, seq, 1, 5 << 4, 0x18, 65535, 0, 0) + data))
        seq += len(data)
    with open(path, "wb") as handle:
        handle.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101))
        for i, packet in enumerate(packets):
            handle.write(struct.pack("<IIII", 1000 + i, 0, len(packet), len(packet)) + packet)


def everything_the_gatekeeper_sends() -> Harness:
    h = Harness(service=service(size_kbps=100))
    a, b = h.two_phones()
    h.ras(PHONE_B, sim.grq(1, PHONE_B))
    h.ras(PHONE_B, sim.grq(2, PHONE_B, "other"))
    h.ras(("10.0.1.9", 1), sim.rrq(1, ("10.0.1.9", 1), SIGNAL_A, [("dialledDigits", "1001")]))      # RRJ
    h.ras(PHONE_A, sim.rrq(3, PHONE_A, SIGNAL_A, [], keep_alive_id=a))
    c = h.call(a)                                                                                   # ACF, CallProceeding
    h.call(a, seq=30)                                                                               # ARJ
    h.ras(PHONE_A, sim.arq(31, "nobody", sim.new_guid(), [("dialledDigits", "2001")]))
    h.ras(PHONE_A, sim.brq(32, a, c["guid"], 160))                                                  # BCF
    h.ras(PHONE_A, sim.brq(33, a, c["guid"], 64000))                                                # BRJ
    h.ras(PHONE_B, sim.lrq(34, [("dialledDigits", "1001")], PHONE_B))
    h.ras(PHONE_B, sim.lrq(35, [("dialledDigits", "555")], PHONE_B))
    h.advance(31)                                                                                   # IRQ
    h.ras(PHONE_B, sim.irr(36, b, PHONE_B, SIGNAL_B, [c["guid"]], need_response=True))               # IACK
    h.take(h.gk.media_idle("h323-" + c["guid"].hex(), h.now))                                       # DRQ + RC 102
    h.ras(PHONE_A, sim.drq(37, a, c["guid"]))                                                       # DCF
    h.ras(("10.9.9.9", 1), sim.drq(38, "nobody", c["guid"]))                                        # DRJ
    h.call(a, seq=40, codec="g7231", frames=1)                                                      # RC 65
    h.ras(PHONE_A, sim.urq(41, a, SIGNAL_A))                                                        # UCF
    h.ras(PHONE_A, sim.urq(42, a, SIGNAL_A))                                                        # URJ
    h.advance(1000)                                                                                 # URQ ttlExpired
    deferred = Harness(defer=True)
    x, _ = deferred.two_phones()
    deferred.ras(PHONE_A, sim.arq(3, x, sim.new_guid(), [("dialledDigits", "2001")]))
    deferred.advance(1)                                                                             # RIP
    h.sent_bytes += deferred.sent_bytes
    return h


def test_tshark_decodes_every_message_kind_without_malformed(tmp_path: Path) -> None:
    h = everything_the_gatekeeper_sends()
    ras = [d for kind, d in h.sent_bytes if kind == "ras"]
    q931 = [d for kind, d in h.sent_bytes if kind == "q931"]
    path = tmp_path / "gk.pcap"
    pcap(path, ras, q931)
    out = subprocess.run(["tshark", "-r", str(path), "-n", "-d", f"udp.port=={RAS_PORT},h225"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    detail = subprocess.run(["tshark", "-r", str(path), "-n", "-d", f"udp.port=={RAS_PORT},h225", "-V"],
                            capture_output=True, text=True, timeout=120).stdout
    assert "Malformed" not in detail and "Expert Info (Error" not in detail, \
        [line for line in detail.splitlines() if "Malformed" in line or "Error" in line][:5]
    seen = out.stdout
    for kind in ("gatekeeperConfirm", "gatekeeperReject", "registrationConfirm", "registrationReject",
                 "admissionConfirm", "admissionReject", "bandwidthConfirm", "bandwidthReject", "locationConfirm",
                 "locationReject", "infoRequest", "infoRequestAck", "disengageRequest", "disengageConfirm",
                 "disengageReject", "unregistrationConfirm", "unregistrationReject", "unregistrationRequest",
                 "requestInProgress", "CS: callProceeding", "CS: releaseComplete", "CS: setup", "CS: connect"):
        assert kind in seen, kind
    assert seen.count("RAS:") == len(ras)
