"""mamctl: the media aggregation manager from the command line.

    mamctl check-config site.yaml                 # validate a configuration; starts nothing
    mamctl aggregates                             # tables for people
    mamctl --json calls --aggregate site-a--site-b  # JSON for scripts
    mamctl aggregate-create a-b site-a site-b 2000 --dscp 46
    mamctl call-release 'abc@pbx'
    mamctl cdrs --from 2026-12-01T00:00Z --csv    # call detail records (and refusals)
    mamctl report --from 2026-12-01 --to 2026-12-02  # usage per community and aggregate

The controller is at --url (or $MAM_URL, default http://127.0.0.1:8080); mutating commands
send --token (or $MAM_TOKEN) as a bearer token. Exit status: 0 done, 1 refused or
invalid (the message says why), 2 the controller could not be reached.
"""

from __future__ import annotations

import argparse
import json
import os
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Callable, Sequence, TextIO

DEFAULT_URL = "http://127.0.0.1:8080"


class CliError(Exception):
    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.code = code


class ConfigInvalid(CliError):
    """check-config's verdict, printed as ``FILE: key.path: message`` like a compiler's."""


class Client:
    def __init__(self, url: str, token: str | None, timeout: float, cacert: str | None = None) -> None:
        self.url, self.token, self.timeout = url.rstrip("/"), token, timeout
        parts = urllib.parse.urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise CliError(f"--url must look like http://HOST:PORT, got {url!r}", code=2)
        try:     # https: the system's CAs, or the controller's own CA (api.tls)
            self.context = ssl.create_default_context(cafile=cacert) if parts.scheme == "https" else None
        except OSError as error:
            raise CliError(f"--cacert {cacert}: {error.strerror or error}", code=2) from None

    def exchange(self, method: str, path: str, body: Any = None,
                 query: dict[str, str | None] | None = None) -> tuple[int, Any]:
        """One request under /mam/v1: its status and JSON body, whatever the status.
        Raises CliError only when the controller cannot be reached or does not answer JSON."""
        target = f"{self.url}/mam/v1{path}"
        if query:
            target += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(target, data=data, method=method)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self.context) as response:
                status, raw = response.status, response.read()
        except urllib.error.HTTPError as error:
            status, raw = error.code, error.read() if error.fp is not None else b""
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise CliError(f"cannot reach the controller at {self.url}: {reason} "
                           "(is ryu-manager running? see --url / $MAM_URL)", code=2)
        try:
            return status, json.loads(raw) if raw else None
        except ValueError:
            if status >= 400:
                return status, {"error": {"message": raw.decode("utf-8", "replace")[:200]}}
            raise CliError(f"{target} did not answer JSON (is --url the controller's REST API?)") from None

    def text(self, path: str, query: dict[str, str | None]) -> str:
        """A GET whose answer is text (CSV, JSON lines); a refusal becomes a CliError."""
        target = f"{self.url}/mam/v1{path}?" + urllib.parse.urlencode({k: v for k, v in query.items() if v is not None})
        request = urllib.request.Request(target)
        if self.token:
            request.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self.context) as response:
                return str(response.read().decode("utf-8"))
        except urllib.error.HTTPError:
            self.request("GET", path, query=query)        # the same request, to read the refusal
            raise CliError(f"{target}: unexpected answer") from None
        except (urllib.error.URLError, OSError) as error:
            reason = getattr(error, "reason", error)
            raise CliError(f"cannot reach the controller at {self.url}: {reason} "
                           "(is ryu-manager running? see --url / $MAM_URL)", code=2) from None

    def request(self, method: str, path: str, body: Any = None, query: dict[str, str | None] | None = None) -> Any:
        """The JSON body of a successful request; a refusal becomes a CliError saying why."""
        status, answer = self.exchange(method, path, body, query)
        if status < 400:
            return answer
        envelope = answer.get("error", {}) if isinstance(answer, dict) else {}
        if not isinstance(envelope, dict):
            envelope = {"message": str(envelope)}
        field = f" (field: {envelope['field']})" if envelope.get("field") else ""
        reason = envelope.get("reason", "")
        raise CliError(f"{status} {reason + ': ' if reason else ''}{envelope.get('message', '')}{field}")


