"""The project's own processes as peers: the controller (``ryu-manager ryu_apps.mam_app``,
REST API only, no switch needed for admission) and the standalone SIP proxy
(``python -m ryu_apps.signalling.sip --config``). Both on free ports, stopped by PID."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from .procs import free_port, stop, tree_cpu_seconds, wait_sip, wait_tcp

REPO = Path(__file__).resolve().parents[2]


def two_sites(pool_kbps: int, *, api_port: int | None = None, token: str | None = None,
              sip_listen: str | None = None, next_hop: str | None = None) -> str:
    """site-a (10.1/16, site-a.example) -- s1 -- s2 -- site-b (10.2/16, site-b.example), one pool."""
    text = f"""topology:
  switches: [{{name: s1, dpid: 1}}, {{name: s2, dpid: 2}}]
  links: [{{a: s1, a_port: 1, b: s2, b_port: 1, capacity_kbps: {max(pool_kbps * 2, 100000)}}}]
communities:
  - {{name: site-a, edge: s1, access_ports: [2], prefixes: [10.1.0.0/16], domains: [site-a.example]}}
  - {{name: site-b, edge: s2, access_ports: [2], prefixes: [10.2.0.0/16], domains: [site-b.example]}}
aggregates:
  - {{id: a-b, between: [site-a, site-b], size_kbps: {pool_kbps}}}
codecs: {{allowed: [pcmu, pcma, g729]}}
"""
    if api_port is not None:
        text += f"api: {{host: 127.0.0.1, port: {api_port}" + (f", token: {token}" if token else "") + "}\n"
    if sip_listen is not None:
        text += (f"sip:\n  listen: {sip_listen}\n  transports: [udp]\n"
                 f"  routes: {{site-b.example: \"{next_hop}\"}}\n")
    return text


class Controller:
    """The controller with a two-site config; REST on ``self.api_port``.

    ``openflow=True``: ``ryu-manager ryu_apps.mam_app`` as users run it (with no switch
    connected it releases a call when its media is attached); ``False``: the same REST API
    and admission without OpenFlow (:mod:`.rest_only`)."""

    def __init__(self, workdir: Path, pool_kbps: int, *, token: str | None = None, openflow: bool = False) -> None:
        self.api_port, self.token = free_port(), token
        self.config = workdir / f"controller-{self.api_port}.yaml"
        self.config.write_text(two_sites(pool_kbps, api_port=self.api_port, token=token))
        self.log = workdir / f"controller-{self.api_port}.log"
        manager = Path(sys.executable).parent / "ryu-manager"
        env = dict(os.environ, MAM_CONFIG=str(self.config), PYTHONUNBUFFERED="1",
                   PYTHONPATH=str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self._log = self.log.open("wb")
        argv = ([str(manager), "--ofp-tcp-listen-port", str(free_port()), "ryu_apps.mam_app"] if openflow else
                [sys.executable, "-m", "benchmarks.peers.rest_only", str(self.config)])
        self.process = subprocess.Popen(argv, cwd=REPO, env=env, stdout=self._log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        try:
            wait_tcp(self.api_port, self.process)
        except Exception:
            self.stop()
            raise RuntimeError(f"the controller did not start: {self.log.read_text(errors='replace')[-2000:]}") \
                from None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.api_port}/mam/v1"

    def url_with(self, token: str | None) -> str:
        """The API URL with the token as the password: what Kamailio's http_client sends as Basic auth."""
        return self.url.replace("http://", f"http://kamailio:{token}@") if token else self.url

    def rest(self, method: str, path: str, body: Any = None, timeout: float = 10) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read()
        return status, json.loads(raw) if raw else None

    def pool(self) -> tuple[int, int]:
        """(used kbit/s, calls) of the one pool."""
        status, body = self.rest("GET", "/aggregates/a-b")
        assert status == 200, body
        return body["used_kbps"], body["calls"]

    def calls(self) -> list[dict[str, Any]]:
        return self.rest("GET", "/calls")[1]["calls"]

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.process.pid)

    def stop(self) -> None:
        stop(self.process)
        self._log.close()

    def __enter__(self) -> Controller:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()


class StandaloneProxy:
    """``python -m ryu_apps.signalling.sip --config`` with admission in process (one big pool)."""

    def __init__(self, workdir: Path, port: int, next_hop: str, pool_kbps: int = 100_000_000, workers: int = 0,
                 repo: Path = REPO) -> None:
        """``workers``: N worker processes plus the admission owner (``--workers N``); 0: one process.
        ``repo``: the tree whose code runs (another checkout, to compare before and after)."""
        self.port = port
        self.config = workdir / f"proxy-{port}.yaml"
        self.config.write_text(two_sites(pool_kbps, sip_listen=f"127.0.0.1:{port}", next_hop=next_hop))
        self.stats_file = workdir / f"proxy-{port}.json"
        env = dict(os.environ, PYTHONPATH=str(repo) + os.pathsep + os.environ.get("PYTHONPATH", ""))
        command = [sys.executable, "-m", "ryu_apps.signalling.sip", "--config", str(self.config),
                   "--stats-file", str(self.stats_file)] + (["--workers", str(workers)] if workers else [])
        self.process = subprocess.Popen(command, cwd=workdir, env=env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            wait_sip(port, self.process)
        except Exception:
            self.stop()
            raise

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.process.pid)

    def stop(self) -> dict[str, Any]:
        stop(self.process)
        try:
            return json.loads(self.stats_file.read_text())
        except (OSError, ValueError):
            return {}

    def __enter__(self) -> StandaloneProxy:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()
