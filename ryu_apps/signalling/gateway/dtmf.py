"""DTMF as the two legs carry it: H.245 userInputIndication and SIP INFO bodies."""

from __future__ import annotations

from typing import Any

DIGITS = "0123456789*#ABCD"
RFC4733_EVENTS = {str(i): str(i) for i in range(10)} | {"10": "*", "11": "#", "12": "A", "13": "B", "14": "C",
                                                        "15": "D"}


def user_input(kind: str, value: Any) -> tuple[str | None, int]:
    """(digit, duration ms) of an H.245 userInputIndication, or (None, 0)."""
    if kind != "indication" or not isinstance(value, tuple) or value[0] != "userInput":
        return None, 0
    choice = value[1]
    if not isinstance(choice, tuple) or len(choice) != 2:
        return None, 0
    if choice[0] == "alphanumeric" and isinstance(choice[1], str) and choice[1][:1].upper() in DIGITS:
        return choice[1][:1].upper(), 100
    if choice[0] == "signal" and isinstance(choice[1], dict):
        digit = str(choice[1].get("signalType", ""))[:1].upper()
        duration = choice[1].get("duration", 100)
        if digit and digit in DIGITS:
            return digit, duration if isinstance(duration, int) and 1 <= duration <= 65535 else 100
    return None, 0


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
