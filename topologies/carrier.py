"""(b) A carrier core with three customer communities whose address prefixes overlap.

              cust-a 10.0.0.0/8          cust-c 10.0.0.0/8
              a1 10.1.0.1 ── [pe1]      [pe3] ── c1 10.1.0.1   (the same address as a1)
                                 \\      /
                                  [p1]
                                    |
              b1 10.2.0.1 ── [pe2]──┘
              cust-b 10.0.0.0/8

Every customer uses 10.0.0.0/8; a1 and c1 even share an address. Calls are mapped to a
customer by SIP domain (or REST), carried on that customer pair's aggregate, and the
egress edge delivers them by the per-call tag to the right terminal.

    sudo mn --custom topologies/carrier.py --topo carrier --link tc \\
        --switch ovs,datapath=user,failMode=secure,protocols=OpenFlow13 --controller remote,port=6653
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(sys._getframe().f_code.co_filename))))

from topologies.spec import CommunitySpec, HostSpec, LinkSpec, NetworkSpec, build_topo  # noqa: E402

SPEC = NetworkSpec(
    name="carrier",
    description="a carrier core, three customers on overlapping prefixes",
    switches=(("p1", 0x10), ("pe1", 0x11), ("pe2", 0x12), ("pe3", 0x13)),
    links=(LinkSpec("pe1", 10, "p1", 1, mbit=100, reservable=0.3),
           LinkSpec("pe2", 10, "p1", 2, mbit=100, reservable=0.3),
           LinkSpec("pe3", 10, "p1", 3, mbit=100, reservable=0.3)),
    communities=(
        CommunitySpec("cust-a", "pe1", ("10.0.0.0/8",), ("cust-a.example",), (
            HostSpec("a1", "10.1.0.1/8", "00:00:00:00:0a:01", 1),)),
        CommunitySpec("cust-b", "pe2", ("10.0.0.0/8",), ("cust-b.example",), (
            HostSpec("b1", "10.2.0.1/8", "00:00:00:00:0b:01", 1),)),
        CommunitySpec("cust-c", "pe3", ("10.0.0.0/8",), ("cust-c.example",), (
            HostSpec("c1", "10.1.0.1/8", "00:00:00:00:0c:01", 1),)),
    ),
    aggregates=({"id": "cust-b--cust-a", "between": ["cust-b", "cust-a"], "size_kbps": 5000},
                {"id": "cust-b--cust-c", "between": ["cust-b", "cust-c"], "size_kbps": 5000}),
)


def topo(prefix: str = ""):
    return build_topo(SPEC, prefix)


topos = {"carrier": topo}
