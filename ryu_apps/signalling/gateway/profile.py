"""Normalisation profiles as data: what one community's PBX sends and wants to receive.

A profile is validated once, when the configuration is read (``profiles:`` in
:mod:`ryu_apps.config`); :mod:`.normalise` applies it. Canonical form between
communities: numbers in E.164 (``+4420...``) and the caller's identity in
P-Asserted-Identity (RFC 3325). A profile says how its PBX differs from that: the
numbering plan it dials in, whether it speaks Remote-Party-ID, header rules for messages
coming from it (``inbound``) and going to it (``outbound``), what its SDP must look like,
and whether it does session timers and 100rel (applied by :mod:`.extensions`).

Built-in profiles (:data:`BUILTIN_PROFILES`) cover PBX families whose behaviour is
publicly documented; ``generic`` changes nothing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from enum import Enum

__all__ = ["BUILTIN_PROFILES", "DiversionForm", "GENERIC", "HeaderAction", "HeaderRule", "Identity", "NumberForm", "NumberPlan",
           "Profile", "SdpRules", "Signalling", "TOPOLOGY_HEADERS"]


class Signalling(str, Enum):
    SIP = "sip"
    H323 = "h323"


class HeaderAction(str, Enum):
    ADD = "add"            # append a header (kept if one exists)
    SET = "set"            # replace every instance with one value (add if absent)
    REMOVE = "remove"      # drop every header whose name matches (``X-*`` globs allowed)
    RENAME = "rename"      # same values under another name
    REPLACE = "replace"    # regex substitution in each value (``match`` -> ``value``)


class Identity(str, Enum):
    KEEP = "keep"          # pass identity headers as they are
    PAI = "pai"            # the PBX speaks P-Asserted-Identity (+ Privacy), RFC 3325
    RPID = "rpid"          # the PBX speaks Remote-Party-ID (draft-ietf-sip-privacy-04)


class DiversionForm(str, Enum):
    KEEP = "keep"                  # pass Diversion / History-Info as they are
    HISTORY_INFO = "history-info"  # the PBX speaks History-Info (RFC 7044): the canonical form
    DIVERSION = "diversion"        # the PBX speaks Diversion (RFC 5806), mapped per RFC 7544


class NumberForm(str, Enum):
    KEEP = "keep"          # leave numbers as the other side wrote them
    E164 = "e164"          # +<country code><national number>
    NATIONAL = "national"  # <national prefix><national number>; other countries <international prefix>...


@dataclass(frozen=True)
class HeaderRule:
    action: HeaderAction
    header: str                                # canonical (lower-case) name, or a glob for remove
    value: str | None = None                   # add/set: the value; replace: the replacement (\1 ok)
    to: str | None = None                      # rename: the new canonical name
    match: re.Pattern[str] | None = None       # replace: the pattern


@dataclass(frozen=True)
class NumberPlan:
    country_code: str                          # digits, e.g. "44"
    national_prefix: str = "0"                 # trunk prefix dialled before national numbers
    international_prefix: str = "00"           # dialled before a country code
    form: NumberForm = NumberForm.KEEP         # how the PBX wants numbers sent to it


@dataclass(frozen=True)
class SdpRules:
    codecs: tuple[str, ...] = ()               # allowed encodings in order (lower-case); () = any
    ptime_ms: int | None = None                # a=ptime put on audio offers sent to the PBX
    telephone_event_pt: int | None = None      # PT the gateway uses for RFC 4733 in SDP it builds
    disable_video: bool = False                # video m= lines of offers get port 0 (RFC 3264 §8.2)


@dataclass(frozen=True)
class Profile:
    name: str
    identity: Identity = Identity.KEEP
    diversion: DiversionForm = DiversionForm.KEEP
    numbers: NumberPlan | None = None
    strip_topology: bool = False               # drop TOPOLOGY_HEADERS from messages sent to the PBX
    inbound: tuple[HeaderRule, ...] = ()       # applied to messages received from the PBX
    outbound: tuple[HeaderRule, ...] = ()      # applied to messages sent to the PBX
    sdp: SdpRules = field(default_factory=SdpRules)
    dtmf: str = "rfc4733"                      # gateway: rfc4733 | info
    session_timers: bool = True                # the PBX does RFC 4028 session timers
    min_se_s: int | None = None                # its minimum session interval (Min-SE), >= 90
    reliable_provisional: bool = True          # the PBX does 100rel / PRACK (RFC 3262)

    @property
    def changes_nothing(self) -> bool:
        return (self.identity is Identity.KEEP and self.diversion is DiversionForm.KEEP and self.numbers is None and not self.strip_topology
                and not self.inbound and not self.outbound and self.sdp == SdpRules()
                and self.session_timers and self.min_se_s is None and self.reliable_provisional)


#: Headers that tell the other side about this side's equipment and addressing.
TOPOLOGY_HEADERS = ("user-agent", "server", "organization", "warning", "p-charging-vector",
                    "p-access-network-info", "p-visited-network-id", "x-*")

GENERIC = Profile("generic")

#: Built-in profiles. Each changes only what its vendor documents.
BUILTIN_PROFILES: dict[str, Profile] = {
    "generic": GENERIC,
    # Cisco Unified CM SIP trunks send and read Remote-Party-ID ("Remote-Party-Id" is
    # checked by default on the SIP trunk page; P-Asserted-Identity is an option), carry
    # redirections in Diversion headers, use payload type 101 for RFC 2833/4733 events,
    # and put Cisco-Guid / Session-ID headers and a Cisco User-Agent on their messages.
    "cisco-cucm": Profile("cisco-cucm", identity=Identity.RPID, diversion=DiversionForm.DIVERSION,
                          strip_topology=True,
                          inbound=(HeaderRule(HeaderAction.REMOVE, "cisco-guid"),),
                          sdp=SdpRules(telephone_event_pt=101)),
    # Asterisk / FreePBX chan_sip and chan_pjsip peers with sendrpid=pai (the setting
    # their documentation recommends for trunks): P-Asserted-Identity and Privacy; DTMF
    # rfc2833 (RFC 4733) on payload type 101.
    "asterisk": Profile("asterisk", identity=Identity.PAI, sdp=SdpRules(telephone_event_pt=101)),
}


@dataclass(frozen=True)
class CommunitySignalling:
    community: str
    signalling: Signalling = Signalling.SIP
    profile: str = "generic"


@dataclass(frozen=True)
class GatewayConfig:
    """The ``profiles:`` section and each community's ``signalling`` / ``profile``."""

    profiles: tuple[Profile, ...] = ()                    # the built-ins, then the file's
    communities: tuple[CommunitySignalling, ...] = ()
    enabled: bool = False                                 # the gateway: section (the interworking B2BUA)
    sip_listen: tuple[str, int] = ("127.0.0.1", 5070)
    h323_listen: tuple[str, int] = ("127.0.0.1", 1730)
    pbx: tuple[tuple[str, str, int], ...] = ()            # (community, host, port) of its PBX's signalling
    no_answer_s: float = 180.0
    h245_timeout_s: float = 10.0                          # calls without fastStart: media settled by then
    trusted: tuple[str, ...] = ()                         # the MAM's own proxy / gatekeeper: calls admitted there

    def profile(self, name: str) -> Profile:
        for profile in reversed(self.profiles):
            if profile.name == name:
                return profile
        return BUILTIN_PROFILES.get(name, GENERIC)

    def of(self, community: str) -> CommunitySignalling:
        for entry in self.communities:
            if entry.community == community:
                return entry
        return CommunitySignalling(community)

    def profile_of(self, community: str) -> Profile:
        return self.profile(self.of(community).profile)

    @property
    def normalising(self) -> bool:
        """Whether any community's profile changes anything (else the proxy path is untouched)."""
        return any(not self.profile_of(c.community).changes_nothing for c in self.communities)

    @property
    def interworking(self) -> bool:
        return any(c.signalling is Signalling.H323 for c in self.communities)
