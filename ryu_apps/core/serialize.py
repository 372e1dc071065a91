"""Plain-data (JSON-ready) forms of the core's values, for the store and the REST API."""

from __future__ import annotations

from typing import Any

from .admission import ServiceLevel, SignallingProtocol
from .aggregate import Aggregate
from .autosize import Autosize
from .schedule import parse_schedule
from .calls import Call, CallState, MediaEndpoint
from .codec import MediaSpec


def aggregate_to_dict(aggregate: Aggregate) -> dict[str, Any]:
    return {
        "id": aggregate.id,
        "communities": list(aggregate.communities),
        "size_kbps": aggregate.size_kbps,
        "path": list(aggregate.path),
        "tag": aggregate.tag,
        "dscp": aggregate.dscp,
        "priority": aggregate.priority,
        "levels": sorted(level.label for level in aggregate.levels),
        "preemption": aggregate.preemption,
        "autosize": None if aggregate.autosize is None else aggregate.autosize.to_dict(),
        "schedule": [entry.to_dict() for entry in aggregate.schedule],
        "pinned": aggregate.pinned,
        "target_kbps": aggregate.target_kbps,
    }


def aggregate_from_dict(data: dict[str, Any]) -> Aggregate:
    a, b = data["communities"]
    return Aggregate(
        id=data["id"], communities=(a, b), size_kbps=int(data["size_kbps"]), path=tuple(data["path"]),
        tag=int(data["tag"]), dscp=int(data["dscp"]), priority=int(data["priority"]),
        levels=frozenset(ServiceLevel.parse(level) for level in data["levels"]),
        preemption=bool(data["preemption"]),
        autosize=None if data.get("autosize") is None else Autosize.from_dict(data["autosize"]),
        schedule=parse_schedule(data.get("schedule") or []), pinned=bool(data.get("pinned", False)),
        target_kbps=None if data.get("target_kbps") is None else int(data["target_kbps"]))


def media_to_dict(media: MediaSpec) -> dict[str, Any]:
    return {"codec": media.codec, "ptime_ms": media.ptime_ms, "explicit_kbps": media.explicit_kbps,
            "voice_band_data": media.voice_band_data, "ip_version": media.ip_version, "rtcp_bps": media.rtcp_bps}


def media_from_dict(data: dict[str, Any]) -> MediaSpec:
    explicit = data.get("explicit_kbps")
    return MediaSpec(codec=str(data["codec"]).lower(), ptime_ms=int(data.get("ptime_ms", 20)),
                     explicit_kbps=None if explicit is None else int(explicit),
                     voice_band_data=bool(data.get("voice_band_data", False)),
                     ip_version=int(data.get("ip_version") or 4),
                     rtcp_bps=None if data.get("rtcp_bps") is None else int(data["rtcp_bps"]))


def _endpoint(data: dict[str, Any] | None) -> MediaEndpoint | None:
    return None if data is None else MediaEndpoint(str(data["ip"]), int(data["port"]))


def call_to_dict(call: Call) -> dict[str, Any]:
    return {
        "call_id": call.call_id,
        "serial": call.serial,
        "aggregate_id": call.aggregate_id,
        "caller_community": call.caller_community,
        "callee_community": call.callee_community,
        "level": call.level.label,
        "media": media_to_dict(call.media),
        "kbps": call.kbps,
        "tag_to_caller": call.tag_to_caller,
        "tag_to_callee": call.tag_to_callee,
        "admitted_at": call.admitted_at,
        "state": call.state.value,
        "protocol": call.protocol.value,
        "dialog": None if call.dialog is None else dict(call.dialog),
        "caller_media": None if call.caller_media is None else {"ip": call.caller_media.ip,
                                                                 "port": call.caller_media.port},
        "callee_media": None if call.callee_media is None else {"ip": call.callee_media.ip,
                                                                 "port": call.callee_media.port},
    }


def call_from_dict(data: dict[str, Any]) -> Call:
    return Call(
        call_id=data["call_id"], serial=int(data["serial"]), aggregate_id=data["aggregate_id"],
        caller_community=data["caller_community"], callee_community=data["callee_community"],
        level=ServiceLevel.parse(data["level"]), media=media_from_dict(data["media"]), kbps=int(data["kbps"]),
        tag_to_caller=int(data["tag_to_caller"]), tag_to_callee=int(data["tag_to_callee"]),
        admitted_at=float(data["admitted_at"]), state=CallState(data["state"]),
        caller_media=_endpoint(data.get("caller_media")), callee_media=_endpoint(data.get("callee_media")),
        protocol=SignallingProtocol.parse(data.get("protocol", "rest")),
        dialog=data.get("dialog"))
