"""The guaranteed class on a port as an OVSDB ``linux-htb`` QoS (class_mode: ovsdb), via ovsdbapp.

For Open vSwitch with the kernel datapath (and switches whose OVSDB honours queues),
where the flows' ``set_queue`` selects the queue: queue ``queue_id`` gets a min-rate of
the sum of the aggregates crossing the port, queue 0 (best effort) the rest; both may
borrow up to the link rate. One OVSDB transaction per change: a port whose QoS row is
ours (``external_ids:owner=mam``) gets its rates updated in place; otherwise a new QoS
with its queues is created and set on the port, and a QoS of ours it replaces is
destroyed with its queues, so nothing is left behind. The server is
``dataplane.ovsdb`` (``unix:/var/run/openvswitch/db.sock``, or ``tcp:HOST:6640`` for a
remote switch). The userspace datapath ignores these queues: use class_mode tc there.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from ..core.flowplan import PortClass

log = logging.getLogger(__name__)
OWNER = {"owner": "mam"}
TIMEOUT_S = 10


class OvsdbQueues:
    def __init__(self, address: str = "unix:/var/run/openvswitch/db.sock") -> None:
        self.address = address
        self._api: Any = None
        self._lock = threading.Lock()

    def _ovsdb(self) -> Any:
        if self._api is None:
            from ovsdbapp.backend.ovs_idl import connection  # type: ignore[import-untyped]
            from ovsdbapp.schema.open_vswitch import impl_idl  # type: ignore[import-untyped]
            idl = connection.OvsdbIdl.from_server(self.address, "Open_vSwitch")
            self._api = impl_idl.OvsdbIdl(connection.Connection(idl=idl, timeout=TIMEOUT_S))
        return self._api

    def close(self) -> None:
        with self._lock:
            if self._api is not None:
                try:
                    self._api.ovsdb_connection.stop()
                except Exception:
                    pass
                self._api = None

    def current_qos(self, interface: str) -> Any:
        """The port's QoS row if it is ours, else None."""
        with self._lock:
            return self._current(self._ovsdb(), interface)

    @staticmethod
    def _current(api: Any, interface: str) -> Any:
        port = api.db_find_rows("Port", ("name", "=", interface)).execute(check_error=True)
        if not port or not port[0].qos:
            return None
        qos = port[0].qos[0]
        return qos if dict(qos.external_ids).get("owner") == "mam" else None

    def apply(self, interface: str, port_class: PortClass | None) -> list[str]:
        with self._lock:
            try:
                api = self._ovsdb()
                if not api.db_find_rows("Port", ("name", "=", interface)).execute(check_error=True):
                    return [f"no port {interface} in {self.address}"]
                current = self._current(api, interface)
                if port_class is None:
                    if current is not None:
                        with api.transaction(check_error=True) as txn:
                            txn.add(api.db_clear("Port", interface, "qos"))
                            self._destroy(api, txn, current)
                    return []
                self._set(api, interface, current, port_class)
                return []
            except Exception as error:
                return [f"{interface}: {error}"]

    @staticmethod
    def _rates(port_class: PortClass) -> tuple[str, str]:
        cap = max(port_class.capacity_kbps, 8) * 1000
        return str(cap), str(min(max(port_class.min_kbps, 8) * 1000, cap))

    def _set(self, api: Any, interface: str, current: Any, port_class: PortClass) -> None:
        cap, reserved = self._rates(port_class)
        queue_id = port_class.queue_id
        queues = dict(current.queues) if current is not None else {}
        if current is not None and set(queues) == {0, queue_id}:
            with api.transaction(check_error=True) as txn:      # in place: nothing to create or leak
                txn.add(api.db_set("QoS", current.uuid, ("other_config", {"max-rate": cap})))
                txn.add(api.db_set("Queue", queues[0].uuid, ("other_config", {"max-rate": cap})))
                txn.add(api.db_set("Queue", queues[queue_id].uuid,
                                   ("other_config", {"min-rate": reserved, "max-rate": cap})))
            return
        with api.transaction(check_error=True) as txn:
            best_effort = txn.add(api.db_create("Queue", other_config={"max-rate": cap}, external_ids=OWNER))
            guaranteed = txn.add(api.db_create("Queue", other_config={"min-rate": reserved, "max-rate": cap},
                                               external_ids=OWNER))
            qos = txn.add(api.db_create("QoS", type="linux-htb", other_config={"max-rate": cap},
                                        queues={0: best_effort, queue_id: guaranteed}, external_ids=OWNER))
            txn.add(api.db_set("Port", interface, ("qos", qos)))
            if current is not None:
                self._destroy(api, txn, current)

    @staticmethod
    def _destroy(api: Any, txn: Any, qos: Any) -> None:
        for queue in dict(qos.queues).values():
            txn.add(api.db_destroy("Queue", queue.uuid))
        txn.add(api.db_destroy("QoS", qos.uuid))
