"""etcd v3 as the shared ledger's key-value store, through its JSON gateway (/v3/...).

    store: etcd://10.0.0.1:2379,10.0.0.2:2379,10.0.0.3:2379/mam

The client is etcd3gw (OpenStack's, maintained, typed): plain HTTP through ``requests``.
Under ryu's eventlet hub the socket module is monkey-patched (threading is not), so a
request blocks only its green thread; under os-ken's native hub it blocks its thread.
Requests (transactions, reads, leases) go straight to urllib3, the transport under
``requests``, on a pool per endpoint: ``requests``' per-request preparation was half the
controller's CPU time per request (0.6 -> 0.29 ms measured, loopback), for nothing
etcd3gw adds to a JSON POST; etcd3gw builds the URLs.
Its ``Watcher`` is not used: it reads the stream on a thread pool that under ryu (no
patched ``thread``) is a native thread running green sockets, and calls back from there.
:meth:`EtcdKV.watch_forever` reads the watch stream instead on a thread the framework's
hub spawns, so events reach the ledger on the hub like any other event.
aetcd (gRPC asyncio) would need an asyncio loop on a native thread beside eventlet.

Every request has a timeout; an endpoint that does not answer is skipped for the next
one; a store that answers on no endpoint is StoreUnavailable. etcd's int64 fields
arrive as strings and false booleans are omitted (gRPC-gateway JSON).
"""

from __future__ import annotations

import base64
import json
import logging
import socket
import time
from typing import Any, Callable, Iterable, Protocol, Sequence

import requests
import urllib3
from etcd3gw.client import Etcd3Client

from ..core.errors import StoreUnavailable
from .shared import Compare, KeyValue, Op, Put, SharedLedger, TxnResult
from .url import EtcdUrl

log = logging.getLogger(__name__)

JSON_HEADERS = {"Content-Type": "application/json"}
TARGETS = {"version": ("VERSION", "version"), "mod": ("MOD", "mod_revision"), "value": ("VALUE", "value")}


def _session() -> requests.Session:
    """No proxy or netrc lookup in the environment for each request (a third of a
    request's CPU time, measured): etcd endpoints are named in the configuration."""
    session = requests.Session()
    session.trust_env = False
    return session


def b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def unb64(text: str) -> str:
    return base64.b64decode(text).decode("utf-8")


def prefix_end(prefix: str) -> str:
    raw = bytearray(prefix.encode("utf-8"))
    raw[-1] += 1
    return raw.decode("utf-8")


def _op(op: Op) -> dict[str, Any]:
    if isinstance(op, Put):
        put: dict[str, Any] = {"key": b64(op.key), "value": b64(op.value)}
        if op.lease:
            put["lease"] = str(op.lease)
        return {"request_put": put}
    return {"request_delete_range": {"key": b64(op.key)}}


def _compare(compare: Compare) -> dict[str, Any]:
    """Fields at their protobuf default are left out ("result": "EQUAL", "target":
    "VERSION", a version of 0): the gateway's JSON decoding is most of etcd's CPU time per
    transaction (measured with its pprof), and a create-only claim is then just its key."""
    target, field = TARGETS[compare.target]
    value = b64(str(compare.expected)) if compare.target == "value" else str(compare.expected)
    body: dict[str, Any] = {"key": b64(compare.key)}
    if compare.result != "equal":
        body["result"] = compare.result.upper()
    if target != "VERSION":
        body["target"] = target
    if value != "0" or target == "VALUE":
        body[field] = value
    return body


class WatchTarget(Protocol):
    """What a watch feeds: the ledger, or the cluster's view of roles and members."""

    prefix: str
    revision: int      # the snapshot it started from
    watched: int       # the highest event revision fed

    def feed(self, events: Iterable[KeyValue]) -> None: ...

    def compacted(self, revision: int) -> None: ...


