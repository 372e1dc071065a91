"""The gateway's configuration: communities' signalling/profile and the profiles: section."""

import copy
import re
from pathlib import Path

import pytest
import yaml

from ryu_apps.config import ConfigError, parse_config
from ryu_apps.signalling.gateway.profile import (BUILTIN_PROFILES, HeaderAction, Identity, NumberForm, Signalling)

EXAMPLE = Path(__file__).resolve().parents[2] / "docs" / "examples" / "enterprise.yaml"
BASE = yaml.safe_load(EXAMPLE.read_text())

PROFILE = {
    "identity": "rpid",
    "diversion": "diversion",
    "numbers": {"country_code": 44, "national_prefix": "0", "international_prefix": "00", "form": "national"},
    "strip_topology": True,
    "headers": {
        "inbound": [{"action": "remove", "header": "X-*"},
                    {"action": "rename", "header": "X-Caller", "to": "P-Preferred-Identity"}],
        "outbound": [{"action": "add", "header": "X-Site", "value": "b"},
                     {"action": "set", "header": "User-Agent", "value": "mam"},
                     {"action": "replace", "header": "Subject", "match": "^(.*)$", "value": r"[b] \1"}],
    },
    "sdp": {"codecs": ["pcma", "pcmu", "telephone-event"], "ptime_ms": 20, "telephone_event_pt": 101,
            "disable_video": True},
    "dtmf": "info",
    "session_timers": True,
    "min_se_s": 1800,
    "reliable_provisional": False,
}


def document(rules=None, **community_keys):
    doc = copy.deepcopy(BASE)
    doc["profiles"] = {"pbx-b": copy.deepcopy(PROFILE if rules is None else rules)}
    doc["communities"][1].update(community_keys)
    return doc


def test_defaults_every_community_speaks_sip_with_the_generic_profile():
    config = parse_config(copy.deepcopy(BASE))
    assert config.gateway.of("site-a").signalling is Signalling.SIP
    assert config.gateway.profile_of("site-a") is BUILTIN_PROFILES["generic"]
    assert not config.gateway.normalising and not config.gateway.interworking


def test_a_full_profile_is_read_into_typed_rules():
    config = parse_config(document(signalling="h323", profile="pbx-b"))
    gateway = config.gateway
    assert gateway.of("site-b").signalling is Signalling.H323 and gateway.interworking and gateway.normalising
    profile = gateway.profile_of("site-b")
    assert profile.identity is Identity.RPID and profile.strip_topology and profile.dtmf == "info"
    assert profile.diversion.value == "diversion"
    assert profile.numbers is not None and profile.numbers.country_code == "44"
    assert profile.numbers.form is NumberForm.NATIONAL
    assert [r.action for r in profile.inbound] == [HeaderAction.REMOVE, HeaderAction.RENAME]
    assert profile.inbound[1].to == "p-preferred-identity"
    replace = profile.outbound[2]
    assert replace.match is not None and replace.match.pattern == "^(.*)$"
    assert profile.sdp.codecs == ("pcma", "pcmu", "telephone-event") and profile.sdp.telephone_event_pt == 101
    assert gateway.profile_of("site-a").changes_nothing
    assert profile.session_timers and profile.min_se_s == 1800 and not profile.reliable_provisional


def test_builtin_profiles_are_usable_by_name():
    config = parse_config(document(profile="cisco-cucm"))
    assert config.gateway.profile_of("site-b").identity is Identity.RPID


def mutate(path, value):
    profile = copy.deepcopy(PROFILE)
    node = profile
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    return profile


@pytest.mark.parametrize("path, value, where, message", [
    (("headers", "inbound", 0, "action"), "delete", "profiles.pbx-b.headers.inbound[0].action",
     "unknown header action 'delete'"),
    (("headers", "outbound", 2, "match"), "([a-", "profiles.pbx-b.headers.outbound[2].match",
     "bad regular expression"),
    (("headers", "outbound", 2, "value"), r"\9", "profiles.pbx-b.headers.outbound[2].value", "bad replacement"),
    (("headers", "outbound", 0, "colour"), "red", "profiles.pbx-b.headers.outbound[0].colour", "unknown key"),
    (("headers", "outbound", 0, "header"), "Via", "profiles.pbx-b.headers.outbound[0].header", "routing"),
    (("headers", "outbound", 0, "header"), "X Bad", "profiles.pbx-b.headers.outbound[0].header",
     "not a SIP header name"),
    (("headers", "outbound", 0, "value"), "a\r\nInjected: 1", "profiles.pbx-b.headers.outbound[0].value", "CR"),
    (("headers", "sideways"), [], "profiles.pbx-b.headers.sideways", "unknown key"),
    (("identity",), "pid", "profiles.pbx-b.identity", "must be one of"),
    (("diversion",), "both", "profiles.pbx-b.diversion", "must be one of"),
    (("numbers", "country_code"), "4x", "profiles.pbx-b.numbers.country_code", "digits"),
    (("numbers", "form"), "local", "profiles.pbx-b.numbers.form", "must be one of"),
    (("numbers", "national_prefix"), "00", "profiles.pbx-b.numbers.national_prefix", "differ"),
    (("sdp", "codecs", 1), "speex", "profiles.pbx-b.sdp.codecs[1]", "unknown codec"),
    (("sdp", "telephone_event_pt"), 8, "profiles.pbx-b.sdp.telephone_event_pt", "between 96 and 127"),
    (("dtmf",), "inband", "profiles.pbx-b.dtmf", "must be one of"),
    (("colour",), "red", "profiles.pbx-b.colour", "unknown key"),
    (("session_timers",), "no", "profiles.pbx-b.session_timers", "true or false"),
    (("min_se_s",), 89, "profiles.pbx-b.min_se_s", "between 90 and 86400"),
    (("reliable_provisional",), 1, "profiles.pbx-b.reliable_provisional", "true or false"),
])
def test_errors_name_the_profile_key(path, value, where, message):
    with pytest.raises(ConfigError) as error:
        parse_config(document(mutate(path, value), profile="pbx-b"))
    assert error.value.field == where and message in str(error.value)


