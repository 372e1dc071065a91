"""mamctl against the real REST API served on loopback (wsgiref in a thread), and check-config on files."""

from __future__ import annotations

import configparser
import importlib
import io
import json
import os
import socket
import subprocess
import sys
import threading
from pathlib import Path
from socketserver import ThreadingMixIn
from typing import Any, Callable, Iterator
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import pytest

from ryu_apps.cli import main
from ryu_apps.config import ApiConfig, build_manager, parse_config
from ryu_apps.rest.api import make_wsgi_app
from ryu_apps.core.survey import PortInfo
from ryu_apps.service import MamService

from test_rest_api import PCMU_KBPS, config

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "docs" / "examples" / "enterprise.yaml"
TOKEN = "tok"


class _Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


def serve(app: Callable[..., Any]) -> Iterator[str]:
    server = make_server("127.0.0.1", 0, app, server_class=_Server, handler_class=_Quiet)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def controller() -> Iterator[tuple[str, MamService]]:
    service = MamService(build_manager(parse_config(config(1000))), clock=lambda: 1.0)
    for url in serve(make_wsgi_app(service, ApiConfig(token=TOKEN))):
        yield url, service


def mamctl(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out, err)
    return code, out.getvalue(), err.getvalue()


def table(text: str) -> list[dict[str, str]]:
    """Parse an aligned table: every cell starts in its header's column (asserts the alignment)."""
    lines = text.splitlines()
    header = lines[0]
    names = [name for name in header.split("  ") if name.strip()]
    starts = [header.index(name.strip()) for name in names]
    rows = []
    for line in lines[1:]:
        if not line.strip():
            break
        for start in starts[1:]:
            assert line[start - 2:start] == "  " or len(line) <= start, f"misaligned: {line!r} under {header!r}"
        cells = [line[a:b].strip() for a, b in zip(starts, starts[1:] + [None])]  # type: ignore[list-item]
        rows.append(dict(zip((n.strip() for n in names), cells)))
    return rows


# --- tables and JSON ---------------------------------------------------------------------------

def test_aggregates_table_follows_the_service(controller: tuple[str, MamService]) -> None:
    url, service = controller
    code, out, err = mamctl("--url", url, "aggregates")
    assert (code, err) == (0, "")
    assert out.splitlines()[0].split() == ["ID", "COMMUNITIES", "PATH", "SIZE", "kbit/s", "TARGET", "USED", "FREE",
                                           "CALLS", "DSCP", "AUTOSIZE"]
    assert table(out) == [{"ID": "a-b", "COMMUNITIES": "site-a<->site-b", "PATH": "s1-s2-s3", "SIZE kbit/s": "1000",
                           "TARGET": "1000", "USED": "0", "FREE": "1000", "CALLS": "0", "DSCP": "46",
                           "AUTOSIZE": "-"}]
    for n in range(3):
        assert mamctl("--url", url, "--token", TOKEN, "call-admit", f"c{n}", "site-a", "site-b")[0] == 0
    row = table(mamctl("--url", url, "aggregates")[1])[0]
    used = service.read(lambda m: m.used_kbps("a-b"))
    assert used == 3 * PCMU_KBPS
    assert (row["USED"], row["FREE"], row["CALLS"]) == (str(used), str(1000 - used), "3")
    code, out, _ = mamctl("--url", url, "aggregates", "a-b")
    assert code == 0 and table(out)[0]["ID"] == "a-b"
    links = table(out.split("\n\n")[1])
    assert [(l["LINK"], l["RESERVED (all pools)"]) for l in links] == [("s1->s2", "1000"), ("s2->s3", "1000")]


PCMU_IPV6_KBPS = 99


