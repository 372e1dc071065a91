import copy
from pathlib import Path

import pytest
import yaml

from ryu_apps.config import ConfigError, build_manager, load_config, parse_config
from ryu_apps.core.store import MemoryLedger

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "enterprise.yaml"
BASE = yaml.safe_load(EXAMPLE.read_text())


def broken(path, value):
    document = copy.deepcopy(BASE)
    node = document
    for key in path[:-1]:
        node = node[key]
    if value is KeyError:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return document


def test_the_documented_example_loads():
    config = load_config(str(EXAMPLE))
    assert [c.name for c in config.topology.communities] == ["site-a", "site-b"]
    assert config.aggregates[0].size_kbps == 2000 and config.api.token is None       # from $MAM_TOKEN
    assert (config.openflow.listen_host, config.openflow.listen_port) == ("127.0.0.1", 6653)
    assert config.topology.link("s1", "s2").reservable_kbps == 5000


@pytest.mark.parametrize("path, value, where, message", [
    (("communities", 1, "prefixes", 0), "10.0.0/33", "communities[1].prefixes[0]", "not an IP prefix"),
    (("communities", 0, "colour"), "red", "communities[0].colour", "unknown key"),
    (("topology", "switches", 1, "dpid"), "zz", "topology.switches[1].dpid", "not a datapath id"),
    (("topology", "links", 0, "b"), "s9", "topology.links[0].b", "unknown switch"),
    (("topology", "links", 0, "capacity_kbps"), KeyError, "topology.links[0].capacity_kbps", "is required"),
    (("communities", 0, "access_ports", 0), 10, "communities[0].access_ports[0]", "link port"),
    (("aggregates", 0, "between", 1), "site-z", "aggregates[0].between[1]", "unknown community"),
    (("aggregates", 0, "size_kbps"), 999999, "aggregates[0].size_kbps", "no path"),
    (("aggregates", 0, "levels", 0), "gold", "aggregates[0].levels[0]", "unknown level"),
    (("codecs", "allowed", 1), "speex", "codecs.allowed[1]", "unknown codec"),
    (("dataplane", "class_mode"), "magic", "dataplane.class_mode", "must be one of"),
    (("api", "port"), 70000, "api.port", "between 1 and 65535"),
    (("sip", "listen"), "localhost", "sip.listen", "host:port"),
    (("aggregates", 0, "autosize"), {"min_kbps": 900, "max_kbps": 100, "step_kbps": 10},
     "aggregates[0].autosize.min_kbps", "above max_kbps"),
    (("aggregates", 0, "autosize"), {"min_kbps": 100, "max_kbps": 900, "step_kbps": 10, "hold": 3},
     "aggregates[0].autosize.hold", "unknown key 'hold'"),
    (("aggregates", 0, "autosize"), {"min_kbps": 100, "max_kbps": 900, "step_kbps": 100},
     "aggregates[0].size_kbps", "outside autosize's 100..900"),
    (("aggregates", 0, "schedule"), [{"at": "8h", "size_kbps": 100}], "aggregates[0].schedule[0].at", "HH:MM"),
    (("timezone",), "Europe/Pariss", "timezone", "unknown time zone 'Europe/Pariss'"),
    (("dataplane", "reoptimize_hold_s"), -1, "dataplane.reoptimize_hold_s", ""),
])
def test_errors_name_the_path_of_the_bad_key(path, value, where, message):
    with pytest.raises(ConfigError) as error:
        build_manager(parse_config(broken(path, value)))
    assert error.value.field == where and message in str(error.value)