def test_min_se_needs_session_timers_and_each_extension_key_alone_makes_a_profile_normalise():
    with pytest.raises(ConfigError, match="no Min-SE") as error:
        parse_config(document({"session_timers": False, "min_se_s": 90}, profile="pbx-b"))
    assert error.value.field == "profiles.pbx-b.min_se_s"
    for rules in ({"session_timers": False}, {"reliable_provisional": False}, {"min_se_s": 90}):
        assert parse_config(document(rules, profile="pbx-b")).gateway.normalising
    assert not parse_config(document({"session_timers": True, "reliable_provisional": True},
                                     profile="pbx-b")).gateway.normalising


@pytest.mark.parametrize("keys, where, message", [
    ({"profile": "nonesuch"}, "communities[1].profile", "unknown profile 'nonesuch'"),
    ({"signalling": "iax"}, "communities[1].signalling", "must be one of"),
])
def test_community_keys_are_checked(keys, where, message):
    with pytest.raises(ConfigError) as error:
        parse_config(document(**keys))
    assert error.value.field == where and message in str(error.value)


def test_a_builtin_name_cannot_be_redefined_and_names_are_checked():
    doc = document()
    doc["profiles"]["generic"] = {}
    with pytest.raises(ConfigError, match="built-in") as error:
        parse_config(doc)
    assert error.value.field == "profiles.generic"
    doc = document()
    doc["profiles"]["Bad Name"] = {}
    with pytest.raises(ConfigError) as error:
        parse_config(doc)
    assert error.value.field == "profiles.Bad Name"


def test_a_typo_in_a_community_key_is_still_an_error():
    with pytest.raises(ConfigError) as error:
        parse_config(document(profil="pbx-b"))
    assert error.value.field == "communities[1].profil"


def test_the_gateway_section_and_its_errors():
    doc = document(signalling="h323")
    doc["gateway"] = {"sip_listen": "127.0.0.1:5070", "h323_listen": "127.0.0.1:1730",
                      "pbx": {"site-a": "10.0.1.5:5060", "site-b": "10.0.2.5:1720"}, "no_answer_s": 60,
                      "h245_timeout_s": 7}
    gateway = parse_config(doc).gateway
    assert gateway.enabled and gateway.sip_listen == ("127.0.0.1", 5070) and gateway.no_answer_s == 60 \
        and gateway.h245_timeout_s == 7
    assert gateway.pbx == (("site-a", "10.0.1.5", 5060), ("site-b", "10.0.2.5", 1720))
    from ryu_apps.signalling.gateway.standalone import settings_from_config
    config = parse_config(doc)
    settings = settings_from_config(config.gateway, config.topology.communities)
    assert settings.sip_pbx["site-a"].port == 5060 and settings.h323_pbx == {"site-b": ("10.0.2.5", 1720)}
    assert settings.domains == {"site-a": "site-a.example", "site-b": "site-b.example"}
    assert settings.h245_timeout_s == 7
    for key, value, where, message in (
            ("pbx", {"site-z": "10.0.0.1:5060"}, "gateway.pbx.site-z", "unknown community"),
            ("pbx", {"site-a": "pbx.example:5060"}, "gateway.pbx.site-a", "IP"),
            ("sip_listen", "nowhere", "gateway.sip_listen", "host:port"),
            ("h245_timeout_s", 0, "gateway.h245_timeout_s", ""),
            ("colour", "red", "gateway.colour", "unknown key")):
        bad = copy.deepcopy(doc)
        bad["gateway"][key] = value
        with pytest.raises(ConfigError) as error:
            parse_config(bad)
        assert error.value.field == where and message in str(error.value), str(error.value)
