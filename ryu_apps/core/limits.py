"""What the controller accepts, defined once.

The configuration file, the REST API (and its OpenAPI document, kept equal by a test)
and the core check the same ranges, so a value one of them takes is never refused by
another. Ranges are inclusive ``(low, high)``; lengths are maximum characters.
"""

from __future__ import annotations

from .errors import InvalidRequest

ID_LENGTH = 64                       # aggregate ids, community and switch names
ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9._-]*"
CALL_ID_LENGTH = 256                 # a SIP Call-ID, an H.323 callIdentifier in text
CODEC_NAME_LENGTH = 32
SIZE_KBPS = (1, 100_000_000)         # an aggregate: up to 100 Gbit/s
LINK_KBPS = (1, 1_000_000_000)       # a link's capacity: up to 1 Tbit/s
PRIORITY = (-1000, 1000)             # an aggregate's priority (higher is placed and moved first)
DSCP = (0, 63)
PCP = (0, 7)
SWITCH_PORT = (1, 0xFFFFFF00)        # OpenFlow 1.3 port numbers below the reserved range
UDP_PORT = (1, 65535)
PTIME_MS = (1, 1000)
EXPLICIT_KBPS = (1, 10_000_000)
RTCP_BPS = (0, 10_000_000)


def check(name: str, value: int, bounds: tuple[int, int]) -> int:
    """``value`` if it is within ``bounds``; else InvalidRequest naming ``name``."""
    low, high = bounds
    if not low <= value <= high:
        raise InvalidRequest(f"must be {low}..{high}, not {value}", field=name)
    return value
