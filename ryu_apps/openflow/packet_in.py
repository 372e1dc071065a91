"""Packet-in: best-effort forwarding (learn, route or flood) and terminal locations.

Only table-1 misses reach the controller: traffic that is not a reserved call and whose
destination is not yet known (ARP requests among them).
"""

from __future__ import annotations

import logging
from typing import Any

from .. import compat
from ..core.locations import Verdict
from . import render
from .fabric import Fabric

log = logging.getLogger(__name__)


def handle_packet_in(fabric: Fabric, msg: Any) -> None:
    datapath = msg.datapath
    name = fabric.name_of(datapath)
    if name is None:
        return
    in_port = msg.match["in_port"]
    pkt = compat.packet.Packet(msg.data)
    eth = pkt.get_protocol(compat.ethernet.ethernet)
    if eth is None or eth.ethertype == compat.ether_types.ETH_TYPE_LLDP:
        return
    best_effort = fabric.best_effort
    with fabric.lock:
        best_effort.learn(name, in_port, eth.src)
    # Not only when the MAC is news: a host's first frame is often IPv6 neighbour discovery,
    # and its IPv4 address shows only in a later ARP.
    _learn_terminal(fabric, name, in_port, pkt)
    with fabric.lock:
        entries = best_effort.route(name, eth.dst)
        for entry in entries:
            target = fabric.datapaths.get(entry.switch)
            if target is not None:
                fabric._send(target, render.flow_add(target, entry))
        ports = fabric.port_names.get(name, {})
        out_ports = ([entries[0].actions[0].port] if entries
                     else best_effort.flood_ports(name, in_port, sorted(ports)))
    if not out_ports:
        return
    ofp, parser = datapath.ofproto, datapath.ofproto_parser
    actions = [parser.OFPActionOutput(port) for port in out_ports]
    data = msg.data if msg.buffer_id == ofp.OFP_NO_BUFFER else None
    datapath.send_msg(parser.OFPPacketOut(datapath=datapath, buffer_id=msg.buffer_id, in_port=in_port,
                                          actions=actions, data=data))


def _learn_terminal(fabric: Fabric, switch: str, port: int, pkt: Any) -> None:
    """An IPv4 or ARP sender on a community's access port is a terminal there."""
    ip = None
    arp = pkt.get_protocol(compat.arp.arp)
    if arp is not None:
        ip = arp.src_ip
    else:
        ipv4 = pkt.get_protocol(compat.ipv4.ipv4)
        if ipv4 is not None:
            ip = ipv4.src
    if not ip or ip == "0.0.0.0":
        return
    for community in fabric.topology.communities_at(switch):
        if port in community.access_ports:
            key = (community.name, ip)
            with fabric.lock:
                known = fabric.terminals.get(key) == port
            if known:
                return
            verdict = fabric.service.learn_terminal(community.name, ip, port)   # the core decides (port security)
            if verdict.accepted or verdict is Verdict.UNCHANGED:
                with fabric.lock:
                    fabric.terminals[key] = port
            return
