"""Where the gatekeeper learns which community a party belongs to.

:class:`TopologyDirectory` reads the controller's topology in-process (prefixes, domains,
``e164_prefixes``). :class:`ControlDirectory` asks a :class:`CallControl` (the REST client
of a standalone gatekeeper: ``GET /mam/v1/communities/lookup?address=|domain=|number=``);
answers are cached by the client.
"""

from __future__ import annotations

from typing import Callable, Protocol

from ryu_apps.core.network import Topology

from ..call_control import CallControl


class TopologyDirectory:
    def __init__(self, topology: Callable[[], Topology]) -> None:
        self._topology = topology

    def by_address(self, ip: str) -> str | None:
        found = self._topology().community_of(None, ip)
        return None if found is None else found.name

    def by_domain(self, domain: str) -> str | None:
        found = self._topology().community_of(domain, None)
        return None if found is None else found.name

    def by_number(self, digits: str) -> str | None:
        found = self._topology().community_of_number(digits)
        return None if found is None else found.name


class NumberLookup(Protocol):
    def community_of_number(self, number: str) -> str | None: ...


class ControlDirectory:
    def __init__(self, control: CallControl, numbers: NumberLookup | None = None) -> None:
        self._control = control
        self._numbers = numbers

    def by_address(self, ip: str) -> str | None:
        return self._control.community_of(None, ip)

    def by_domain(self, domain: str) -> str | None:
        return self._control.community_of(domain, None)

    def by_number(self, digits: str) -> str | None:
        return None if self._numbers is None else self._numbers.community_of_number(digits)
