"""DTMF as the two legs carry it: H.245 userInputIndication and SIP INFO bodies."""

from __future__ import annotations

from ..h323.h245 import DIGITS, user_input

RFC4733_EVENTS = {str(i): str(i) for i in range(10)} | {"10": "*", "11": "#", "12": "A", "13": "B", "14": "C",
                                                        "15": "D"}

__all__ = ["DIGITS", "RFC4733_EVENTS", "dtmf_body", "user_input"]


def dtmf_body(body: bytes, content_type: str) -> tuple[str | None, int]:
    """(digit, duration ms) of an INFO body: ``Signal=5`` / ``Duration=160`` (dtmf-relay, as
    Cisco and most PBXs send it) or a bare digit / RFC 4733 event number (application/dtmf)."""
    text = body.decode("ascii", "replace")
    if content_type == "application/dtmf":
        value = text.strip().upper()
        value = RFC4733_EVENTS.get(value, value)
        return (value, 100) if len(value) == 1 and value in DIGITS else (None, 0)
    digit, duration = None, 100
    for line in text.splitlines():
        key, _, value = line.partition("=")
        key, value = key.strip().lower(), value.strip()
        if key == "signal":
            value = RFC4733_EVENTS.get(value, value).upper()
            digit = value if len(value) == 1 and value in DIGITS else None
        elif key == "duration" and value.isdigit() and 1 <= int(value) <= 65535:
            duration = int(value)
    return digit, duration