def test_calls_admit_show_release_and_json(controller: tuple[str, MamService]) -> None:
    url, service = controller
    assert mamctl("--url", url, "calls") == (0, "CALL  AGGREGATE  COMMUNITIES  LEVEL  PROTOCOL  CODEC  KBIT/S  "
                                                "STATE  CALLER MEDIA  CALLEE MEDIA\n(none)\n", "")
    code, out, _ = mamctl("--url", url, "--token", TOKEN, "call-admit", "sip/abc@pbx", "site-a", "site-b",
                          "--caller-media", "[2001:db8::1]:4000", "--callee-media", "[2001:db8::2]:5000")
    assert code == 0
    row = table(out)[0]
    # IPv6 media: the call was re-sized for 40-byte headers when its addresses came (91 -> 99 kbit/s)
    assert row == {"CALL": "sip/abc@pbx", "AGGREGATE": "a-b", "COMMUNITIES": "site-a->site-b", "LEVEL": "voice",
                   "PROTOCOL": "rest", "CODEC": "pcmu", "KBIT/S": str(PCMU_IPV6_KBPS), "STATE": "installing",
                   "CALLER MEDIA": "2001:db8::1:4000", "CALLEE MEDIA": "2001:db8::2:5000"}
    code, out, _ = mamctl("--url", url, "--json", "calls", "--aggregate", "a-b")
    listed = json.loads(out)["calls"]
    assert code == 0 and [c["call_id"] for c in listed] == ["sip/abc@pbx"]
    assert listed[0]["callee_media"] == {"ip": "2001:db8::2", "port": 5000}
    code, out, _ = mamctl("--url", url, "--json", "call", "sip/abc@pbx")        # '/' in the id survives
    assert code == 0 and json.loads(out)["kbps"] == PCMU_IPV6_KBPS
    assert table(mamctl("--url", url, "call", "sip/abc@pbx")[1])[0]["CALL"] == "sip/abc@pbx"
    code, out, _ = mamctl("--url", url, "--token", TOKEN, "--json", "call-admit", "g", "site-a", "site-b",
                          "--codec", "g729", "--level", "emergency", "--ptime", "40")
    admitted = json.loads(out)
    assert code == 0 and admitted["preempted"] == [] and admitted["call"]["media"]["ptime_ms"] == 40
    assert mamctl("--url", url, "--token", TOKEN, "call-release", "sip/abc@pbx", "--cause", "bye") == \
        (0, "call sip/abc@pbx released\n", "")
    code, out, _ = mamctl("--url", url, "--token", TOKEN, "--json", "call-release", "g")
    assert code == 0 and json.loads(out) == {"released": {"call": "g"}}
    assert service.read(lambda m: (m.used_kbps("a-b"), m.calls())) == (0, [])
    # media addresses of two IP versions: no flow could carry it, a clear 422
    code, _, err = mamctl("--url", url, "--token", TOKEN, "call-admit", "mixed", "site-a", "site-b",
                          "--caller-media", "10.1.0.1:4000", "--callee-media", "[2001:db8::2]:5000")
    assert code == 1 and "422" in err and "different IP versions" in err
    assert service.read(lambda m: (m.used_kbps("a-b"), m.calls())) == (0, [])     # one step: nothing admitted


