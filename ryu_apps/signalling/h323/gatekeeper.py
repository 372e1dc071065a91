"""The H.323 gatekeeper core (sans-IO): RAS and gatekeeper-routed call signalling.

Bytes, their source and ``now`` go in; :mod:`.actions` come out; timers are
:meth:`Gatekeeper.next_timer` / :meth:`Gatekeeper.handle_timer`. No sockets, threads or
clocks. Admission is asked through :class:`~ryu_apps.signalling.call_control.CallControl`:
at once (in the controller, or with ``--config``), or, with ``defer=True`` (a standalone
gatekeeper asking the controller over REST), as :class:`~.actions.Perform` values whose
results come back through :meth:`Gatekeeper.performed`; a request still waiting after
``rip_after_s`` (or retransmitted meanwhile) is answered RequestInProgress.

Every entry point is guarded: no input stops the gatekeeper; a bad datagram, stream or
internal failure is counted per kind (:attr:`Gatekeeper.stats`), logged once per kind,
and dropped.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field
from typing import Any, Callable

from ryu_apps.core.admission import Admitted, Rejected
from ryu_apps.core.calls import MediaEndpoint
from ryu_apps.core.codec import MediaSpec

from ..call_control import CallControl, ControlOp, perform
from .actions import Action, Perform
from .call_relay import CallRelay
from .registry import Address, Directory, Registry
from .timers import Deadlines

log = logging.getLogger(__name__)
#: Deadlines handled per handle_timer() call: a burst (thousands of registrations or ACFs
#: expiring together) is worked off in slices, with the shell's I/O served in between.
TIMER_SLICE = 256
Result = Any            # a Decision, None, or the Exception admission raised


@dataclass(frozen=True)
class GatekeeperSettings:
    gatekeeper_id: str = "mam-gk"
    ras: Address = ("127.0.0.1", 1719)            # our RAS address, as sent in GCF/LCF
    call_signal: Address = ("127.0.0.1", 1720)    # our call-signalling address (ACF, RCF, LCF)
    registration_ttl_s: int = 300
    irq_interval_s: float = 30.0
    irq_misses: int = 2                  # unanswered IRQs before an endpoint's calls are released
    t303_s: float = 4.0
    t310_s: float = 30.0
    t301_s: float = 180.0
    setup_wait_s: float = 30.0           # ACF given, no Setup: the allocation is returned
    rip_after_s: float = 0.5
    rip_delay_ms: int = 3000
    answer_cache_s: float = 30.0
    max_message_bytes: int = 16384
    gateway: Address | None = None       # the SIP <-> H.323 gateway's H.225 address (docs/gateway.md)
    gateway_communities: frozenset[str] = frozenset()   # callees there are routed to it

    @classmethod
    def from_config(cls, h323: Any, gateway: Any = None) -> "GatekeeperSettings":
        """``gateway``: the configuration's ``gateway`` section; when enabled, calls to SIP
        communities with a PBX are routed to the gateway (admitted here, once)."""
        routed: dict[str, Any] = {}
        if gateway is not None and getattr(gateway, "enabled", False):
            pbx = {name for name, _, _ in gateway.pbx}
            routed = dict(gateway=tuple(gateway.h323_listen), gateway_communities=frozenset(
                c.community for c in gateway.communities if c.signalling.value == "sip" and c.community in pbx))
        return cls(gatekeeper_id=h323.gatekeeper_id, ras=(h323.ras_host, h323.ras_port),
                   call_signal=(h323.call_host, h323.call_port), registration_ttl_s=h323.registration_ttl_s,
                   irq_interval_s=h323.irq_interval_s, t303_s=h323.t303_s, t310_s=h323.t310_s,
                   t301_s=h323.t301_s, max_message_bytes=h323.max_message_bytes, **routed)

    def route_for(self, callee_community: str | None) -> Address | None:
        """Where a call to a community with no registered callee goes: the gateway, if that
        community speaks SIP behind it."""
        if self.gateway is not None and callee_community in self.gateway_communities:
            return self.gateway
        return None

    def timer_s(self, name: str) -> float:
        return float(getattr(self, f"{name}_s"))


@dataclass
class H323Call:
    """One call the gatekeeper admitted (``call_id`` is admission's id: ``h323-<guid>``)."""

    call_id: str
    guid: bytes
    conference_id: bytes
    caller_community: str
    callee_community: str
    bandwidth: int                       # 100 bit/s units, both directions, as granted
    spec: MediaSpec
    serial: int = 0
    created_at: float = 0.0
    caller_ep: str | None = None
    callee_ep: str | None = None
    relay: CallRelay | None = None
    caller_media: MediaEndpoint | None = None
    callee_media: MediaEndpoint | None = None
    attached: bool = False
    ended: bool = False


@dataclass
class GatekeeperStats:
    ras_received: int = 0
    ras_sent: int = 0
    retransmissions: int = 0
    registrations: int = 0
    admitted: int = 0
    rejected: int = 0
    released: int = 0
    rip_sent: int = 0
    setups: int = 0
    relayed: int = 0
    connected: int = 0
    dropped: dict[str, int] = field(default_factory=dict)


class Gatekeeper:
    def __init__(self, settings: GatekeeperSettings, control: CallControl, directory: Directory, *,
                 defer: bool = False) -> None:
        from .ras import RasHandler
        from .signalling import CallSignalling
        self.settings = settings
        self.control = control
        self.directory = directory
        self.defer = defer
        self.registry = Registry()
        self.calls: dict[str, H323Call] = {}
        self.deadlines = Deadlines()
        self.stats = GatekeeperStats()
        self.out: list[Action] = []
        self._pending: dict[int, Callable[[Result], None]] = {}
        self._tickets = itertools.count(1)
        self._logged: set[str] = set()
        self.ras = RasHandler(self)
        self.signalling = CallSignalling(self)
        if settings.irq_interval_s > 0:
            self.deadlines.set(("irq",), settings.irq_interval_s)

    # --- entry points (never raise) ---------------------------------------------------

    def receive_ras(self, data: bytes, host: str, port: int, now: float) -> list[Action]:
        return self._run("ras", self.ras.receive, data, (host, port), now)

    def stream_opened(self, host: str, port: int, now: float) -> int:
        """An endpoint connected to our call-signalling port: its connection id."""
        return self.signalling.accept((host, port), now)

    def stream_data(self, conn: int, data: bytes, now: float) -> list[Action]:
        return self._run("stream", self.signalling.receive, conn, data, now)

    def stream_closed(self, conn: int, now: float, reset: bool = False) -> list[Action]:
        return self._run("stream-close", self.signalling.closed, conn, now, reset)

    def performed(self, ticket: int, result: Result, now: float) -> list[Action]:
        """The shell ran a :class:`Perform`: continue with its result."""
        then = self._pending.pop(ticket, None)
        if then is None:
            return []
        return self._run("performed", then, result)

    def next_timer(self) -> float | None:
        return self.deadlines.next()

    def handle_timer(self, now: float) -> list[Action]:
        return self._run("timer", self._timers_due, now)

    def call_ended(self, call_id: str, serial: int, cause: str, now: float) -> list[Action]:
        """Admission ended the call itself (preempted, aggregate deleted, REST release)."""
        return self._run("call-ended", self.signalling.controller_ended, call_id, serial, cause, now)

    def reconcile(self, live: set[str], asked_at: float, now: float) -> list[Action]:
        """The controller's list of live H.323 calls, asked at ``asked_at`` (REST mode, which
        hears no notifications): calls we hold that it no longer has are cleared on both sides."""
        return self._run("reconcile", self.signalling.reconcile, live, asked_at, now)

    def media_idle(self, call_id: str, now: float) -> list[Action]:
        """The data plane saw the call's media stop: release it and clear both sides."""
        return self._run("media-idle", self.signalling.media_idle, call_id, now)

    # --- shared helpers ---------------------------------------------------------------

    def ask(self, op: ControlOp, then: Callable[[Result], None] | None = None) -> int | None:
        """Ask admission: now, or (deferred) through a Perform. Returns the ticket if deferred."""
        if not self.defer:
            try:
                result: Result = perform(self.control, op)
            except Exception as error:  # noqa: BLE001 - an unreachable controller is an answer too
                self.drop("admission-error", f"{type(op).__name__}: {error}")
                result = error
            if then is not None:
                then(result)
            return None
        ticket = next(self._tickets)
        self._pending[ticket] = then if then is not None else (lambda result: None)
        self.out.append(Perform(ticket, op))
        return ticket

    def pending(self, ticket: int | None) -> bool:
        return ticket is not None and ticket in self._pending

    def drop(self, kind: str, detail: str) -> None:
        """Count a dropped input (or failed step) by kind; log the first of each kind."""
        self.stats.dropped[kind] = self.stats.dropped.get(kind, 0) + 1
        if kind not in self._logged:
            self._logged.add(kind)
            log.warning("H.323 %s (logged once; counted in stats): %s", kind, detail)

    def _run(self, kind: str, handler: Callable[..., Any], *args: Any) -> list[Action]:
        self.out = []
        try:
            handler(*args)
        except Exception as error:  # noqa: BLE001 - the gatekeeper must outlive its own bugs
            self.drop(f"internal-{kind}", repr(error))
            log.debug("H.323 %s failed", kind, exc_info=True)
        out, self.out = self.out, []
        return out

    def _timers_due(self, now: float) -> None:
        for key in self.deadlines.due(now, TIMER_SLICE):
            assert isinstance(key, tuple)
            try:
                kind = key[0]
                if kind in ("reg", "irq", "answer", "rip"):
                    self.ras.timer(key, now)
                else:
                    self.signalling.timer(key, now)
            except Exception as error:  # noqa: BLE001 - one broken timer must not stop the others
                self.drop("internal-timer", repr(error))


def decision_kind(result: Result) -> str:
    if isinstance(result, Admitted):
        return "admitted"
    if isinstance(result, Rejected):
        return "rejected"
    return "error"

