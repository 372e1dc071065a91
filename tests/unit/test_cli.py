"""mamctl against the real REST API served on loopback, and check-config on files."""

from __future__ import annotations

import io
import json
import threading
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any, Iterator
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

from ryu_apps.cli import main
from ryu_apps.config import ApiConfig, build_manager, parse_config
from ryu_apps.rest.api import make_wsgi_app
from ryu_apps.service import MamService

from test_rest_api import config

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "enterprise.yaml"


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def controller() -> Iterator[tuple[str, MamService]]:
    service = MamService(build_manager(parse_config(config(1000))), clock=lambda: 1.0)
    server = make_server("127.0.0.1", 0, make_wsgi_app(service, ApiConfig(token="tok")), server_class=_Server,
                         handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", service
    finally:
        server.shutdown()
        server.server_close()


def mamctl(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out, err)
    return code, out.getvalue(), err.getvalue()


def test_tables_for_people_and_json_for_scripts(controller: tuple[str, MamService]) -> None:
    url, service = controller
    code, out, _ = mamctl("--url", url, "aggregates")
    assert code == 0
    header, row = out.splitlines()[:2]
    assert header.split()[:3] == ["ID", "COMMUNITIES", "PATH"]
    assert row.split()[:4] == ["a-b", "site-a<->site-b", "s1-s2-s3", "1000"]
    code, out, _ = mamctl("--url", url, "--token", "tok", "call-admit", "c1", "site-a", "site-b",
                          "--caller-media", "10.1.0.1:4000", "--callee-media", "10.2.0.1:5000")
    assert code == 0 and "c1" in out and "10.2.0.1:5000" in out
    code, out, _ = mamctl("--url", url, "--json", "calls", "--aggregate", "a-b")
    assert code == 0 and [c["call_id"] for c in json.loads(out)["calls"]] == ["c1"]
    code, out, _ = mamctl("--url", url, "aggregates", "a-b")
    assert "s1->s2" in out and " 91 " in out
    code, out, _ = mamctl("--url", url, "stats")
    assert code == 0 and any(line.split() == ["admitted", "1"] for line in out.splitlines())
    for command in (("communities",), ("topology",), ("call", "c1")):
        assert mamctl("--url", url, *command)[0] == 0
    assert mamctl("--url", url, "--token", "tok", "call-release", "c1") == (0, "call c1 released\n", "")
    assert service.read(lambda m: m.used_kbps("a-b")) == 0


def test_aggregate_lifecycle_and_clear_errors(controller: tuple[str, MamService]) -> None:
    url, service = controller
    code, out, _ = mamctl("--url", url, "--token", "tok", "aggregate-create", "b-a", "site-b", "site-a", "500",
                          "--dscp", "44", "--levels", "voice,emergency")
    assert code == 0 and "s3-s2-s1" in out
    assert mamctl("--url", url, "--token", "tok", "aggregate-resize", "b-a", "800")[0] == 0
    assert service.read(lambda m: m.aggregate("b-a").size_kbps) == 800
    code, _, err = mamctl("--url", url, "--token", "tok", "aggregate-resize", "b-a", "999999")
    assert code == 1 and "409" in err and "size_kbps" in err
    code, _, err = mamctl("--url", url, "aggregate-delete", "b-a")          # no token
    assert code == 1 and "401" in err
    code, _, err = mamctl("--url", url, "--token", "bad", "aggregate-delete", "b-a")
    assert code == 1 and "403" in err
    assert mamctl("--url", url, "--token", "tok", "aggregate-delete", "b-a")[0] == 0
    code, _, err = mamctl("--url", url, "call", "nobody")
    assert code == 1 and "404" in err and "nobody" in err
    code, _, err = mamctl("--url", url, "--token", "tok", "call-admit", "x", "site-a", "site-b", "--codec", "g722")
    assert code == 1 and "codec-not-allowed" in err


def test_unreachable_controller_is_exit_2() -> None:
    code, _, err = mamctl("--url", "http://127.0.0.1:9", "--timeout", "2", "stats")
    assert code == 2 and "cannot reach the controller at http://127.0.0.1:9" in err


def test_check_config_good_and_bad(tmp_path: Path) -> None:
    code, out, _ = mamctl("check-config", str(EXAMPLE))
    assert code == 0 and "OK" in out and "path s1-s2-s3" in out
    text = EXAMPLE.read_text()
    cases = {
        "typo.yaml": (text.replace("access_ports:", "acess_ports:", 1),
                      "communities[0].acess_ports: unknown key; did you mean 'access_ports'"),
        "prefix.yaml": (text.replace("10.0.2.0/24", "10.0.2.0/33"), "communities[1].prefixes[0]"),
        "too-big.yaml": (text.replace("size_kbps: 2000", "size_kbps: 9000"), "aggregates[0].size_kbps"),
        "not-yaml.yaml": ("topology: [unclosed", "not-yaml.yaml"),
    }
    for name, (content, needle) in cases.items():
        path = tmp_path / name
        path.write_text(content)
        code, _, err = mamctl("check-config", str(path))
        assert code == 1 and needle in err, (name, err)
    code, _, err = mamctl("check-config", str(tmp_path / "missing.yaml"))
    assert code == 1 and "missing.yaml" in err
