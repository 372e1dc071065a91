"""(a) Two enterprise sites across a constrained WAN link.

    h1a, h1b ── [s1] ══ 10 Mbit/s WAN ══ [s2] ── 100 Mbit/s ── [s3] ── h2a, h2b
    site-a 10.0.1.0/24                                          site-b 10.0.2.0/24

    sudo mn --custom topologies/enterprise.py --topo enterprise --link tc \\
        --switch ovs,datapath=user,failMode=secure,protocols=OpenFlow13 --controller remote,port=6653
    python -m topologies enterprise > site.yaml      # the matching controller configuration
"""

import os
import sys

# `mn --custom` execs this file without __file__; the code object still knows where it lives.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(sys._getframe().f_code.co_filename))))

from topologies.spec import CommunitySpec, HostSpec, LinkSpec, NetworkSpec, build_topo  # noqa: E402

SPEC = NetworkSpec(
    name="enterprise",
    description="two enterprise sites across a 10 Mbit/s WAN",
    switches=(("s1", 0x1), ("s2", 0x2), ("s3", 0x3)),
    links=(LinkSpec("s1", 10, "s2", 10, mbit=10, reservable=0.5),
           LinkSpec("s2", 11, "s3", 10, mbit=100, reservable=0.5)),
    communities=(
        CommunitySpec("site-a", "s1", ("10.0.1.0/24",), ("site-a.example",), (
            HostSpec("h1a", "10.0.1.1/8", "00:00:00:00:01:01", 1),
            HostSpec("h1b", "10.0.1.2/8", "00:00:00:00:01:02", 2))),
        CommunitySpec("site-b", "s3", ("10.0.2.0/24",), ("site-b.example",), (
            HostSpec("h2a", "10.0.2.1/8", "00:00:00:00:02:01", 1),
            HostSpec("h2b", "10.0.2.2/8", "00:00:00:00:02:02", 2))),
    ),
    aggregates=({"id": "site-a--site-b", "between": ["site-a", "site-b"], "size_kbps": 2000,
                 "levels": ["emergency", "voice", "voice-band-data"], "preemption": True},),
)


def topo(prefix: str = ""):
    return build_topo(SPEC, prefix)


topos = {"enterprise": topo}
