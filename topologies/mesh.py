"""(c) A meshed core with alternative paths, one of them too thin to reserve on.

                 ┌────── 10 Mbit/s, 10 % reservable (thin) ──────┐
    x1 ── [e1]──[c1]                                            [c2]──[e2] ── y1
                 ├──────────[c3]──────────────────────[c3→c2]────┤
                 └──────────[c4]──────────────────────[c4→c2]────┘
                            (c3 ── c4 also linked; every other link 100 Mbit/s)

The shortest path e1-c1-c2-e2 cannot reserve the 5 Mbit/s aggregate; the controller's
constrained shortest path goes round through c3 or c4.

    sudo mn --custom topologies/mesh.py --topo mesh --link tc \\
        --switch ovs,datapath=user,failMode=secure,protocols=OpenFlow13 --controller remote,port=6653
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(sys._getframe().f_code.co_filename))))

from topologies.spec import CommunitySpec, HostSpec, LinkSpec, NetworkSpec, build_topo  # noqa: E402

THIN = ("c1", "c2")

SPEC = NetworkSpec(
    name="mesh",
    description="a meshed core with one link too thin for the aggregate",
    switches=(("e1", 0x21), ("e2", 0x22), ("c1", 0x31), ("c2", 0x32), ("c3", 0x33), ("c4", 0x34)),
    links=(LinkSpec("e1", 10, "c1", 1, mbit=100),
           LinkSpec("e2", 10, "c2", 1, mbit=100),
           LinkSpec("c1", 2, "c2", 2, mbit=10, reservable=0.1),
           LinkSpec("c1", 3, "c3", 1, mbit=100),
           LinkSpec("c3", 2, "c2", 3, mbit=100),
           LinkSpec("c1", 4, "c4", 1, mbit=100),
           LinkSpec("c4", 2, "c2", 4, mbit=100),
           LinkSpec("c3", 3, "c4", 3, mbit=100)),
    communities=(
        CommunitySpec("site-x", "e1", ("10.0.1.0/24",), ("site-x.example",), (
            HostSpec("x1", "10.0.1.1/8", "00:00:00:00:0e:01", 1),)),
        CommunitySpec("site-y", "e2", ("10.0.2.0/24",), ("site-y.example",), (
            HostSpec("y1", "10.0.2.1/8", "00:00:00:00:0e:02", 1),)),
    ),
    aggregates=({"id": "site-x--site-y", "between": ["site-x", "site-y"], "size_kbps": 5000},),
)


def topo(prefix: str = ""):
    return build_topo(SPEC, prefix)


topos = {"mesh": topo}