def _path(value: str) -> str:
    return urllib.parse.quote(value, safe="")


# --- tables -------------------------------------------------------------------------------

def table(rows: Sequence[Sequence[Any]], headers: Sequence[str], out: TextIO) -> None:
    cells = [[str(h) for h in headers]] + [["" if c is None else str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for row in cells:
        out.write("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip() + "\n")
    if not rows:
        out.write("(none)\n")


def show_aggregates(body: Any, out: TextIO) -> None:
    items = body["aggregates"] if "aggregates" in body else [body]
    def autosize(a: Any) -> str:
        policy = a.get("autosize")
        return "-" if not policy else f"{policy['min_kbps']}..{policy['max_kbps']}/{policy['step_kbps']}"
    table([(a["id"], "<->".join(a["communities"]), "-".join(a["path"]), a["size_kbps"],
            a.get("target_kbps", a["size_kbps"]), a["used_kbps"], a["free_kbps"], a["calls"], a["dscp"], autosize(a))
           for a in items],
          ("ID", "COMMUNITIES", "PATH", "SIZE kbit/s", "TARGET", "USED", "FREE", "CALLS", "DSCP", "AUTOSIZE"), out)
    last = body.get("last_resize") if "aggregates" not in body else None
    if last:
        out.write(f"last change {last['at']}: {last['from_kbps']} -> {last['to_kbps']} kbit/s "
                  f"({last['direction']}): {last['reason']}\n")
    if "links" in body:
        out.write("\n")
        table([(f"{l['from']}->{l['to']}", l["capacity_kbps"], l["reservable_kbps"], l["reserved_kbps"])
               for l in body["links"]], ("LINK", "CAPACITY kbit/s", "RESERVABLE", "RESERVED (all pools)"), out)


def show_calls(body: Any, out: TextIO) -> None:
    items = body["calls"] if "calls" in body else [body.get("call", body)]

    def media(endpoint: Any) -> str:
        return "-" if not endpoint else f"{endpoint['ip']}:{endpoint['port']}"
    table([(c["call_id"], c["aggregate_id"], f"{c['caller_community']}->{c['callee_community']}", c["level"],
            c.get("protocol", "-"), c["media"]["codec"], c["kbps"], c["state"], media(c["caller_media"]),
            media(c["callee_media"]))
           for c in items], ("CALL", "AGGREGATE", "COMMUNITIES", "LEVEL", "PROTOCOL", "CODEC", "KBIT/S", "STATE",
                             "CALLER MEDIA", "CALLEE MEDIA"), out)


def show_communities(body: Any, out: TextIO) -> None:
    table([(c["name"], c["edge"], ",".join(map(str, c["access_ports"])), ",".join(c["prefixes"]),
            ",".join(c["domains"])) for c in body["communities"]],
          ("COMMUNITY", "EDGE", "ACCESS PORTS", "PREFIXES", "SIP DOMAINS"), out)


def show_topology(body: Any, out: TextIO) -> None:
    table([(s["name"], f"{s['dpid']:016x}" if isinstance(s["dpid"], int) else s["dpid"],
            "yes" if s.get("connected") else "no") for s in body["switches"]],
          ("SWITCH", "DPID", "CONNECTED"), out)
    out.write("\n")
    table([(f"{d['from']}->{d['to']}", l.get("state", "-"), l["capacity_kbps"],
            l.get("reservable_now_kbps", l["reservable_kbps"]), d["reserved_kbps"], d["free_kbps"])
           for l in body["links"] for d in l["directions"]],
          ("LINK", "STATE", "CAPACITY kbit/s", "RESERVABLE", "RESERVED", "FREE"), out)
    notes = [f"{l['a']}-{l['b']}: {l['state']}: {l['detail']}" for l in body["links"]
             if l.get("state") not in (None, "up", "verified")]
    notes += [f"{l['a']}-{l['b']}: {problem}" for l in body["links"] for problem in l.get("problems", ())]
    notes += [f"{u['a']}:{u['a_port']}-{u['b']}:{u['b_port']}: unconfigured: LLDP hears it; topology.links does "
              "not list it" for u in body.get("discovery", {}).get("unconfigured_links", ())]
    if notes:
        out.write("\n" + "".join(f"{note}\n" for note in notes))


def show_stats(body: Any, out: TextIO) -> None:
    rows = [(k, v) for k, v in body.items() if k != "rejected"]
    rows += [(f"rejected {reason}", count) for reason, count in body["rejected"].items()]
    table(rows, ("STATISTIC", "VALUE"), out)


# --- commands -----------------------------------------------------------------------------

def show_cdrs(text: str, out: TextIO) -> None:
    rows = []
    for line in text.splitlines():
        r = json.loads(line)
        if r["kind"] == "call":
            rows.append((r["released_at"], "call", r["call_id"], f"{r['caller_community']}->{r['callee_community']}",
                         r["aggregate_id"], f"{r['codec']} {r['kbps']}", f"{r['duration_s']:g}s", r["cause"]))
        else:
            rows.append((r["refused_at"], "refusal", r["call_id"], f"{r['caller_community']}->{r['callee_community']}",
                         r["aggregate_id"], r["codec"], "", f"{r['reason']}: {r['detail']}"))
    table(rows, ("AT (UTC)", "KIND", "CALL", "COMMUNITIES", "AGGREGATE", "CODEC kbit/s", "ANSWERED", "CAUSE"), out)


def show_report(body: Any, out: TextIO) -> None:
    out.write(f"usage from {body['from']} to {body['to']}\n")
    for section, title in (("communities", "COMMUNITY"), ("aggregates", "AGGREGATE")):
        out.write("\n")
        table([(name, u["calls"], f"{u['minutes']:.1f}", u["peak_concurrent"], u["peak_kbps"], u["p95_kbps"],
                u["refused"], f"{100 * u['blocking_rate']:.2f}%",
                ", ".join(f"{k} {v}" for k, v in u["refusals"].items()))
               for name, u in body[section].items()],
              (title, "CALLS", "MINUTES", "PEAK CALLS", "PEAK kbit/s", "P95 kbit/s", "REFUSED", "BLOCKING",
               "REFUSALS BY REASON"), out)


def check_config(args: argparse.Namespace, out: TextIO) -> int:
    from .config import ConfigError, build_manager, load_config
    from .core.errors import MamError
    from .core.store import MemoryLedger
    try:
        config = load_config(args.file)
        manager = build_manager(config, MemoryLedger())  # the aggregates must also fit the links
    except ConfigError as error:  # names the key: communities[1].prefixes[0]
        raise ConfigInvalid(f"{args.file}: {error.path + ': ' if error.path else ''}{error.message}") from None
    except MamError as error:
        raise ConfigInvalid(f"{args.file}: {error.field or 'aggregates'}: {error.message}") from None
    except OSError as error:
        raise ConfigInvalid(f"{args.file}: {error.strerror}") from None
    topology = config.topology
    if args.json:
        out.write(json.dumps({
            "file": args.file, "ok": True,
            "switches": [{"name": s.name, "dpid": s.dpid} for s in topology.switches],
            "links": [{"a": l.a, "b": l.b, "capacity_kbps": l.capacity_kbps, "reservable_kbps": l.reservable_kbps}
                      for l in topology.links],
            "communities": [{"name": c.name, "edge": c.edge, "prefixes": [str(p) for p in c.prefixes],
                             "domains": list(c.domains)} for c in topology.communities],
            "aggregates": [{"id": a.id, "communities": list(a.communities), "size_kbps": a.size_kbps,
                            "dscp": a.dscp, "path": list(a.path)} for a in manager.aggregates()],
        }, indent=2, sort_keys=True) + "\n")
        return 0
    out.write(f"{args.file}: OK - {len(topology.switches)} switches, {len(topology.links)} links, "
              f"{len(topology.communities)} communities, {len(config.aggregates)} aggregates\n")
    for switch in topology.switches:
        out.write(f"  switch {switch.name}: dpid {switch.dpid:016x}\n")
    for link in topology.links:
        out.write(f"  link {link.a}:{link.a_port} <-> {link.b}:{link.b_port}: {link.capacity_kbps} kbit/s, "
                  f"{link.reservable_kbps} reservable\n")
    for community in topology.communities:
        out.write(f"  community {community.name}: edge {community.edge}, "
                  f"prefixes {','.join(str(p) for p in community.prefixes)}"
                  + (f", domains {','.join(community.domains)}" if community.domains else "") + "\n")
    for aggregate in manager.aggregates():
        out.write(f"  aggregate {aggregate.id}: {' <-> '.join(aggregate.communities)}, {aggregate.size_kbps} kbit/s, "
                  f"DSCP {aggregate.dscp}, path {'-'.join(aggregate.path)}\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mamctl", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n".join(__doc__.splitlines()[2:]))
    parser.add_argument("--url", default=os.environ.get("MAM_URL") or DEFAULT_URL,
                        help="the controller's REST API (default: $MAM_URL or %(default)s)")
    parser.add_argument("--cacert", default=os.environ.get("MAM_CACERT") or None,
                        help="CA certificate (PEM) that signed the controller's api.tls certificate "
                             "(default: $MAM_CACERT, else the system's CAs)")
    parser.add_argument("--token", default=os.environ.get("MAM_TOKEN") or None,
                        help="bearer token for changes (default: $MAM_TOKEN)")
    parser.add_argument("--json", action="store_true", help="print the API's JSON, for scripts")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds per request (default: %(default)s)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = sub.add_parser("check-config", help="validate a configuration file without starting anything")
    check.add_argument("file")
    sub.add_parser("communities", help="list communities")
    sub.add_parser("topology", help="switches and links with reserved and free capacity")
    aggregates = sub.add_parser("aggregates", help="list aggregates, or show one with its links")
    aggregates.add_argument("id", nargs="?")
    create = sub.add_parser("aggregate-create", help="reserve a new aggregate between two communities")
    create.add_argument("id")
    create.add_argument("a")
    create.add_argument("b")
    create.add_argument("size_kbps", type=int)
    create.add_argument("--dscp", type=int)
    create.add_argument("--priority", type=int)
    create.add_argument("--preemption", action="store_true")
    create.add_argument("--levels", help="comma-separated: emergency,voice,voice-band-data")
    create.add_argument("--path", help="comma-separated switch names")
    create.add_argument("--autosize", metavar="MIN,MAX,STEP[,GROW_AT,SHRINK_AT,HOLD_S]",
                        help="follow demand between MIN and MAX kbit/s by STEP (size_kbps is where it starts)")
    resize = sub.add_parser("aggregate-resize", help="grow or shrink an aggregate")
    resize.add_argument("id")
    resize.add_argument("size_kbps", type=int)
    autosize = sub.add_parser("aggregate-autosize", help="make an aggregate follow demand, or stop (--off)")
    autosize.add_argument("id")
    autosize.add_argument("policy", nargs="?", metavar="MIN,MAX,STEP[,GROW_AT,SHRINK_AT,HOLD_S]")
    autosize.add_argument("--off", action="store_true", help="stop following demand; the size stays")
    reoptimize = sub.add_parser("aggregate-reoptimize",
                                help="move an aggregate to the fewest-hop path that holds it, now")
    reoptimize.add_argument("id")
    delete = sub.add_parser("aggregate-delete", help="release an aggregate")
    delete.add_argument("id")
    delete.add_argument("--force", action="store_true", help="also release the calls on it")
    calls = sub.add_parser("calls", help="list calls")
    calls.add_argument("--aggregate")
    call = sub.add_parser("call", help="show one call")
    call.add_argument("id")
    admit = sub.add_parser("call-admit", help="ask for admission of a call (as an IP-PBX would)")
    admit.add_argument("id")
    admit.add_argument("caller_community")
    admit.add_argument("callee_community")
    admit.add_argument("--codec", default="pcmu")
    admit.add_argument("--ptime", type=int)
    admit.add_argument("--kbps", type=int, help="explicit bandwidth instead of the codec's")
    admit.add_argument("--level", default="voice")
    admit.add_argument("--caller-media", help="IP:PORT")
    admit.add_argument("--callee-media", help="IP:PORT")
    release = sub.add_parser("call-release", help="release a call")
    release.add_argument("id")
    release.add_argument("--cause")
    sub.add_parser("stats", help="admission counters and pool totals")
    records = sub.add_parser("cdrs", help="call detail records and refusals made in a period")
    report = sub.add_parser("report", help="usage per community and aggregate over a period")
    for command in (records, report):
        command.add_argument("--from", dest="start", help="ISO 8601 time (UTC unless it says) or epoch seconds")
        command.add_argument("--to", dest="end", help="ISO 8601 time or epoch seconds (report default: now)")
    records.add_argument("--community")
    report.add_argument("--png", metavar="FILE", help="also draw one aggregate's use and refusals (needs matplotlib)")
    report.add_argument("--aggregate", help="the aggregate --png draws (default: the only one)")
    records.add_argument("--csv", action="store_true", help="CSV with a header line (default: a table)")
    return parser


def _autosize(text: str) -> dict[str, Any]:
    """MIN,MAX,STEP[,GROW_AT,SHRINK_AT,HOLD_S] as the API's autosize object (it checks the values)."""
    parts = [part.strip() for part in text.split(",")]
    names = ("min_kbps", "max_kbps", "step_kbps", "grow_at", "shrink_at", "hold_s")
    if not 3 <= len(parts) <= len(names):
        raise CliError(f"autosize {text!r}: expected MIN,MAX,STEP[,GROW_AT,SHRINK_AT,HOLD_S]", code=2)
    policy: dict[str, Any] = {}
    for name, part in zip(names, parts):
        try:
            policy[name] = int(part) if name.endswith("_kbps") else float(part)
        except ValueError:
            raise CliError(f"autosize {text!r}: {name} must be a number, not {part!r}", code=2) from None
    return policy


def _chart(client: Client, args: argparse.Namespace, report: Any, out: TextIO) -> None:
    from datetime import datetime
    from .charts import pool_chart
    from .core.cdr import CDR, from_dict
    pools = [a["id"] for a in client.request("GET", "/aggregates")["aggregates"]]
    name = args.aggregate or (pools[0] if len(pools) == 1 else None)
    if name is None:
        raise CliError(f"--png: name the aggregate to draw with --aggregate (one of {', '.join(pools) or 'none'})")
    pool = client.request("GET", f"/aggregates/{_path(name)}")
    start, end = (datetime.fromisoformat(report[key].replace("Z", "+00:00")).timestamp() for key in ("from", "to"))
    rows = client.request("GET", "/cdrs", query={"from": report["from"], "format": "json"})["cdrs"]
    records = []
    for row in rows:
        for key in ("admitted_at", "answered_at", "released_at", "refused_at"):
            if row.get(key):
                row[key] = datetime.fromisoformat(row[key].replace("Z", "+00:00")).timestamp()
        records.append(from_dict(row))
    for call in client.request("GET", "/calls", query={"aggregate": name})["calls"]:      # still up: held to now
        records.append(CDR(call["call_id"], call["protocol"], call["caller_community"], call["callee_community"],
                           name, call["level"], call["media"]["codec"], call["kbps"], call["admitted_at"], None,
                           end, "in-progress"))
    try:
        pool_chart(args.png, name, pool["size_kbps"], records, start, end)
    except (RuntimeError, OSError) as error:
        raise CliError(f"--png {args.png}: {error}") from None
    out.write(f"chart of {name} written to {args.png}\n")


def _endpoint(text: str | None, name: str) -> dict[str, Any] | None:
    if text is None:
        return None
    host, _, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):  # [2001:db8::1]:4000
        host = host[1:-1]
    if not host or not port.isdigit():
        raise CliError(f"--{name}: expected IP:PORT (or [IPv6]:PORT), got {text!r}")
    return {"ip": host, "port": int(port)}


def run(args: argparse.Namespace, out: TextIO) -> int:
    if args.command == "check-config":
        return check_config(args, out)
    client = Client(args.url, args.token, args.timeout, args.cacert)
    show: Callable[[Any, TextIO], None] | None = None
    if args.command == "communities":
        body, show = client.request("GET", "/communities"), show_communities
    elif args.command == "topology":
        body, show = client.request("GET", "/topology"), show_topology
    elif args.command == "aggregates":
        body = client.request("GET", f"/aggregates/{_path(args.id)}" if args.id else "/aggregates")
        show = show_aggregates
    elif args.command == "aggregate-create":
        request: dict[str, Any] = {"id": args.id, "communities": [args.a, args.b], "size_kbps": args.size_kbps}
        for key in ("dscp", "priority"):
            if getattr(args, key) is not None:
                request[key] = getattr(args, key)
        if args.preemption:
            request["preemption"] = True
        if args.levels:
            request["levels"] = [level.strip() for level in args.levels.split(",")]
        if args.path:
            request["path"] = [switch.strip() for switch in args.path.split(",")]
        if args.autosize:
            request["autosize"] = _autosize(args.autosize)
        body, show = client.request("POST", "/aggregates", request), show_aggregates
    elif args.command == "aggregate-autosize":
        if args.off == (args.policy is not None):
            raise CliError("give a policy MIN,MAX,STEP[,GROW_AT,SHRINK_AT,HOLD_S] or --off")
        body = client.request("PATCH", f"/aggregates/{_path(args.id)}",
                              {"autosize": None if args.off else _autosize(args.policy)})
        show = show_aggregates
    elif args.command == "aggregate-reoptimize":
        body = client.request("POST", f"/aggregates/{_path(args.id)}/reoptimize")
        show = show_aggregates
        if not args.json:
            out.write(f"aggregate {args.id}: " + ("moved to " + "-".join(body["path"]) if body.get("moved")
                                                  else "already on its best path") + "\n")
    elif args.command == "aggregate-resize":
        body = client.request("PATCH", f"/aggregates/{_path(args.id)}", {"size_kbps": args.size_kbps})
        show = show_aggregates
    elif args.command == "aggregate-delete":
        client.request("DELETE", f"/aggregates/{_path(args.id)}", query={"force": "true" if args.force else None})
        body = {"released": {"aggregate": args.id}}
        if not args.json:
            out.write(f"aggregate {args.id} released\n")
    elif args.command == "calls":
        body, show = client.request("GET", "/calls", query={"aggregate": args.aggregate}), show_calls
    elif args.command == "call":
        body, show = client.request("GET", f"/calls/{_path(args.id)}"), show_calls
    elif args.command == "call-admit":
        media: dict[str, Any] = {"codec": args.codec}
        if args.ptime is not None:
            media["ptime_ms"] = args.ptime
        if args.kbps is not None:
            media["explicit_kbps"] = args.kbps
        request = {"call_id": args.id, "caller_community": args.caller_community,
                   "callee_community": args.callee_community, "media": media, "level": args.level}
        caller, callee = _endpoint(args.caller_media, "caller-media"), _endpoint(args.callee_media, "callee-media")
        if caller and callee:
            request.update(caller_media=caller, callee_media=callee)
        elif caller or callee:
            raise CliError("give both --caller-media and --callee-media, or neither")
        body, show = client.request("POST", "/calls", request), show_calls
    elif args.command == "call-release":
        client.request("DELETE", f"/calls/{_path(args.id)}", query={"cause": args.cause})
        body = {"released": {"call": args.id}}
        if not args.json:
            out.write(f"call {args.id} released\n")
    elif args.command == "cdrs":
        query = {"from": args.start, "to": args.end, "community": args.community}
        if args.csv or args.json:       # the controller's own export, byte for byte
            out.write(client.text("/cdrs", {**query, "format": "csv" if args.csv else "jsonl"}))
            return 0
        show_cdrs(client.text("/cdrs", {**query, "format": "jsonl"}), out)
        return 0
    elif args.command == "report":
        body, show = client.request("GET", "/reports/usage", query={"from": args.start, "to": args.end}), show_report
        if args.png:
            _chart(client, args, body, out)
    else:  # stats
        body, show = client.request("GET", "/stats"), show_stats
    if args.json:
        out.write(json.dumps(body, indent=2, sort_keys=True) + "\n")
    elif show is not None:
        show(body, out)
    return 0


def main(argv: Sequence[str] | None = None, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run mamctl; returns the exit status (0 done, 1 refused or invalid, 2 unreachable or usage)."""
    out, err = out or sys.stdout, err or sys.stderr
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exit_:  # --help (0) or a usage error (2, argparse printed why)
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        return run(args, out)
    except ConfigInvalid as error:
        err.write(f"{error}\n")
        return error.code
    except CliError as error:
        err.write(f"mamctl: error: {error}\n")
        return error.code
    except BrokenPipeError:  # mamctl calls | head
        return 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
