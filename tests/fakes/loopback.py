"""A threaded WSGI server on loopback for tests that need real sockets (event streams, a browser)."""

from __future__ import annotations

import socket
import threading
from socketserver import ThreadingMixIn
from typing import Any, Iterator
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True
    request_queue_size = 128          # dozens of clients connect at once


class _SmallBuffers(WSGIRequestHandler):
    """Connections with a fixed 16 KiB send buffer (no autotuning to 16 MiB): a client that
    stops reading fills it after a few dozen events, as it would on a slow link."""

    def setup(self) -> None:
        self.request.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
        super().setup()

    def log_message(self, *args: Any) -> None:
        pass


def serve(app: Any) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, server_class=_Server, handler_class=_SmallBuffers)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
