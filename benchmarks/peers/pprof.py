"""Where a Go program's CPU went, from its pprof CPU profile (``/debug/pprof/profile``: a
gzipped ``profile.proto``), without Go's tools: the share of samples under each of some
named functions (cumulative). For etcd started with ``--enable-pprof`` (bench_cluster.py
--profile)."""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Iterator

#: What etcd's CPU per transaction is spent on, through its JSON gateway (etcd 3.4).
ETCD = {
    "JSON gateway": "github.com/grpc-ecosystem/grpc-gateway/runtime.(*ServeMux).ServeHTTP",
    "of it Txn JSON decoding": "github.com/grpc-ecosystem/grpc-gateway/runtime.decodeJSONPb",
    "of it watch events to JSON": "github.com/grpc-ecosystem/grpc-gateway/runtime.ForwardResponseStream",
    "applying (mvcc, bbolt)": "go.etcd.io/etcd/etcdserver.(*EtcdServer).applyAll",
    "garbage collection": "runtime.gcBgMarkWorker",
}


def _varint(data: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[i]
        i += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, i


def _fields(data: bytes) -> Iterator[tuple[int, int | bytes]]:
    i = 0
    while i < len(data):
        key, i = _varint(data, i)
        number, kind = key >> 3, key & 7
        if kind == 0:
            value, i = _varint(data, i)
            yield number, value
        elif kind == 2:
            size, i = _varint(data, i)
            yield number, data[i:i + size]
            i += size
        elif kind in (1, 5):
            i += 8 if kind == 1 else 4
        else:
            raise ValueError(f"protobuf wire type {kind}")


def _ints(value: int | bytes) -> list[int]:
    if isinstance(value, int):
        return [value]
    out, i = [], 0
    while i < len(value):
        number, i = _varint(value, i)
        out.append(number)
    return out


def shares(path: Path, functions: dict[str, str]) -> tuple[float, dict[str, float]]:
    """Seconds sampled, and per label the share (0..1) of samples with its function on the stack."""
    data = gzip.decompress(path.read_bytes())
    samples: list[tuple[list[int], int]] = []
    locations: dict[int, list[int]] = {}
    names: dict[int, int] = {}
    strings: list[str] = []
    for number, value in _fields(data):
        if number == 2 and isinstance(value, bytes):            # Sample: location ids, values
            ids: list[int] = []
            values: list[int] = []
            for n, v in _fields(value):
                (ids if n == 1 else values if n == 2 else []).extend(_ints(v))
            samples.append((ids, values[-1] if values else 0))
        elif number == 4 and isinstance(value, bytes):          # Location: id, lines (function ids)
            lid, functions_of = 0, []
            for n, v in _fields(value):
                if n == 1 and isinstance(v, int):
                    lid = v
                elif n == 4 and isinstance(v, bytes):
                    functions_of += [x for m, x in _fields(v) if m == 1 and isinstance(x, int)]
            locations[lid] = functions_of
        elif number == 5 and isinstance(value, bytes):          # Function: id, name (string index)
            fields = {n: v for n, v in _fields(value) if isinstance(v, int)}
            names[fields.get(1, 0)] = fields.get(2, 0)
        elif number == 6 and isinstance(value, bytes):
            strings.append(value.decode("utf-8", "replace"))
    total = sum(v for _, v in samples) or 1
    wanted = {name: label for label, name in functions.items()}
    found = dict.fromkeys(functions, 0)
    for ids, value in samples:
        on_stack = {strings[names[f]] for lid in ids for f in locations.get(lid, ()) if f in names}
        for name in on_stack & wanted.keys():
            found[wanted[name]] += value
    return total / 1e9, {label: n / total for label, n in found.items()}