class EtcdKV:
    def __init__(self, url: EtcdUrl, timeout: float = 1.0) -> None:
        self.url = url
        self.timeout = timeout
        self._clients = [Etcd3Client(host, port, timeout=timeout, api_path="/v3/", session=_session())
                         for host, port in url.endpoints]
        self._pools = [urllib3.HTTPConnectionPool(host, port, maxsize=4, retries=False,
                                                  timeout=urllib3.Timeout(connect=timeout, read=timeout))
                       for host, port in url.endpoints]
        self._current = 0
        self.ledger: SharedLedger | None = None     # fed by the watch
        self._streams: set[requests.Response] = set()
        self.stopped = False

    # --- requests ------------------------------------------------------------------------

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """POST to the first endpoint that answers (starting with the last one that did)."""
        errors = []
        data = json.dumps(body, separators=(",", ":")).encode("ascii")
        for i in range(len(self._clients)):
            index = (self._current + i) % len(self._clients)
            client = self._clients[index]
            try:
                response = self._pools[index].urlopen("POST", "/v3/" + path, body=data, headers=JSON_HEADERS)
                if response.status != 200:
                    raise ValueError(f"HTTP {response.status}: {response.data[:200]!r}")
                result: dict[str, Any] = json.loads(response.data)
                self._current = index
                return result
            except (urllib3.exceptions.HTTPError, OSError, ValueError) as error:
                errors.append(f"{client.host}:{client.port}: {type(error).__name__} {str(error)[:200]}")
        raise StoreUnavailable("etcd did not answer: " + "; ".join(errors))

    def txn(self, compares: Sequence[Compare], success: Sequence[Op], failure: Sequence[Op]) -> TxnResult:
        answer = self.post("kv/txn", {"compare": [_compare(c) for c in compares],
                                      "success": [_op(o) for o in success], "failure": [_op(o) for o in failure]})
        return TxnResult(bool(answer.get("succeeded", False)), int(answer["header"]["revision"]))

    def snapshot(self, prefix: str) -> tuple[int, list[KeyValue]]:
        answer = self.post("kv/range", {"key": b64(prefix), "range_end": b64(prefix_end(prefix))})
        items = [KeyValue(unb64(kv["key"]), unb64(kv.get("value", "")), int(kv["mod_revision"]))
                 for kv in answer.get("kvs", ())]
        return int(answer["header"]["revision"]), items

    def get(self, key: str) -> KeyValue | None:
        answer = self.post("kv/range", {"key": b64(key)})
        kvs = answer.get("kvs", ())
        return KeyValue(key, unb64(kvs[0].get("value", "")), int(kvs[0]["mod_revision"])) if kvs else None

    def catch_up(self, revision: int, timeout: float) -> bool:
        ledger = self.ledger
        if ledger is None:
            return False
        deadline = time.monotonic() + timeout
        while ledger.watched < revision:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            ledger.waiter.sleep(min(left, 0.05))
        return True

    # --- the watch -----------------------------------------------------------------------

    def watch_forever(self, target: WatchTarget, sleep: Callable[[float], None]) -> None:
        """Feed ``target`` every change under its prefix after its snapshot, reconnecting
        (from the next revision) whenever the stream breaks. Run it on a hub thread."""
        if isinstance(target, SharedLedger):
            self.ledger = target
        backoff = 0.05
        while not self.stopped:
            try:
                for events in self._stream_events(target):
                    target.feed(events)
                    backoff = 0.05
            except Exception as error:  # noqa: BLE001 - the loop must outlive anything the network does
                if not self.stopped:
                    log.warning("etcd watch on %s broke: %s; reconnecting", target.prefix, error)
            if not self.stopped:
                sleep(backoff)
                backoff = min(backoff * 2, 1.0)

    def stop(self) -> None:
        self.stopped = True
        self.interrupt()

    def interrupt(self) -> None:
        """Break the watch streams (they reconnect): when the store seems gone, or on stop.
        The watch thread is blocked reading its stream: closing the response from here
        waits for that read (for ever, on a quiet prefix), so the socket under it is shut
        down first, which ends the read at once."""
        for stream in list(self._streams):
            _shut_down(stream)

    def _stream_events(self, target: WatchTarget) -> Iterable[list[KeyValue]]:
        client = self._clients[self._current]
        self._current = (self._current + 1) % len(self._clients)   # the next try goes elsewhere
        start = max(target.watched, target.revision) + 1
        request = {"create_request": {"key": b64(target.prefix), "range_end": b64(prefix_end(target.prefix)),
                                      "start_revision": start}}
        session = _session()
        response = session.post(client.get_url("watch"), data=json.dumps(request), stream=True,
                                timeout=(self.timeout, None))
        self._streams.add(response)
        try:
            if response.status_code != 200:
                raise StoreUnavailable(f"etcd watch answered HTTP {response.status_code}")
            for line in response.iter_lines():
                if not line:
                    continue
                result = json.loads(line).get("result", {})
                if "compact_revision" in result and int(result["compact_revision"]) > 0:
                    target.compacted(int(result["compact_revision"]))
                    return
                if result.get("canceled"):
                    raise StoreUnavailable(f"etcd cancelled the watch: {result.get('cancel_reason', '')}")
                events = [_event(e) for e in result.get("events", ())]
                if events:
                    yield events
        finally:
            self._streams.discard(response)
            response.close()
            session.close()


def _shut_down(response: requests.Response) -> None:
    connection = getattr(response.raw, "_connection", None)          # urllib3 while a body streams
    sock = getattr(connection, "sock", None)
    if isinstance(sock, socket.socket):
        try:
            sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        return
    try:
        response.close()
    except Exception:  # noqa: BLE001
        pass


def _event(event: dict[str, Any]) -> KeyValue:
    kv = event["kv"]
    deleted = event.get("type") == "DELETE"
    return KeyValue(unb64(kv["key"]), None if deleted else unb64(kv.get("value", "")), int(kv["mod_revision"]))