def test_communities_topology_and_stats(controller: tuple[str, MamService]) -> None:
    url, _ = controller
    rows = table(mamctl("--url", url, "communities")[1])
    assert rows == [
        {"COMMUNITY": "site-a", "EDGE": "s1", "ACCESS PORTS": "1", "PREFIXES": "10.1.0.0/16", "SIP DOMAINS": "a.example"},
        {"COMMUNITY": "site-b", "EDGE": "s3", "ACCESS PORTS": "1", "PREFIXES": "10.2.0.0/16", "SIP DOMAINS": "b.example"}]
    code, out, _ = mamctl("--url", url, "topology")
    switches, links, notes = out.split("\n\n")
    assert notes.splitlines() == ["s1-s2: unknown: switch s1 has not connected",
                                  "s2-s3: unknown: switch s2 has not connected"]
    assert [(r["DPID"], r["CONNECTED"]) for r in table(switches)] == [
        ("0000000000000001", "no"), ("0000000000000002", "no"), ("0000000000000003", "no")]
    assert {(r["LINK"], r["STATE"], r["RESERVED"], r["FREE"]) for r in table(links)} == {
        ("s1->s2", "unknown", "1000", "4000"), ("s2->s1", "unknown", "1000", "4000"),
        ("s2->s3", "unknown", "1000", "4000"), ("s3->s2", "unknown", "1000", "4000")}
    # the switches report: s2's port toward s3 is down, and s3's is slower than the configured capacity
    _, service = controller
    for switch in ("s1", "s2", "s3"):
        service.observe(lambda survey: survey.ports_described(switch, {
            1: PortInfo("acc"), 10: PortInfo(f"{switch}-eth10", 1_000 if switch == "s3" else 0),
            11: PortInfo(f"{switch}-eth11", live=switch != "s2")}))
    code, out, _ = mamctl("--url", url, "topology")
    switches, links, notes = out.split("\n\n")
    assert {r["CONNECTED"] for r in table(switches)} == {"yes"}
    assert {(r["LINK"], r["STATE"], r["RESERVABLE"], r["FREE"]) for r in table(links)} == {
        ("s1->s2", "up", "5000", "4000"), ("s2->s1", "up", "5000", "4000"),
        ("s2->s3", "down", "500", "0"), ("s3->s2", "down", "500", "0")}
    assert notes.splitlines() == [
        "s2-s3: down: port s2:11 (s2-eth11) is down",
        "s2-s3: capacity_kbps 10000 exceeds the speed of port s3:10 (s3-eth10), 1000 kbit/s; reserving at most "
        "500 kbit/s (the configured share of the port speed)",
        "s2-s3: s2->s3 reserves 1000 kbit/s, more than the 500 it may now: shrink or move the aggregates over it",
        "s2-s3: s3->s2 reserves 1000 kbit/s, more than the 500 it may now: shrink or move the aggregates over it"]
    for switch in ("s1", "s2", "s3"):
        service.observe(lambda survey: survey.switch_gone(switch))
    mamctl("--url", url, "--token", TOKEN, "call-admit", "c1", "site-a", "site-b")
    mamctl("--url", url, "--token", TOKEN, "call-admit", "c2", "site-a", "site-b", "--codec", "g722")
    stats = {r["STATISTIC"]: r["VALUE"] for r in table(mamctl("--url", url, "stats")[1])}
    assert stats["admitted"] == "1" and stats["rejected codec-not-allowed"] == "1" and stats["calls_active"] == "1"
    assert stats["used_kbps"] == str(PCMU_KBPS) and stats["reserved_kbps"] == "1000"
    code, out, _ = mamctl("--url", url, "--json", "stats")
    assert code == 0 and json.loads(out)["rejected"]["codec-not-allowed"] == 1
    for command in ("communities", "topology", "aggregates"):
        code, out, _ = mamctl("--url", url, "--json", command)
        assert code == 0 and isinstance(json.loads(out), dict)


def test_aggregate_lifecycle(controller: tuple[str, MamService]) -> None:
    url, service = controller
    code, out, _ = mamctl("--url", url, "--token", TOKEN, "aggregate-create", "b-a", "site-b", "site-a", "500",
                          "--dscp", "44", "--priority", "3", "--preemption", "--levels", "voice,emergency")
    assert code == 0 and table(out)[0]["PATH"] == "s3-s2-s1"
    created = service.read(lambda m: m.aggregate("b-a"))
    assert (created.size_kbps, created.dscp, created.priority, created.preemption) == (500, 44, 3, True)
    assert sorted(level.label for level in created.levels) == ["emergency", "voice"]
    code, out, _ = mamctl("--url", url, "--token", TOKEN, "aggregate-create", "pinned", "site-a", "site-b", "100",
                          "--path", "s1,s2,s3")
    assert code == 0 and service.read(lambda m: m.aggregate("pinned").path) == ("s1", "s2", "s3")
    assert mamctl("--url", url, "--token", TOKEN, "aggregate-resize", "b-a", "800")[0] == 0
    assert service.read(lambda m: m.aggregate("b-a").size_kbps) == 800
    assert mamctl("--url", url, "--token", TOKEN, "aggregate-delete", "pinned") == (0, "aggregate pinned released\n", "")
    # a busy aggregate needs --force, which releases its calls (b-a has the higher priority: the call rides it)
    code, out, _ = mamctl("--url", url, "--token", TOKEN, "call-admit", "c1", "site-a", "site-b")
    assert code == 0 and table(out)[0]["AGGREGATE"] == "b-a"
    code, _, err = mamctl("--url", url, "--token", TOKEN, "aggregate-delete", "b-a")
    assert code == 1 and err.startswith("mamctl: error: 409 conflict: ")
    assert service.read(lambda m: m.used_kbps("b-a")) == PCMU_KBPS
    assert mamctl("--url", url, "--token", TOKEN, "aggregate-delete", "b-a", "--force")[0] == 0
    assert service.read(lambda m: ([a.id for a in m.aggregates()], m.calls())) == (["a-b"], [])


