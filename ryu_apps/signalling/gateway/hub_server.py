"""The gateway inside the controller process, on the framework's hub.

The gatekeeper's hub shell (:class:`..h323.hub_server.HubGatekeeper`) already runs a UDP
loop, an accept loop, one reader per TCP connection, connectors and a timer loop, each
guarded, under one lock. The gateway needs exactly that (its UDP socket carries SIP
instead of RAS), so :class:`GatewayFace` presents the :class:`.interwork.Gateway` with the
gatekeeper's entry points, and :func:`hub_gateway` runs it in that shell.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

from ..h323.actions import Action as H323Action, Datagram
from ..h323.hub_server import HubGatekeeper
from ..sip.transaction import Peer, Send
from .interwork import Action, Gateway


@dataclass(frozen=True)
class _Addresses:
    ras: tuple[str, int]              # the gateway's SIP UDP address (the shell's datagram socket)
    call_signal: tuple[str, int]      # its H.225 TCP address


class GatewayFace:
    """The gateway with the entry points the gatekeeper's hub shell calls."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.control = gateway.control
        settings = gateway.settings
        self.settings = _Addresses((settings.sip_host, settings.sip_port), (settings.h323_host, settings.h323_port))

    @staticmethod
    def _out(actions: list[Action]) -> list[H323Action]:
        return [Datagram(a.peer.host, a.peer.port, a.data) if isinstance(a, Send) else a for a in actions]

    def receive_ras(self, data: bytes, host: str, port: int, now: float) -> list[H323Action]:
        return self._out(self.gateway.sip_receive(data, Peer("udp", host, port), now))

    def stream_opened(self, host: str, port: int, now: float) -> int:
        return self.gateway.h323_accept((host, port))

    def stream_data(self, conn: int, data: bytes, now: float) -> list[H323Action]:
        return self._out(self.gateway.h323_data(conn, data, now))

    def stream_closed(self, conn: int, now: float, reset: bool) -> list[H323Action]:
        return self._out(self.gateway.h323_closed(conn, now))

    def call_ended(self, call_id: str, serial: int, cause: str, now: float) -> list[H323Action]:
        if not call_id.startswith("gw-"):
            return []                              # the proxy's and the gatekeeper's own calls
        return self._out(self.gateway.call_ended(call_id, cause, now))

    def next_timer(self) -> float | None:
        return self.gateway.next_timer()

    def handle_timer(self, now: float) -> list[H323Action]:
        return self._out(self.gateway.handle_timer(now))

    def performed(self, ticket: int, result: Any, now: float) -> list[H323Action]:
        return []                                  # admission is asked in-process, never deferred


def hub_gateway(gateway: Gateway, **shell: Any) -> HubGatekeeper:
    """The gateway on the hub: ``spawn``, ``sleep``, ``socket_factory``, ``event_factory``
    as for :class:`HubGatekeeper`. ``start()`` binds its SIP and H.225 addresses."""
    return HubGatekeeper(cast(Any, GatewayFace(gateway)), **shell)