def test_yaml_syntax_errors_say_where(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("topology:\n  switches: [\n")
    with pytest.raises(ConfigError, match="line"):
        load_config(str(bad))


def test_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load_config(str(tmp_path / "nope.yaml"))


def test_the_configuration_wins_over_the_ledger_for_the_aggregates_it_lists_and_says_so():
    from ryu_apps.core.admission import AdmissionRequest
    from ryu_apps.core.codec import MediaSpec
    config = parse_config(copy.deepcopy(BASE))
    ledger = MemoryLedger()
    first = build_manager(config, ledger)
    first.resize_aggregate("site-a--site-b", 1500)                    # changed at run time (REST)
    first.reconfigure_aggregate("site-a--site-b", priority=7)
    first.create_aggregate("extra", "site-b", "site-a", 300)          # created over REST, not in the file
    first.admit(AdmissionRequest("c1", "site-a", "site-b", MediaSpec("pcmu")), 1.0)
    said: list[str] = []
    again = build_manager(config, ledger, log=said.append)
    pool = again.aggregate("site-a--site-b")
    assert (pool.size_kbps, pool.priority) == (2000, 0) and again.aggregate("extra").size_kbps == 300
    assert [c.call_id for c in again.calls()] == ["c1"] and ledger.aggregates["site-a--site-b"].size_kbps == 2000
    assert said == ["aggregates[0]: aggregate site-a--site-b: the configuration wins over the ledger for "
                    "priority (7 -> 0)",
                    "aggregates[0]: aggregate site-a--site-b: the configuration wins over the ledger for "
                    "size_kbps (1500 -> 2000)"]
    assert build_manager(config, ledger, log=said.append) and len(said) == 2      # agreeing: nothing said


def test_a_configured_size_the_calls_no_longer_fit_keeps_the_stored_one():
    from ryu_apps.core.admission import AdmissionRequest
    from ryu_apps.core.codec import MediaSpec
    document = copy.deepcopy(BASE)
    config = parse_config(document)
    ledger = MemoryLedger()
    first = build_manager(config, ledger)
    for n in range(3):
        first.admit(AdmissionRequest(f"c{n}", "site-a", "site-b", MediaSpec("pcmu")), 1.0)
    document["aggregates"][0]["size_kbps"] = 200                      # three calls use 273
    said: list[str] = []
    again = build_manager(parse_config(document), ledger, log=said.append)
    assert again.aggregate("site-a--site-b").size_kbps == 2000 and len(again.calls()) == 3
    assert said == ["aggregates[0]: aggregate site-a--site-b keeps 2000 kbit/s from the ledger, not the configured "
                    "200: aggregate 'site-a--site-b' carries 273 kbit/s of calls; cannot shrink to 200"]


def test_a_configured_aggregate_the_ledger_holds_between_other_communities_is_an_error():
    document = copy.deepcopy(BASE)
    ledger = MemoryLedger()
    manager = build_manager(parse_config(document), ledger)
    manager.delete_aggregate("site-a--site-b")
    manager.create_aggregate("site-a--site-b", "site-b", "site-a", 500)   # same pair, reversed: fine
    build_manager(parse_config(document), ledger)
    document["communities"].append({"name": "site-c", "edge": "s3", "access_ports": [7],
                                    "prefixes": ["10.3.0.0/16"]})
    document["aggregates"][0]["between"] = ["site-a", "site-c"]
    with pytest.raises(ConfigError, match=r"ledger holds aggregate 'site-a--site-b' between site-b and site-a") as e:
        build_manager(parse_config(document), ledger)
    assert e.value.path == "aggregates[0].between"


def test_h323_section_and_e164_prefixes() -> None:
    from ryu_apps.config import ConfigError, parse_config
    base = {"topology": {"switches": [{"name": "s1", "dpid": 1}]},
            "communities": [{"name": "a", "edge": "s1", "access_ports": [1], "prefixes": ["10.0.0.0/8"],
                             "e164_prefixes": ["+1", 44]}]}
    config = parse_config({**base, "h323": {"ras_listen": "127.0.0.1:11719", "call_listen": "127.0.0.1:11720",
                                             "registration_ttl_s": 60}})
    assert config.h323.enabled and (config.h323.ras_port, config.h323.call_port) == (11719, 11720)
    assert config.h323.registration_ttl_s == 60 and config.topology.community_of_number("4471").name == "a"
    assert not parse_config(base).h323.enabled
    for bad, where in (({"h323": {"ras_listn": "x:1"}}, "h323.ras_listn"),
                       ({"h323": {"registration_ttl_s": 1}}, "h323.registration_ttl_s"),
                       ({"h323": {"call_listen": "nope"}}, "h323.call_listen")):
        try:
            parse_config({**base, **bad})
        except ConfigError as error:
            assert error.path == where, error.path
        else:
            raise AssertionError(f"{bad} accepted")
    try:
        parse_config({**base, "communities": [{**base["communities"][0], "e164_prefixes": ["12a"]}]})
    except ConfigError as error:
        assert error.path == "communities[0].e164_prefixes[0]"
    else:
        raise AssertionError("bad prefix accepted")


def test_an_aggregate_that_follows_demand_keeps_its_stored_size_across_a_restart():
    """The file gives where an autosized pool starts; the ledger holds where demand took it."""
    document = copy.deepcopy(BASE)
    document["aggregates"][0]["autosize"] = {"min_kbps": 1000, "max_kbps": 3000, "step_kbps": 500}
    document["aggregates"][0]["size_kbps"] = 1000
    document["timezone"] = "Europe/Paris"
    config = parse_config(document)
    assert str(config.settings.timezone) == "Europe/Paris"
    ledger = MemoryLedger()
    manager = build_manager(config, ledger)
    aggregate_id = config.aggregates[0].id
    manager.resize_aggregate(aggregate_id, 2500)
    said = []
    again = build_manager(config, ledger, log=said.append)
    assert again.aggregate(aggregate_id).size_kbps == 2500 and again.aggregate(aggregate_id).autosize is not None
    assert any("keeps 2500 kbit/s" in line and "follows demand" in line for line in said), said


def test_a_manager_without_a_data_plane_admits_alike_and_draws_no_call_flows():
    # The standalone proxy, its workers' owner and the standalone gatekeeper and gateway admit
    # with no switch to tell: the same decisions and pool arithmetic, no per-call flows drawn.
    from ryu_apps.core.admission import AdmissionRequest, Admitted
    from ryu_apps.core.calls import MediaEndpoint
    from ryu_apps.core.codec import MediaSpec
    from ryu_apps.core.flowplan import FlowEntry

    config = load_config(str(EXAMPLE))
    managers = {plane: build_manager(config, MemoryLedger(), data_plane=plane) for plane in (True, False)}
    drawn = {}
    for plane, manager in managers.items():
        manager.drain()
        decisions = [manager.admit(AdmissionRequest(f"c{n}", "site-a", "site-b", MediaSpec("pcmu")), 0.0)
                     for n in range(30)]
        for n, decision in enumerate(decisions):
            if isinstance(decision, Admitted):
                manager.attach_media(f"c{n}", MediaEndpoint("10.0.1.5", 4000 + 2 * n),
                                     MediaEndpoint("10.0.2.7", 6000 + 2 * n), 0.0)
        drawn[plane] = ([type(d).__name__ for d in decisions], manager.used_kbps(config.aggregates[0].id),
                        [e for e in manager.drain().plan.add if isinstance(e, FlowEntry)])
    assert drawn[True][:2] == drawn[False][:2] and "Rejected" in drawn[True][0]      # the pool filled alike
    assert len(drawn[True][2]) > 0 and drawn[False][2] == []
    aggregate_entries = {e for e in managers[False].expected_plan() if isinstance(e, FlowEntry)}
    assert aggregate_entries and aggregate_entries <= managers[True].expected_plan()
