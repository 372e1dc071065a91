"""What the controller refuses to start with: secrets that protect nothing.

* The REST API's token comes from ``api.token``, ``api.token_file`` or ``$MAM_TOKEN``
  (the same variable ``mamctl`` and the standalone front ends read).
* A token that is an example or default value (``change-me``, ``secret``, ...) or shorter
  than :data:`MIN_TOKEN_LENGTH` characters is refused.
* An API on a non-loopback address without a token is refused: anyone who can reach it
  could admit, release and delete.
* ``api.allow_insecure: true`` starts anyway, and says so loudly in the log.

The OpenFlow listener binds what ``openflow.listen`` says, 127.0.0.1 by default (a switch
on another machine needs an explicit address, and should use ``openflow.tls``).
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace
from typing import Mapping

from .config import ApiConfig, ConfigError

MIN_TOKEN_LENGTH = 12
#: Values found in examples, tutorials and defaults: refused whatever their length.
EXAMPLE_TOKENS = frozenset({"change-me", "changeme", "change_me", "secret", "password", "passw0rd", "token",
                            "admin", "test", "demo", "default", "mam", "ryu", "example", "s3cret", "letmein",
                            "1234", "12345678", "123456789012", "your-token-here", "replace-me"})
TOKEN_VARIABLE = "MAM_TOKEN"


def is_loopback(host: str) -> bool:
    if host in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def api_with_token(api: ApiConfig, environ: Mapping[str, str]) -> ApiConfig:
    """The API settings with the token from the environment when the file gives none."""
    if api.token is None and environ.get(TOKEN_VARIABLE):
        return replace(api, token=environ[TOKEN_VARIABLE].strip())
    return api


def problems(api: ApiConfig) -> list[str]:
    """What is wrong with how the API is protected (empty: nothing)."""
    found = []
    token = api.token
    if token is not None:
        if token.strip().lower() in EXAMPLE_TOKENS:
            found.append(f"api.token is an example value ({token!r}): anyone who read the docs can use it; "
                         f"set a random one (e.g. {TOKEN_VARIABLE}=$(openssl rand -hex 16))")
        elif len(token.strip()) < MIN_TOKEN_LENGTH:
            found.append(f"api.token has {len(token.strip())} characters; at least {MIN_TOKEN_LENGTH} are required")
    elif not is_loopback(api.host):
        found.append(f"api.host {api.host} is not a loopback address and no token is set (api.token, "
                     f"api.token_file or ${TOKEN_VARIABLE}): anyone who reaches it could admit, release and delete")
    read = api.read_token
    if read is not None:
        if read.strip().lower() in EXAMPLE_TOKENS:
            found.append(f"api.read_token is an example value ({read!r}): set a random one")
        elif len(read.strip()) < MIN_TOKEN_LENGTH:
            found.append(f"api.read_token has {len(read.strip())} characters; at least {MIN_TOKEN_LENGTH} are required")
    return found


def check(api: ApiConfig) -> list[str]:
    """Raise ConfigError naming the first problem, unless ``api.allow_insecure``; the
    warnings to log either way."""
    found = problems(api)
    if found and not api.allow_insecure:
        raise ConfigError("api.token" if api.token is not None else "api.host",
                          found[0] + " (or set api.allow_insecure: true to start anyway)")
    warnings = [f"INSECURE (api.allow_insecure): {text}" for text in found]
    if api.token is None:
        warnings.append(f"no API token: any local process may change reservations (set {TOKEN_VARIABLE})")
    if api.read_token is None and not is_loopback(api.host):
        warnings.append(f"no api.read_token on {api.host}: anyone who reaches it can read calls, call records and "
                        "the console")
    return warnings