# --- errors and exit codes ---------------------------------------------------------------------

def test_refusals_print_status_reason_message_and_field_and_exit_1(controller: tuple[str, MamService]) -> None:
    url, service = controller
    code, out, err = mamctl("--url", url, "--token", TOKEN, "aggregate-create", "x", "site-a", "site-b", "10",
                            "--dscp", "99")
    assert (code, out) == (1, "")
    assert err == "mamctl: error: 400 bad-request: must be between 0 and 63 (field: dscp)\n"
    code, _, err = mamctl("--url", url, "--token", TOKEN, "aggregate-resize", "a-b", "999999")
    assert code == 1 and err.startswith("mamctl: error: 409 conflict: ") and err.endswith("(field: size_kbps)\n")
    code, _, err = mamctl("--url", url, "aggregate-delete", "a-b")                   # no token
    assert code == 1 and err.startswith("mamctl: error: 401 unauthorized: ")
    code, _, err = mamctl("--url", url, "--token", "bad", "aggregate-delete", "a-b")
    assert err == "mamctl: error: 403 forbidden: bearer token not accepted\n" and code == 1
    code, _, err = mamctl("--url", url, "call", "nobody")
    assert code == 1 and err == "mamctl: error: 404 not-found: no call 'nobody'\n"
    code, _, err = mamctl("--url", url, "aggregates", "nope")
    assert code == 1 and "404" in err and "nope" in err
    code, _, err = mamctl("--url", url, "--token", TOKEN, "call-admit", "x", "site-a", "site-b", "--codec", "g722")
    assert code == 1 and err.startswith("mamctl: error: 422 codec-not-allowed: ")
    code, _, err = mamctl("--url", url, "--token", TOKEN, "call-admit", "x", "site-a", "site-b", "--ptime", "0")
    assert code == 1 and err.endswith("(field: media.ptime_ms)\n")
    code, _, err = mamctl("--url", url, "--token", TOKEN, "call-admit", "x", "site-a", "site-b",
                          "--caller-media", "10.1.0.1:4000")
    assert code == 1 and "both --caller-media and --callee-media" in err
    code, _, err = mamctl("--url", url, "--token", TOKEN, "call-admit", "x", "site-a", "site-b",
                          "--caller-media", "10.1.0.1", "--callee-media", "10.2.0.1:1")
    assert code == 1 and "--caller-media: expected IP:PORT" in err
    assert service.read(lambda m: (m.used_kbps("a-b"), m.aggregate("a-b").size_kbps)) == (0, 1000)


