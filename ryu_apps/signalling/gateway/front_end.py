"""The controller's own SIP proxy and gatekeeper in front of its gateway (docs/gateway.md).

When one configuration starts the SIP proxy and the gateway together (``ryu_apps.mam_app``):

* the proxy routes requests for the domains of every community with ``signalling: h323`` to
  ``gateway.sip_listen`` (:func:`gateway_routes`); an explicit ``sip.routes`` entry for a
  domain wins;
* the gateway trusts the addresses the proxy's and the gatekeeper's requests come from
  (:func:`front_end_sources`): those calls were admitted there, so the gateway translates
  only (one allocation per call, released once, by whoever admitted it).

Pure functions of the configuration; the standalone processes do not use them (each runs
alone and cannot know the other is there: list ``sip.routes`` and ``gateway.trusted``).
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

from .profile import GatewayConfig, Signalling

WILDCARDS = ("", "0.0.0.0", "::")


def hop_of(host: str, port: int) -> str:
    """``host:port`` as sip.routes writes it (IPv6 bracketed)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def gateway_routes(gateway: GatewayConfig, communities: Sequence[Any],
                   explicit: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    """sip.routes entries the proxy gets by default: each domain of an H.323 community ->
    the gateway's SIP address, unless ``explicit`` (the file's sip.routes) names it."""
    if not gateway.enabled:
        return ()
    named = {key.lower() for key, _ in explicit}
    hop = hop_of(*gateway.sip_listen)
    out: list[tuple[str, str]] = []
    for community in communities:
        if gateway.of(community.name).signalling is not Signalling.H323:
            continue
        for domain in community.domains:
            key = domain.lower()
            if key not in named:
                named.add(key)
                out.append((key, hop))
    return tuple(out)


def front_end_sources(gateway: GatewayConfig, sip: Any = None, h323: Any = None) -> frozenset[str]:
    """Where requests to the gateway come from, from the enabled proxy (``sip``: its datagrams
    leave from its listen host, or, when it listens on every address, from the gateway's SIP
    host: traffic to a local address leaves from that address) and the enabled gatekeeper
    (``h323``: it connects to the gateway unbound, so from the gateway's H.225 host)."""
    sources: set[str] = set()
    if sip is not None and sip.enabled:
        sources.add(gateway.sip_listen[0] if sip.listen_host in WILDCARDS else sip.listen_host)
    if h323 is not None and h323.enabled:
        sources.add(gateway.h323_listen[0])
    return frozenset(sources)
