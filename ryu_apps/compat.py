"""One import surface for ryu and os-ken, so every app module runs under both.

Chosen by ``MAM_FRAMEWORK`` (``ryu`` or ``os_ken``); by default ryu when it is
installed, else os-ken. Apps spawn and sleep only through ``hub`` and guard shared
state with locks, so they behave under eventlet green threads and native threads alike.
"""

from __future__ import annotations

import importlib
import logging
import os
import ssl
import threading
from typing import Any, Callable

from . import gc_tuning

log = logging.getLogger(__name__)


def _choose() -> str:
    wanted = os.environ.get("MAM_FRAMEWORK", "").strip().lower().replace("-", "_")
    if wanted in ("ryu", "os_ken"):
        return wanted
    if wanted:
        raise ImportError(f"MAM_FRAMEWORK={wanted!r}: expected 'ryu' or 'os_ken'")
    try:
        importlib.import_module("ryu")
        return "ryu"
    except ImportError:
        return "os_ken"


FRAMEWORK = _choose()


def _load(name: str) -> Any:
    return importlib.import_module(f"{FRAMEWORK}.{name}")


app_manager = _load("base.app_manager")
RyuApp = app_manager.RyuApp if FRAMEWORK == "ryu" else app_manager.OSKenApp
cfg = _load("cfg")
hub = _load("lib.hub")
ofp_event = _load("controller.ofp_event")
_handler = _load("controller.handler")
set_ev_cls = _handler.set_ev_cls
CONFIG_DISPATCHER = _handler.CONFIG_DISPATCHER
MAIN_DISPATCHER = _handler.MAIN_DISPATCHER
DEAD_DISPATCHER = _handler.DEAD_DISPATCHER
ofproto_v1_3 = _load("ofproto.ofproto_v1_3")
ofproto_v1_3_parser = _load("ofproto.ofproto_v1_3_parser")
packet = _load("lib.packet.packet")
ethernet = _load("lib.packet.ethernet")
arp = _load("lib.packet.arp")
ipv4 = _load("lib.packet.ipv4")
udp = _load("lib.packet.udp")
vlan = _load("lib.packet.vlan")
mpls = _load("lib.packet.mpls")
lldp = _load("lib.packet.lldp")
ether_types = _load("lib.packet.ether_types")
topology_event = _load("topology.event")


def filter_flow_removed(unwanted: Callable[[Any, int], bool]) -> None:
    """Drop OpenFlow 1.3 flow-removed messages for which ``unwanted(datapath, cookie)`` says
    so before the framework decodes them (its match parser costs ~60 µs a message, and every
    call that ends sends two). Installed in the framework's table of message parsers, so a
    dropped message makes no event at all (the receive loop skips a message parsed to None);
    any other message, or a filter that raises, is decoded as before."""
    table = getattr(ofproto_v1_3_parser, "_MSG_PARSERS")
    kind = ofproto_v1_3.OFPT_FLOW_REMOVED
    decode = getattr(table[kind], "mam_decode", table[kind])     # installed once: wrap the original

    def parse(datapath: Any, version: int, msg_type: int, msg_len: int, xid: int, buf: bytes) -> Any:
        if len(buf) >= 16:
            try:
                if unwanted(datapath, int.from_bytes(buf[8:16], "big")):
                    return None
            except Exception:
                log.exception("flow-removed filter failed; decoding the message")
        return decode(datapath, version, msg_type, msg_len, xid, buf)

    parse.mam_decode = decode  # type: ignore[attr-defined]
    table[kind] = parse


def green() -> bool:
    """True when the hub runs eventlet green threads (ryu, or os-ken with OSKEN_HUB_TYPE=eventlet)."""
    return FRAMEWORK == "ryu" or getattr(hub, "HUB_TYPE", "") == "eventlet"


class Wakeup:
    """A sleep that another thread or greenlet can cut short: a timer loop sleeps until
    its next deadline and is woken when an earlier one appears. Eventlet's own event under
    ryu (whose hub does not patch ``threading``), ``threading.Event`` on native threads."""

    def __init__(self) -> None:
        self._green = green()
        if self._green:
            import eventlet.event
            self._event: Any = eventlet.event.Event()
        else:
            self._event = threading.Event()

    def sleep(self, seconds: float) -> bool:
        """Sleep up to ``seconds``; True when woken early."""
        if self._green:
            event = self._event
            woken = event.ready() or event.wait(timeout=max(0.0, seconds)) is not None
            if event.ready():
                import eventlet.event
                self._event = eventlet.event.Event()
            return woken
        woken = bool(self._event.wait(max(0.0, seconds)))
        self._event.clear()
        return woken

    def wake(self) -> None:
        if self._green:
            if not self._event.ready():
                self._event.send(True)
        else:
            self._event.set()


