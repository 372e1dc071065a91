"""Where the ledger lives, from the configuration's ``store:`` value.

* ``etcd://HOST:PORT[,HOST:PORT...]/PREFIX``: a ledger shared by several controllers
  (:mod:`.etcd`, :mod:`.shared`);
* any other string: a SQLite file (:mod:`.sqlite`); no ``store:``: memory only.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from ..core.errors import InvalidRequest


@dataclass(frozen=True)
class EtcdUrl:
    endpoints: tuple[tuple[str, int], ...]
    prefix: str

    @staticmethod
    def parse(text: str) -> "EtcdUrl":
        """``etcd://HOST:PORT[,HOST:PORT...]/PREFIX`` (PREFIX: one or more path segments)."""
        if not text.startswith("etcd://"):
            raise InvalidRequest(f"{text!r} is not an etcd:// URL", field="store")
        rest = text[len("etcd://"):]
        hosts, slash, prefix = rest.partition("/")
        prefix = prefix.strip("/")
        if not slash or not prefix:
            raise InvalidRequest(f"{text!r} names no key prefix: etcd://HOST:PORT/PREFIX", field="store")
        endpoints = []
        for part in hosts.split(","):
            split = urlsplit("//" + part)
            try:
                port = split.port
            except ValueError:
                port = None
            if not split.hostname or port is None:
                raise InvalidRequest(f"{part!r} in {text!r} is not HOST:PORT", field="store")
            endpoints.append((split.hostname, port))
        return EtcdUrl(tuple(endpoints), "/" + prefix + "/")