def test_admitting_until_the_pool_is_full(controller: tuple[str, MamService]) -> None:
    url, service = controller
    codes = [mamctl("--url", url, "--token", TOKEN, "call-admit", f"c{n}", "site-a", "site-b")[0] for n in range(11)]
    assert codes == [0] * (1000 // PCMU_KBPS) + [1]
    code, _, err = mamctl("--url", url, "--token", TOKEN, "call-admit", "one-more", "site-a", "site-b")
    assert code == 1 and err.startswith("mamctl: error: 409 pool-full: aggregate a-b: 910 of 1000 kbit/s in use")
    assert service.read(lambda m: m.used_kbps("a-b")) == 910


def test_environment_supplies_url_and_token(controller: tuple[str, MamService],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    url, service = controller
    monkeypatch.setenv("MAM_URL", url)
    monkeypatch.setenv("MAM_TOKEN", TOKEN)
    assert mamctl("call-admit", "env", "site-a", "site-b")[0] == 0
    assert service.read(lambda m: m.used_kbps("a-b")) == PCMU_KBPS
    assert mamctl("--token", "wrong", "call-release", "env")[0] == 1       # the option wins over the variable


def test_unreachable_controller_is_exit_2() -> None:
    with socket.socket() as probe:           # a port that was just free: nothing listens there
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code, out, err = mamctl("--url", f"http://127.0.0.1:{port}", "--timeout", "2", "stats")
    assert (code, out) == (2, "")
    assert err.startswith(f"mamctl: error: cannot reach the controller at http://127.0.0.1:{port}: ")
    assert "Connection refused" in err


def test_a_controller_that_does_not_answer_times_out_with_exit_2() -> None:
    with socket.socket() as silent:          # listens (the kernel accepts) but never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        code, _, err = mamctl("--url", url, "--timeout", "0.3", "aggregates")
    assert code == 2 and "cannot reach the controller at " + url in err and "timed out" in err


def test_something_else_at_the_url_is_a_clear_error() -> None:
    def html(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        start_response("200 OK", [("Content-Type", "text/html")])
        return [b"<html>not the controller</html>"]
    for url in serve(html):
        code, _, err = mamctl("--url", url, "stats")
        assert code == 1 and "did not answer JSON" in err


@pytest.mark.parametrize("url", ["127.0.0.1:8080", "ftp://127.0.0.1", "http://"])
def test_a_malformed_url_is_exit_2(url: str) -> None:
    code, _, err = mamctl("--url", url, "stats")
    assert code == 2 and "--url must look like http://HOST:PORT" in err


def test_usage_errors_and_help_return_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["no-such-command"]) == 2
    assert "invalid choice" in capsys.readouterr().err
    assert main(["aggregate-create", "x", "site-a"]) == 2
    assert main(["aggregate-resize", "x", "big"]) == 2
    assert main(["--help"]) == 0
    help_text = capsys.readouterr().out
    for command in ("check-config", "communities", "topology", "aggregates", "aggregate-create", "aggregate-resize",
                    "aggregate-delete", "calls", "call", "call-admit", "call-release", "stats"):
        assert command in help_text


def test_runs_as_a_module_and_is_the_declared_console_script() -> None:
    result = subprocess.run([sys.executable, "-m", "ryu_apps.cli", "check-config", str(EXAMPLE)], cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith(f"{EXAMPLE}: OK"), result.stderr
    setup = configparser.ConfigParser()
    setup.read(ROOT / "setup.cfg")
    scripts = dict(line.split(" = ") for line in setup["options.entry_points"]["console_scripts"].strip().splitlines())
    module, _, function = scripts["mamctl"].partition(":")
    assert getattr(importlib.import_module(module), function) is main


# --- check-config ------------------------------------------------------------------------------

def test_check_config_summarises_a_good_file() -> None:
    code, out, err = mamctl("check-config", str(EXAMPLE))
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0] == f"{EXAMPLE}: OK - 3 switches, 2 links, 2 communities, 1 aggregates"
    assert "  switch s1: dpid 0000000000000001" in lines
    assert "  link s1:10 <-> s2:10: 10000 kbit/s, 5000 reservable" in lines
    assert "  community site-b: edge s3, prefixes 10.0.2.0/24, domains site-b.example" in lines
    assert lines[-1] == "  aggregate site-a--site-b: site-a <-> site-b, 2000 kbit/s, DSCP 46, path s1-s2-s3"
    code, out, _ = mamctl("--json", "check-config", str(EXAMPLE))
    summary = json.loads(out)
    assert code == 0 and summary["ok"] is True and [s["name"] for s in summary["switches"]] == ["s1", "s2", "s3"]
    assert summary["aggregates"] == [{"id": "site-a--site-b", "communities": ["site-a", "site-b"], "size_kbps": 2000,
                                      "dscp": 46, "path": ["s1", "s2", "s3"]}]


BAD = {
    "unknown-key.yaml": (lambda text: text.replace("    edge: s1\n", "    edge: s1\n    colour: red\n"),
                         "communities[0].colour: unknown key (expected one of: "),
    "typo.yaml": (lambda text: text.replace("access_ports:", "acess_ports:", 1),
                  "communities[0].acess_ports: unknown key; did you mean 'access_ports'?"),
    "prefix.yaml": (lambda text: text.replace("10.0.2.0/24", "10.0.2.0/33"),
                    "communities[1].prefixes[0]: not an IP prefix: '10.0.2.0/33'"),
    "dscp.yaml": (lambda text: text.replace("dscp: 46", "dscp: 64"),
                  "aggregates[0].dscp: must be between 0 and 63, got 64"),
    "switch.yaml": (lambda text: text.replace("edge: s3", "edge: s9"), "communities[1].edge: unknown switch 's9'"),
    "too-big.yaml": (lambda text: text.replace("size_kbps: 2000", "size_kbps: 9000"), "aggregates[0].size_kbps: "),
    "not-yaml.yaml": (lambda text: "topology: [unclosed", "is not valid YAML at line 1"),
    "empty.yaml": (lambda text: "", "expected a mapping, got nothing"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_check_config_names_the_bad_key(tmp_path: Path, name: str) -> None:
    edit, message = BAD[name]
    path = tmp_path / name
    path.write_text(edit(EXAMPLE.read_text()))
    assert path.read_text() != EXAMPLE.read_text()
    code, out, err = mamctl("check-config", str(path))
    assert (code, out) == (1, "")
    assert err.startswith(f"{path}: ") and message in err and err.count("\n") == 1, err


def test_check_config_on_a_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    code, _, err = mamctl("check-config", str(missing))
    assert code == 1 and err == f"{missing}: cannot read {missing}: No such file or directory\n"


def test_check_config_starts_nothing_and_imports_no_framework() -> None:
    probe = ("import sys, threading; from ryu_apps.cli import main; code = main(['check-config', sys.argv[1]]); "
             "loaded = sorted({m.split('.')[0] for m in sys.modules} & {'ryu', 'os_ken', 'eventlet', 'webob'}); "
             "print(code, loaded, threading.active_count())")
    result = subprocess.run([sys.executable, "-c", probe, str(EXAMPLE)], cwd=ROOT, capture_output=True, text=True,
                            timeout=60, env={**os.environ, "MAM_CONFIG": ""})
    assert result.returncode == 0, result.stderr
    assert result.stdout.splitlines()[-1] == "0 [] 1"


def test_autosize_and_reoptimize_from_the_command_line(controller: tuple[str, MamService]) -> None:
    url, service = controller
    code, out, err = mamctl("--url", url, "--token", TOKEN, "aggregate-autosize", "a-b", "500,2000,250,0.8,0.4,60")
    assert (code, err) == (0, "") and table(out)[0]["AUTOSIZE"] == "500..2000/250"
    policy = service.read(lambda m: m.aggregate("a-b").autosize)
    assert (policy.min_kbps, policy.max_kbps, policy.step_kbps, policy.grow_at, policy.hold_s) == (500, 2000, 250, 0.8, 60)
    code, out, err = mamctl("--url", url, "--token", TOKEN, "aggregate-autosize", "a-b", "2000,500,250")
    assert code == 1 and "autosize.min_kbps" in err and "above max_kbps" in err
    code, out, err = mamctl("--url", url, "--token", TOKEN, "aggregate-autosize", "a-b", "500,x,250")
    assert code == 2 and "max_kbps must be a number" in err
    assert mamctl("--url", url, "--token", TOKEN, "aggregate-autosize", "a-b", "--off")[0] == 0
    assert service.read(lambda m: m.aggregate("a-b").autosize) is None
    code, out, err = mamctl("--url", url, "--token", TOKEN, "aggregate-reoptimize", "a-b")
    assert (code, err) == (0, "") and "already on its best path" in out
