"""Issue 12d: every ProxyConfig field is settable from the YAML ``sip:`` section, strictly
validated (unknown keys name their path); one token variable, MAM_TOKEN."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from fakes.sip_peer import site
from ryu_apps.config import ConfigError, parse_config
from ryu_apps.signalling.sip.command import TOKEN_VARIABLE, build_parser
from ryu_apps.signalling.sip.proxy_config import ProxyConfig

EVERYTHING = {
    "listen": "127.0.0.1:5070", "advertise": "proxy.site-a.example", "transports": ["tcp"],
    "routes": {"site-b.example": "10.2.0.5:5080", "*": "tcp:10.0.0.1:5060"},
    "emergency_numbers": [999, "18"], "emergency_namespaces": ["DSN", "q735"],
    "timer_c_s": 90, "timers": {"t1_s": 0.25, "t2_s": 2, "t4_s": 3},
    "max_message_bytes": 8192, "late_offer_media": {"codec": "G729", "ptime_ms": 30},
    "bye_on_media_idle": False, "max_call_s": 3600, "control_timeout_s": 2.5, "controller_poll_s": 1.5,
    "overload": {"max_queue_delay_ms": 50, "max_transactions": 5000, "max_pending_admissions": 20,
                 "retry_after_s": 9, "oc_validity_ms": 500},
    "tcp": {"idle_timeout_s": 60, "message_timeout_s": 3, "max_connections": 100, "max_connections_per_source": 4},
}


def _leaves(value: Any, prefix: str = "") -> dict[str, Any]:
    """Every field of ProxyConfig and of its own sub-settings (a MediaSpec is one value)."""
    if (dataclasses.is_dataclass(value) and not isinstance(value, type)
            and type(value).__module__.startswith("ryu_apps.signalling.sip")):
        out: dict[str, Any] = {}
        for item in dataclasses.fields(value):
            out.update(_leaves(getattr(value, item.name), f"{prefix}{item.name}."))
        return out
    return {prefix.rstrip("."): value}


def test_every_proxy_config_field_comes_from_the_file() -> None:
    config = parse_config(site(**EVERYTHING))
    proxy = ProxyConfig.from_sip_config(config.sip)
    default = ProxyConfig()
    unchanged = {key for key, value in _leaves(proxy).items() if _leaves(default)[key] == value}
    assert unchanged == set(), f"ProxyConfig fields the sip: section did not set: {sorted(unchanged)}"
    assert proxy.host == "proxy.site-a.example" and config.sip.listen_host == "127.0.0.1"
    assert proxy.overload.max_queue_delay_s == 0.05 and proxy.late_offer_media.codec == "g729"
    assert proxy.emergency_namespaces == frozenset({"dsn", "q735"}) and config.sip.controller_poll_s == 1.5


@pytest.mark.parametrize("sip, path", [
    ({"overload": {"max_qeue_delay_ms": 5}}, "sip.overload.max_qeue_delay_ms"),
    ({"tcp": {"idle_timeout": 5}}, "sip.tcp.idle_timeout"),
    ({"timers": {"t3_s": 1}}, "sip.timers.t3_s"),
    ({"late_offer_media": {"codec": "pcmu", "ptime": 20}}, "sip.late_offer_media.ptime"),
    ({"max_call": 10}, "sip.max_call"),
    ({"timers": {"t1_s": 2, "t2_s": 1}}, "sip.timers.t2_s"),
    ({"overload": {"retry_after_s": 0}}, "sip.overload.retry_after_s"),
    ({"tcp": {"max_connections": "many"}}, "sip.tcp.max_connections"),
    ({"routes": {"site-b.example": "exämple..test:5060"}}, "sip.routes"),
    ({"workers": -1}, "sip.workers"), ({"workers": 65}, "sip.workers"), ({"workers": "2"}, "sip.workers"),
    ({"workers": True}, "sip.workers"), ({"workers": 2, "transports": ["tcp"]}, "sip.workers"),
    ({"shared_reader": "all"}, "sip.shared_reader"),
])
def test_mistakes_name_their_key(sip: dict[str, Any], path: str) -> None:
    with pytest.raises((ConfigError, ValueError)) as raised:
        config = parse_config(site(**sip))
        ProxyConfig.from_sip_config(config.sip)
    if isinstance(raised.value, ConfigError):
        assert raised.value.path == path, raised.value
    else:                              # a route's host is checked when the proxy's table is built
        assert "exämple..test" in str(raised.value)


def test_the_standalone_proxy_reads_the_token_from_mam_token(monkeypatch: pytest.MonkeyPatch) -> None:
    assert TOKEN_VARIABLE == "MAM_TOKEN"
    monkeypatch.setenv("MAM_TOKEN", "s3cret")
    monkeypatch.setenv("MAM_API_TOKEN", "old")
    assert build_parser().parse_args(["--controller", "http://127.0.0.1:1"]).token == "s3cret"
    monkeypatch.delenv("MAM_TOKEN")
    assert build_parser().parse_args(["--controller", "http://127.0.0.1:1"]).token is None


def test_workers_come_from_the_file_or_the_command_line_and_need_in_process_admission(tmp_path: Any) -> None:
    import yaml

    from ryu_apps.signalling.sip.command import load_site, worker_count
    assert parse_config(site(workers=3)).sip.workers == 3 and parse_config(site()).sip.workers == 0
    config = tmp_path / "site.yaml"
    config.write_text(yaml.safe_dump(site(workers=2)))
    parser = build_parser()
    args = parser.parse_args(["--config", str(config)])
    assert worker_count(args, load_site(args)) == 2
    args = parser.parse_args(["--config", str(config), "--workers", "0"])
    assert worker_count(args, load_site(args)) == 0
    args = parser.parse_args(["--config", str(config), "--controller", "http://127.0.0.1:1", "--workers", "2"])
    with pytest.raises(ValueError, match="--workers needs --config"):
        worker_count(args, load_site(args))
    for bad in ("-1", "65", "two"):
        with pytest.raises(SystemExit):
            parser.parse_args(["--config", str(config), "--workers", bad])


def test_the_controllers_sip_workers_serve_udp_and_leave_the_default_in_process() -> None:
    """``sip.workers`` is also the controller's (mam_app: N worker processes, admission in the
    controller); 0, the default, keeps its in-process proxy; workers need udp."""
    assert parse_config(site()).sip.workers == 0
    config = parse_config(site(workers=2, transports=["udp"]))
    assert config.sip.workers == 2 and config.sip.transports == ("udp",)
    assert parse_config(site(workers=1)).sip.transports == ("udp", "tcp")      # tcp is then not served
    assert config.sip.shared_reader == "owner"
    assert parse_config(site(workers=2, shared_reader="workers")).sip.shared_reader == "workers"
    with pytest.raises(ConfigError, match="UDP only") as raised:
        parse_config(site(workers=1, transports=["tcp"]))
    assert raised.value.path == "sip.workers"
