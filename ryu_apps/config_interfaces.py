"""How the controller is reached: the REST API, the OpenFlow listener and their TLS
(the ``api`` and ``openflow`` sections; docs/configuration.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .config_fields import ConfigError, Node, boolean, hostport, integer, string
from .core import limits


@dataclass(frozen=True)
class TlsConfig:
    cert: str                      # PEM certificate (chain) this side presents
    key: str                       # its private key
    ca: str | None = None          # require the peer's certificate to be signed by this CA


@dataclass(frozen=True)
class ApiConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    token: str | None = None       # from api.token, api.token_file, or $MAM_TOKEN (see ryu_apps/security.py)
    read_token: str | None = None  # reads need it (or token) when set; none: reads are open (the default)
    max_body_bytes: int = 65536
    allow_insecure: bool = False   # start even with a weak token, or none on a non-loopback address
    tls: TlsConfig | None = None


@dataclass(frozen=True)
class OpenFlowConfig:
    listen_host: str | None = None   # None: 127.0.0.1, unless the command line names a host
    listen_port: int | None = None   # None: the framework's (--ofp-tcp-listen-port, 6653)
    tls: TlsConfig | None = None


def readable_file(value: Any, path: str) -> str:
    text = string(value, path)
    try:
        with open(text, "rb"):
            pass
    except OSError as error:
        raise ConfigError(path, f"cannot read {text}: {error.strerror}") from None
    return text


def read_tls(value: Any, path: str) -> TlsConfig:
    node = Node(value, path)
    tls = TlsConfig(cert=node.get("cert", readable_file), key=node.get("key", readable_file), ca=node.get("ca", readable_file, None))
    node.done()
    return tls


def read_token_file(value: Any, path: str) -> str:
    name = readable_file(value, path)
    with open(name, encoding="utf-8") as handle:
        token = handle.read().strip()
    if not token:
        raise ConfigError(path, f"{name} is empty")
    return token


def read_api(value: Any, path: str) -> ApiConfig:
    node = Node(value, path)
    token = node.get("token", string, None)
    from_file = node.get("token_file", read_token_file, None)
    if token is not None and from_file is not None:
        raise ConfigError(node.key("token_file"), "give token or token_file, not both")
    api = ApiConfig(host=node.get("host", string, "127.0.0.1"), port=node.get("port", integer(*limits.UDP_PORT), 8080),
                    token=token if token is not None else from_file,
                    read_token=node.get("read_token", string, None),
                    max_body_bytes=node.get("max_body_bytes", integer(256, 16 * 2 ** 20), 65536),
                    allow_insecure=node.get("allow_insecure", boolean, False),
                    tls=node.get("tls", read_tls, None))
    node.done()
    return api


def read_openflow(value: Any, path: str) -> OpenFlowConfig:
    node = Node(value, path)
    listen = node.get("listen", hostport, None)
    host, port = (None, None) if listen is None else (listen.rpartition(":")[0].strip("[]"),
                                                      int(listen.rpartition(":")[2]))
    openflow = OpenFlowConfig(listen_host=host, listen_port=port, tls=node.get("tls", read_tls, None))
    node.done()
    return openflow
