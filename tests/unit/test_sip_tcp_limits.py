"""Issue 11 item 5: TCP connection limits and timeouts, in every shell.

Connections beyond ``max_connections_per_source`` (or ``max_connections``) are closed at
once; a connection idle for ``idle_timeout_s`` is closed; a message whose bytes trickle
in (slowloris) is cut off ``message_timeout_s`` after its first byte. All counted, and
the proxy goes on answering.
"""

from __future__ import annotations

import socket
import time
from typing import Iterator

import pytest

from fakes.sip_peer import options, probe_tcp, probe_udp
from fakes.sip_shells import KINDS, Shell, running_shell
from ryu_apps.signalling.sip.tcp_limits import ConnectionTable, TcpLimits

LIMITS = {"idle_timeout_s": 1.0, "message_timeout_s": 1.0, "max_connections": 4, "max_connections_per_source": 2}


@pytest.fixture(params=KINDS)
def shell(request: pytest.FixtureRequest) -> Iterator[Shell]:
    with running_shell(request.param, tcp=LIMITS) as running:
        yield running


def _closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the peer closed the connection (None if it did not in time)."""
    sock.settimeout(seconds)
    started = time.monotonic()
    try:
        while True:
            data = sock.recv(65535)
            if not data:
                return time.monotonic() - started
    except ConnectionResetError:
        return time.monotonic() - started
    except socket.timeout:
        return None


@pytest.mark.osken
def test_per_source_cap_idle_and_slow_messages(shell: Shell) -> None:
    connect = lambda: socket.create_connection(("127.0.0.1", shell.port), timeout=2)  # noqa: E731
    first, second = connect(), connect()
    time.sleep(0.2)
    third = connect()
    assert _closed_within(third, 1.0) is not None                 # over the per-source cap: closed at once
    third.close()
    slow = second
    message = options(shell.port, slow.getsockname()[1], "TCP")
    started = time.monotonic()
    for i in range(12):                                           # 12 bytes, one every 0.2 s: never complete
        try:
            slow.sendall(message[i:i + 1])
        except OSError:
            break
        time.sleep(0.2)
    assert _closed_within(slow, 2.0) is not None
    assert 0.9 < time.monotonic() - started < 4.0                 # cut off after message_timeout_s
    assert _closed_within(first, 3.0) is not None                 # idle for idle_timeout_s: closed
    first.close()
    slow.close()
    assert probe_tcp(shell.port) and probe_udp(shell.port)
    tcp = shell.stats()["tcp"]
    assert tcp["refused_per_source"] >= 1 and tcp["slow_closed"] == 1 and tcp["idle_closed"] >= 1, tcp


def test_the_connection_table_alone() -> None:
    table = ConnectionTable(TcpLimits(idle_timeout_s=10, message_timeout_s=2, max_connections=3,
                                      max_connections_per_source=2))
    assert table.admit("a1", "10.0.0.1", 0.0) is None and table.admit("a2", "10.0.0.1", 0.0) is None
    assert table.admit("a3", "10.0.0.1", 0.0) == "too many TCP connections from 10.0.0.1"
    assert table.admit("b1", "10.0.0.2", 0.0) is None
    assert table.admit("c1", "10.0.0.3", 0.0) == "too many TCP connections"
    table.opened("out", "10.9.9.9", 0.0)                         # ours: counted in the total, never refused
    assert len(table) == 4 and table.from_source("10.0.0.1") == 2
    table.closed("a2")
    assert table.admit("a4", "10.0.0.1", 1.0) == "too many TCP connections"
    table.closed("out")
    assert table.admit("a4", "10.0.0.1", 1.0) is None
    table.activity("a1", 5.0, partial=True)                      # a message begins at 5 s ...
    table.activity("a1", 6.5, partial=True)                      # ... bytes trickle on
    assert table.expired(6.9) == []
    assert table.expired(7.1) == [("a1", "message not complete in time")]
    table.activity("b1", 8.0, partial=False)
    assert table.expired(11.5) == [("a4", "idle")]               # idle since 1 s
    assert table.expired(18.5) == [("b1", "idle")]
    counters = table.counters
    assert (counters.refused_per_source, counters.refused_total, counters.slow_closed, counters.idle_closed) == \
        (1, 2, 1, 2)
    assert len(table) == 0
