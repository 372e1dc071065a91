"""docs/openapi.yaml is true: every route is documented and vice versa, and generated requests
(schemathesis) against the in-process app never get a 5xx and always get documented answers."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, settings

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is in the test extra (make bootstrap)")

from schemathesis import checks  # noqa: E402

from ryu_apps.config import ApiConfig, build_manager, parse_config  # noqa: E402
from ryu_apps.rest.api import RestApi, make_wsgi_app  # noqa: E402
from ryu_apps.service import MamService  # noqa: E402

from test_rest_api import config  # noqa: E402

DOC = Path(__file__).resolve().parents[2] / "docs" / "openapi.yaml"
TOKEN = "openapi-token"
METHODS = {"get", "post", "put", "patch", "delete"}


def make_app() -> RestApi:
    return make_wsgi_app(MamService(build_manager(parse_config(config(3000))), clock=lambda: 0.0),
                         ApiConfig(token=TOKEN))


def documented() -> dict[str, set[str]]:
    paths = yaml.safe_load(DOC.read_text())["paths"]
    return {path: {m.upper() for m in item if m in METHODS} for path, item in paths.items()}


def test_every_route_is_documented_and_every_documented_route_exists() -> None:
    app = make_app()
    served: list[tuple[re.Pattern[str], set[str]]] = [(p, set(h)) for p, h in app.routes]
    docs = documented()
    for path, methods in docs.items():
        sample = re.sub(r"\{\w+\}", "x", path)
        matches = [handlers for pattern, handlers in served if pattern.match(sample)]
        assert matches and matches[0] == methods, f"{path}: documented {methods}, served {matches[:1]}"
    for pattern, methods in served:
        assert any(pattern.match(re.sub(r"\{\w+\}", "x", path)) and docs[path] == methods for path in docs), \
            f"route {pattern.pattern} ({methods}) is not in {DOC.name}"


SCHEMA = schemathesis.openapi.from_path(str(DOC))
APP = make_app()


@SCHEMA.parametrize()
@settings(max_examples=30, deadline=None, suppress_health_check=list(HealthCheck))
def test_generated_requests_get_documented_answers_and_never_a_5xx(case) -> None:
    case.call_and_validate(app=APP, headers={"Authorization": f"Bearer {TOKEN}"},
                           checks=[checks.not_a_server_error, checks.status_code_conformance,
                                   checks.content_type_conformance, checks.response_schema_conformance,
                                   checks.negative_data_rejection])