class WakeupEvent:
    """:class:`Wakeup` with ``threading.Event``'s words (set / clear / wait), for loops
    written against them. A set() before clear() is not lost: the next wait returns at once."""

    def __init__(self) -> None:
        self._wakeup = Wakeup()

    def set(self) -> None:
        self._wakeup.wake()

    def clear(self) -> None:
        pass

    def wait(self, timeout: float | None = None) -> bool:
        return self._wakeup.sleep(30.0 if timeout is None else timeout)


def rlock() -> Any:
    """A reentrant lock for state shared between hub threads: eventlet's green RLock under
    ryu (a ``threading.RLock`` is owned by the one OS thread every green thread runs on,
    so it lets them all in), ``threading.RLock`` on native threads."""
    if green():
        from eventlet.green import threading as green_threading
        return green_threading.RLock()
    return threading.RLock()


def server_tls_context(cert: str, key: str, ca: str | None = None) -> ssl.SSLContext:
    """TLS 1.2+ for a server; with ``ca``, clients must present a certificate it signed.
    A green context under eventlet, so handshakes never block the hub."""
    if green():
        import eventlet.green.ssl
        context: ssl.SSLContext = eventlet.green.ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    else:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    if ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(ca)
    return context


def serve_wsgi(app: Callable[..., Any], host: str, port: int, tls: ssl.SSLContext | None = None) -> Any:
    """Serve a plain WSGI callable on the framework's hub; returns the hub thread.

    Under ryu (eventlet) this is eventlet's WSGI server on a green thread; under os-ken's
    native hub it is wsgiref with a thread per request. With ``tls`` the listening socket
    is wrapped (ryu's own WSGIServer ignores its ssl arguments)."""
    app = gc_tuning.acyclic_wsgi(app)      # requests die by reference count (gc_tuning.py)
    if green():
        import eventlet
        import eventlet.wsgi
        listener = eventlet.listen((host, port))
        if tls is not None:
            listener = tls.wrap_socket(listener, server_side=True)

        def serve() -> None:
            eventlet.wsgi.server(listener, app, log=_QuietLog(), log_output=False)
        return hub.spawn(serve)
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

    class _Quiet(WSGIRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            log.debug("%s - %s", self.address_string(), format % args)

    class _Threading(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    server = make_server(host, port, app, server_class=_Threading, handler_class=_Quiet)
    if tls is not None:      # the handshake happens in the request's thread, not in accept()
        server.socket = tls.wrap_socket(server.socket, server_side=True, do_handshake_on_connect=False)
    thread = threading.Thread(target=server.serve_forever, name="mam-wsgi", daemon=True)
    thread.start()
    return thread


class _QuietLog:
    """eventlet.wsgi's access log, at debug level (one line per request costs at high rates)."""

    def write(self, text: str) -> None:
        log.debug("%s", text.rstrip())

    def info(self, text: str, *args: Any) -> None:
        log.debug(text, *args)

    error = warning = debug = info


def fix_ryu_tls_listener() -> None:
    """ryu 4.34's StreamServer pops the certificate arguments out of its ssl_args on the
    first TLS connection, so the second switch (or a reconnect) fails its handshake. Build
    the context once, as os-ken does. Idempotent; nothing to do under os-ken."""
    if FRAMEWORK != "ryu" or getattr(hub.StreamServer, "_mam_fixed", False):
        return
    original = hub.StreamServer.__init__

    def __init__(self: Any, listen_info: Any, handle: Any = None, backlog: Any = None, spawn: str = "default",
                 **ssl_args: Any) -> None:
        context = ssl_args.pop("ssl_ctx", None)
        original(self, listen_info, handle, backlog, spawn)
        if context is None:
            if ssl_args:
                raise ValueError("TLS without an SSLContext is not supported here")
            return
        context.load_cert_chain(ssl_args.pop("certfile"), ssl_args.pop("keyfile"))
        if "cert_reqs" in ssl_args:
            context.verify_mode = ssl_args.pop("cert_reqs")
        if "ca_certs" in ssl_args:
            context.load_verify_locations(ssl_args.pop("ca_certs"))

        def wrap_and_handle(sock: Any, addr: Any) -> None:
            try:
                wrapped = context.wrap_socket(sock, server_side=True)
            except (OSError, ssl.SSLError) as error:
                log.warning("OpenFlow TLS handshake from %s failed: %s", addr, error)
                sock.close()
                return
            handle(wrapped, addr)
        self.handle = wrap_and_handle

    hub.StreamServer.__init__ = __init__
    hub.StreamServer._mam_fixed = True
