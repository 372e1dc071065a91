"""Where each terminal is: security state, not a cache.

A call's flows match the terminal's access port (ingress) and deliver only there
(egress), so the location decides who receives a call's media and whose packets ride
the reserved class. The rules (FAUCET's port security in spirit):

* a terminal configured with a port (a static binding) is there, whatever is heard;
* the first time a terminal is heard on an access port it is learned there, unless
  that port already holds ``max_terminals_per_port`` terminals;
* a learned terminal moves when it is heard on another port, except while a call uses
  it: then only if its old port is down (the phone was re-plugged). Every refused move
  is counted and reported: it is what a spoofer's frame looks like.

Locations are written to the ledger with the calls, so a restart keeps them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Location:
    community: str
    ip: str
    port: int


@dataclass(frozen=True)
class PortSecurity:
    #: Terminals one access port may hold (0: no limit). Stops one port claiming every address.
    max_terminals_per_port: int = 16


class Verdict(str, enum.Enum):
    LEARNED = "learned"                  # first heard: now known there
    UNCHANGED = "unchanged"              # heard where it is
    MOVED = "moved"                      # heard elsewhere and allowed to move
    REFUSED_STATIC = "refused-static"    # configured on another port
    REFUSED_IN_CALL = "refused-in-call"  # a call uses it and its old port is up
    REFUSED_PORT_FULL = "refused-port-full"

    @property
    def accepted(self) -> bool:
        return self in (Verdict.LEARNED, Verdict.MOVED)

    @property
    def refused(self) -> bool:
        return self.value.startswith("refused")


def judge(heard_port: int, *, static_port: int | None, current: Location | None, in_call: bool,
          old_port_down: bool, terminals_on_port: int, policy: PortSecurity) -> Verdict:
    """What to make of a terminal heard on ``heard_port``."""
    if static_port is not None:
        return Verdict.UNCHANGED if heard_port == static_port else Verdict.REFUSED_STATIC
    if current is not None and current.port == heard_port:
        return Verdict.UNCHANGED
    if policy.max_terminals_per_port and terminals_on_port >= policy.max_terminals_per_port:
        return Verdict.REFUSED_PORT_FULL
    if current is None:
        return Verdict.LEARNED
    if in_call and not old_port_down:
        return Verdict.REFUSED_IN_CALL
    return Verdict.MOVED
