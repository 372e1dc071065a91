"""The web console in a real browser (Debian's chromium, driven by chromium-driver through
selenium): it loads, shows the aggregate, a call admitted over REST appears within 1 s by
the event stream, a refusal shows its reason, and a release asks for confirmation.
Screenshots land in out/console-*.png for people to look at."""

from __future__ import annotations

import json
import shutil
import time
import urllib.request
from pathlib import Path
from typing import Any, Iterator

import pytest

from ryu_apps.config import ApiConfig, build_manager, parse_config
from ryu_apps.events import EventHub, ThreadWakeup
from ryu_apps.rest.api import make_wsgi_app
from ryu_apps.service import MamService

from fakes.loopback import serve

pytestmark = pytest.mark.integration
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the test extra (setup.cfg)")
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "out"
TOKEN = "console-test-token-0123456789"
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
PCMU_KBPS = 91                  # G.711 at 20 ms on Ethernet, as the controller counts it


def config(pool_kbps: int) -> dict[str, Any]:
    return {
        "topology": {"switches": [{"name": "s1", "dpid": 1}, {"name": "s2", "dpid": 2}, {"name": "s3", "dpid": 3}],
                     "links": [{"a": "s1", "a_port": 10, "b": "s2", "b_port": 10, "capacity_kbps": 10000},
                               {"a": "s2", "a_port": 11, "b": "s3", "b_port": 10, "capacity_kbps": 10000}]},
        "communities": [{"name": "site-a", "edge": "s1", "access_ports": [1], "prefixes": ["10.1.0.0/16"]},
                        {"name": "site-b", "edge": "s3", "access_ports": [1], "prefixes": ["10.2.0.0/16"]}],
        "aggregates": [{"id": "a-b", "between": ["site-a", "site-b"], "size_kbps": pool_kbps}],
    }


@pytest.fixture
def controller() -> Iterator[tuple[str, MamService]]:
    hub = EventHub(wakeup=ThreadWakeup, keepalive_s=2)
    service = MamService(build_manager(parse_config(config(2 * PCMU_KBPS))), clock=time.time)
    service.watch(hub)
    for url in serve(make_wsgi_app(service, ApiConfig(token=TOKEN), events=hub)):
        yield url, service


@pytest.fixture
def browser() -> Iterator[Any]:
    if not (CHROMIUM and DRIVER):
        pytest.fail("chromium and chromium-driver are needed (scripts/bootstrap.sh installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1280,860"):
        options.add_argument(argument)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=DRIVER))
    try:
        yield driver
    finally:
        driver.quit()


def post_call(url: str, call_id: str) -> int:
    body = {"call_id": call_id, "caller_community": "site-a", "callee_community": "site-b", "media": {"codec": "pcmu"}}
    request = urllib.request.Request(f"{url}/mam/v1/calls", json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "Authorization": f"Bearer {TOKEN}"})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return int(error.code)


def shot(driver: Any, page: str) -> None:
    OUT.mkdir(exist_ok=True)
    driver.execute_script(f"location.hash = '#{page}'")
    time.sleep(0.3)
    driver.save_screenshot(str(OUT / f"console-{page}.png"))


def test_the_console_follows_admissions_and_refusals_live(controller: tuple[str, MamService], browser: Any) -> None:
    url, service = controller
    browser.get(f"{url}/ui/#aggregates")
    wait = WebDriverWait(browser, 10)
    row = wait.until(EC.presence_of_element_located((By.CSS_SELECTOR, 'tr[data-aggregate="a-b"]')))
    assert "site-a" in row.text and str(2 * PCMU_KBPS) in row.text
    wait.until(EC.text_to_be_present_in_element((By.ID, "live"), "live"))        # the event stream is open
    shot(browser, "topology")
    assert browser.find_elements(By.CSS_SELECTOR, 'g[data-link="s1-s2"] line')

    # a call admitted over REST shows within a second, by the event stream (no reload)
    for call_id in ("call-1", "call-2"):
        assert post_call(url, call_id) == 201
        admitted = time.monotonic()
        WebDriverWait(browser, 1.0, poll_frequency=0.02).until(
            EC.presence_of_element_located((By.CSS_SELECTOR, f'tr[data-call="{call_id}"]')))
        assert time.monotonic() - admitted < 1.0
    used = 'tr[data-aggregate="a-b"] td:nth-child(4)'                      # refreshed after the events
    WebDriverWait(browser, 2).until(
        lambda driver: driver.find_element(By.CSS_SELECTOR, used).get_attribute("textContent") == str(2 * PCMU_KBPS))
    shot(browser, "aggregates")
    shot(browser, "calls")
    assert not browser.find_elements(By.CSS_SELECTOR, "button.release")   # no token given: no release

    # the pool is full: the next call is refused, and the console says why
    assert post_call(url, "call-3") == 409
    refused = WebDriverWait(browser, 2).until(EC.presence_of_element_located(
        (By.CSS_SELECTOR, 'tr[data-refused="call-3"] td.reason')))
    assert refused.get_attribute("textContent") == "pool-full"
    reasons = browser.find_element(By.CSS_SELECTOR, '#refusal-reasons tr[data-reason="pool-full"]')
    assert reasons.get_attribute("textContent").endswith("1")
    shot(browser, "refusals")

    # with the token given, a call can be released, after a confirmation
    browser.execute_script("location.hash = '#calls'")
    field = browser.find_element(By.ID, "token")
    field.send_keys(TOKEN)
    browser.find_element(By.CSS_SELECTOR, "#token-form button[type=submit]").click()
    assert browser.find_element(By.ID, "token").get_attribute("value") == ""      # never shown back
    button = WebDriverWait(browser, 5).until(EC.element_to_be_clickable(
        (By.CSS_SELECTOR, 'tr[data-call="call-1"] button.release')))
    button.click()
    alert = WebDriverWait(browser, 2).until(EC.alert_is_present())
    assert "call-1" in alert.text
    alert.accept()
    WebDriverWait(browser, 2).until_not(EC.presence_of_element_located((By.CSS_SELECTOR, 'tr[data-call="call-1"]')))
    assert [c.call_id for c in service.read(lambda m: m.calls())] == ["call-2"]
