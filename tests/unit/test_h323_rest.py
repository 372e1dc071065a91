"""The REST pieces a standalone gatekeeper uses: lookup by dialled number, and its client."""

from __future__ import annotations

import json
from typing import Any

from h323_harness import SITE
from webob import Request

from ryu_apps.config import ApiConfig, build_manager, parse_config
from ryu_apps.metrics import Metrics
from ryu_apps.rest.api import make_wsgi_app
from ryu_apps.service import MamService
from ryu_apps.signalling.h323.rest_queries import RestNumbers


def lookup(query: str) -> tuple[int, Any]:
    service = MamService(build_manager(parse_config(SITE)))
    app = make_wsgi_app(service, ApiConfig(), Metrics(service))
    response = Request.blank(f"/mam/v1/communities/lookup?{query}").get_response(app)
    return response.status_int, json.loads(response.body)


def test_lookup_by_number_uses_e164_prefixes_after_domain_and_address() -> None:
    assert lookup("number=2001") == (200, {"community": "site-b"})
    assert lookup("number=%2B1555") == (200, {"community": "site-a"})
    assert lookup("number=999") == (200, {"community": None})
    assert lookup("domain=a.example&number=2001") == (200, {"community": "site-a"})
    assert lookup("") == (200, {"community": None})               # nothing asked: no community


class FakeRest:
    def __init__(self) -> None:
        self.asked: list[str] = []

    def _call(self, method: str, path: str, payload: Any) -> tuple[int, Any]:
        self.asked.append(path)
        return 200, {"community": "site-b" if "number=2" in path else None}


def test_rest_numbers_asks_once_per_number_then_caches() -> None:
    rest = FakeRest()
    numbers = RestNumbers(rest)
    assert numbers.community_of_number("2001") == "site-b"
    assert numbers.community_of_number("2001") == "site-b"
    assert numbers.community_of_number("3001") is None
    assert rest.asked == ["/mam/v1/communities/lookup?number=2001", "/mam/v1/communities/lookup?number=3001"]


def test_mamctl_check_config_validates_the_h323_section(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import io

    import yaml

    from ryu_apps.cli import main
    good = {**SITE, "h323": {"enabled": True, "ras_listen": "127.0.0.1:11719", "call_listen": "127.0.0.1:11720"}}
    bad = {**SITE, "h323": {"enabled": True, "ras_listn": "127.0.0.1:11719"}}
    results = []
    for name, document in (("good", good), ("bad", bad)):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(document))
        out, err = io.StringIO(), io.StringIO()
        results.append((main(["check-config", str(path)], out, err), out.getvalue() + err.getvalue()))
    assert results[0][0] == 0 and "OK" in results[0][1]
    assert results[1][0] != 0 and "bad.yaml: h323.ras_listn: unknown key" in results[1][1]
    assert "ras_listen" in results[1][1]
