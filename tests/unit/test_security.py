"""What the controller refuses to start with (ryu_apps/security.py) and the config behind it."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from ryu_apps import security
from ryu_apps.config import ApiConfig, ConfigError, parse_config

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "enterprise.yaml"


@pytest.mark.parametrize("token", ["change-me", "Change-Me", "secret", "password", "  token  ", ""])
def test_an_example_or_empty_token_is_refused(token):
    with pytest.raises(ConfigError, match="example value|characters") as error:
        security.check(ApiConfig(token=token))
    assert error.value.path == "api.token" and "allow_insecure" in str(error.value)


def test_a_short_token_is_refused_and_a_long_random_one_is_fine():
    with pytest.raises(ConfigError, match="11 characters; at least 12"):
        security.check(ApiConfig(token="x7Gq2mZ9kLp"))
    assert security.check(ApiConfig(token="x7Gq2mZ9kLp4")) == []


@pytest.mark.parametrize("host", ["0.0.0.0", "10.1.2.3", "::", "controller.example"])
def test_an_api_off_loopback_without_a_token_is_refused(host):
    with pytest.raises(ConfigError, match="not a loopback address and no token") as error:
        security.check(ApiConfig(host=host))
    assert error.value.path == "api.host"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.53", "::1", "localhost"])
def test_loopback_without_a_token_starts_with_a_warning(host):
    (warning,) = security.check(ApiConfig(host=host))
    assert "no API token" in warning


def test_allow_insecure_starts_anyway_and_says_so():
    warnings = security.check(ApiConfig(host="0.0.0.0", token="change-me", allow_insecure=True))
    assert warnings[0].startswith("INSECURE (api.allow_insecure): api.token is an example value")


def test_the_token_comes_from_mam_token_when_the_file_gives_none():
    assert security.api_with_token(ApiConfig(), {"MAM_TOKEN": " from-env-123456 "}).token == "from-env-123456"
    assert security.api_with_token(ApiConfig(token="from-file-1234"), {"MAM_TOKEN": "x"}).token == "from-file-1234"
    assert security.api_with_token(ApiConfig(), {}).token is None


def document(**api) -> dict:
    doc = copy.deepcopy(yaml.safe_load(EXAMPLE.read_text()))
    doc["api"].update(api)
    return doc


def test_token_file_is_read_and_conflicts_with_token(tmp_path):
    secret = tmp_path / "token"
    secret.write_text("k3y-from-a-file-99\n")
    assert parse_config(document(token_file=str(secret))).api.token == "k3y-from-a-file-99"
    with pytest.raises(ConfigError, match="token or token_file, not both"):
        parse_config(document(token_file=str(secret), token="another-one-1234"))
    with pytest.raises(ConfigError, match="cannot read") as error:
        parse_config(document(token_file=str(tmp_path / "missing")))
    assert error.value.path == "api.token_file"


def test_tls_files_must_be_readable_and_keys_known(tmp_path):
    cert, key = tmp_path / "c.pem", tmp_path / "k.pem"
    cert.write_text("x")
    key.write_text("x")
    config = parse_config(document(tls={"cert": str(cert), "key": str(key)}))
    assert config.api.tls is not None and config.api.tls.ca is None
    with pytest.raises(ConfigError, match="cannot read") as error:
        parse_config(document(tls={"cert": str(cert), "key": str(tmp_path / "nope.pem")}))
    assert error.value.path == "api.tls.key"
    with pytest.raises(ConfigError, match="unknown key") as error:
        parse_config(document(tls={"cert": str(cert), "key": str(key), "cafile": str(cert)}))
    assert error.value.path == "api.tls.cafile"


# A token written into a test, benchmark, demo or example configuration that the controller
# refuses makes that controller exit before it listens (CI once failed on "token": "t").
TOKEN_LITERALS = (r"""["']token["']\s*:\s*["']([^"'${}]*)["'](?!\s*\+)""",     # JSON / dict
                  r"""\bTOKEN\s*=\s*["']([^"'${}]*)["'](?!\s*\+)""",           # a module constant
                  r"""^\s*token:\s*([^\s#{}$,]+)""",                          # YAML
                  r"""//kamailio:([^@$"'{}\s]+)@""")                         # in Kamailio's URL
SCANNED = ("tests/integration", "tests/e2e", "benchmarks", "mininet", "topologies", "docs", "scripts")


def test_no_configuration_in_the_repository_carries_a_token_the_controller_refuses():
    import re
    root = EXAMPLE.parents[2]
    weak = []
    for top in SCANNED:
        for path in sorted((root / top).rglob("*")):
            if path.suffix not in (".py", ".yaml", ".yml", ".json", ".cfg") or not path.is_file():
                continue
            for number, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
                for pattern in TOKEN_LITERALS:
                    for value in re.findall(pattern, line):
                        if not value.isupper() and security.problems(ApiConfig(token=value)):   # not TOKEN
                            weak.append(f"{path.relative_to(root)}:{number}: {value!r}")
    assert weak == [], "weak tokens (use netlab.strong_token or secrets.token_hex):\n" + "\n".join(weak)
