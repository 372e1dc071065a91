"""CPU per call of the SIP proxy core, in process (no sockets, no loop): microseconds per ladder.

    python benchmarks/bench_sip_message.py [--calls 4000] [--rounds 5] [--rate 1000] [--profile]
                                           [--baseline DIR] [--instructions CALLS]

One ladder is a whole call through the record-routing stateful proxy as SIPp drives it in
``bench_sip_peers.py`` (``uac_call_txn.xml`` / ``uas_answer_txn.xml``): INVITE with SDP in,
100 Trying back, INVITE on (Via pushed, Record-Route added, admission asked), 180 and 200
with SDP back (Via popped, media attached), ACK on along the route set, BYE on (release),
200 back; and the timers that end the transactions (the fake clock advances 1/rate per
call). The proxy is built as ``python -m ryu_apps.signalling.sip --config`` builds it
(in-process admission by the manager, normaliser, the same garbage-collector settings).
Only the proxy's own calls are timed (``receive`` and ``handle_timer``, thread CPU time); the peers' messages
are built between them. Also timed apart: ``parse_message`` of the ladder's seven incoming
messages and ``serialize`` of them (what a message costs before the proxy's logic).

Each ladder's outputs are checked (who gets what, admitted = released), so a proxy that
stopped doing its job cannot look fast. It also prints the size of the proxy's timer heap
after the round's calls, against its live deadlines: a cancelled deadline waits in the heap
(holding its owner, e.g. an ended call's record behind its 4-hour lifetime timer) until it
is compacted away or would have passed. ``--baseline DIR`` runs the same ladder against the
code in DIR (e.g. a detached worktree of main) in a child process, alternating rounds with
this tree, and prints the ratio per round. ``--instructions CALLS`` counts instead of timing:
each tree runs the ladder under valgrind (callgrind), CALLS ladders and none, and the
difference per ladder is printed — on a shared machine the clock varies by 10-20 % from run
to run, the instruction count does not.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
CALLER = ("udp", "127.0.0.1", 5061)
CALLEE = ("udp", "127.0.0.1", 5070)
PROXY_PORT = 5060

SITE = """topology:
  switches: [{name: s1, dpid: 1}, {name: s2, dpid: 2}]
  links: [{a: s1, a_port: 1, b: s2, b_port: 1, capacity_kbps: 200000000}]
communities:
  - {name: site-a, edge: s1, access_ports: [2], prefixes: [10.1.0.0/16], domains: [site-a.example]}
  - {name: site-b, edge: s2, access_ports: [2], prefixes: [10.2.0.0/16], domains: [site-b.example]}
aggregates:
  - {id: a-b, between: [site-a, site-b], size_kbps: 100000000}
codecs: {allowed: [pcmu, pcma, g729]}
sip:
  listen: 127.0.0.1:5060
  transports: [udp]
  routes: {site-b.example: "127.0.0.1:5070"}
"""

OFFER = ("v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
         "m=audio 6000 RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
         "a=ptime:20\r\n")
ANSWER = ("v=0\r\no=user1 53655765 2353687637 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
          "m=audio 6002 RTP/AVP 0\r\n")


def invite(i: int) -> bytes:
    return (f"INVITE sip:bob@site-b.example SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:5061;branch=z9hG4bK-4242-{i}-0\r\n"
            f"From: sipp <sip:sipp@site-a.example>;tag=4242SIPpTag00{i}\r\n"
            f"To: <sip:bob@site-b.example>\r\n"
            f"Call-ID: {i}-4242@127.0.0.1\r\n"
            f"CSeq: 1 INVITE\r\n"
            f"Contact: <sip:sipp@127.0.0.1:5061;transport=UDP>\r\n"
            f"Max-Forwards: 70\r\n"
            f"Content-Type: application/sdp\r\n"
            f"Content-Length: {len(OFFER)}\r\n\r\n{OFFER}").encode()


def _lines(data: bytes) -> tuple[str, list[str]]:
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    lines = head.split("\r\n")
    return lines[0], lines[1:]


def _named(lines: list[str], *names: str) -> list[str]:
    return [line for line in lines if line.split(":", 1)[0].strip().lower() in names]


def uas_response(forwarded: bytes, status: str, *, to_tag: str | None, body: str = "",
                 record_route: bool = True) -> bytes:
    """What SIPp's uas_answer_txn.xml answers: last Via/From/To(+tag)/Call-ID/CSeq/Record-Route."""
    _, lines = _lines(forwarded)
    out = [f"SIP/2.0 {status}"]
    out += _named(lines, "via", "v")
    out += _named(lines, "from", "f")
    to = _named(lines, "to", "t")[0]
    out.append(to + (f";tag={to_tag}" if to_tag else ""))
    out += _named(lines, "call-id", "i")
    out += _named(lines, "cseq")
    if record_route:
        out += _named(lines, "record-route")
        out.append("Contact: <sip:127.0.0.1:5070;transport=UDP>")
    if body:
        out.append("Content-Type: application/sdp")
    out.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(out) + "\r\n\r\n" + body).encode()


def uac_in_dialog(method: str, i: int, cseq: int, ok: bytes, branch: str) -> bytes:
    """SIPp's ACK / BYE: [next_url] (the 200's Contact), [last_To:], [routes] (its Record-Route)."""
    _, lines = _lines(ok)
    to = _named(lines, "to", "t")[0]
    routes = [line.split(":", 1)[1].strip() for line in _named(lines, "record-route")]
    route = f"Route: {', '.join(reversed(routes))}\r\n" if routes else ""
    return (f"{method} sip:127.0.0.1:5070;transport=UDP SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP 127.0.0.1:5061;branch={branch}\r\n"
            f"From: sipp <sip:sipp@site-a.example>;tag=4242SIPpTag00{i}\r\n"
            f"{to}\r\n{route}"
            f"Call-ID: {i}-4242@127.0.0.1\r\n"
            f"CSeq: {cseq} {method}\r\n"
            f"Contact: <sip:sipp@127.0.0.1:5061;transport=UDP>\r\n"
            f"Max-Forwards: 70\r\n"
            f"Content-Length: 0\r\n\r\n").encode()


def build_proxy(workdir: Path) -> Any:
    from ryu_apps.signalling.sip import command
    config = workdir / "site.yaml"
    config.write_text(SITE)
    args = command.build_parser().parse_args(["--config", str(config)])
    server, _ = command.build_server(args)
    if hasattr(command, "fast_loop"):         # a tree from before signalling/event_loop.py
        command.fast_loop()
    else:                                     # the standalone proxy's collector schedule (not its sweeps)
        from ryu_apps import gc_tuning
        gc_tuning.tune()
    return server.proxy


class LadderError(AssertionError):
    pass


def _expect(sends: list[Any], want: list[tuple[str, tuple[str, str, int]]], step: str) -> list[bytes]:
    got = [(bytes(s.data)[:12].decode(errors="replace"), (s.peer.transport, s.peer.host, s.peer.port))
           for s in sends]
    if len(got) != len(want) or any(not g[0].startswith(w[0]) or g[1] != w[1] for g, w in zip(got, want)):
        raise LadderError(f"{step}: expected {want}, the proxy sent {got}")
    return [bytes(s.data) for s in sends]


def run_ladders(proxy: Any, calls: int, rate: float, start: int, clock: list[float]) -> float:
    """``calls`` whole ladders; returns the CPU seconds spent inside the proxy."""
    from ryu_apps.signalling.sip.transaction import Peer
    caller, callee = Peer(*CALLER), Peer(*CALLEE)
    c, u = CALLER, CALLEE
    step = 1.0 / rate
    spent = 0.0
    perf = time.thread_time          # CPU of this thread: other processes' load does not count
    receive, next_timer, handle_timer = proxy.receive, proxy.next_timer, proxy.handle_timer
    for i in range(start, start + calls):
        now = clock[0] = clock[0] + step
        data = invite(i)
        t0 = perf()
        out = receive(data, caller, now)
        spent += perf() - t0
        trying, forwarded = _expect(out, [("SIP/2.0 100", c), ("INVITE", u)], "INVITE")
        ringing = uas_response(forwarded, "180 Ringing", to_tag=f"4242SIPpTag01{i}")
        t0 = perf()
        out = receive(ringing, callee, now)
        spent += perf() - t0
        _expect(out, [("SIP/2.0 180", c)], "180")
        ok = uas_response(forwarded, "200 OK", to_tag=f"4242SIPpTag01{i}", body=ANSWER)
        t0 = perf()
        out = receive(ok, callee, now)
        spent += perf() - t0
        (upstream_ok,) = _expect(out, [("SIP/2.0 200", c)], "200 to INVITE")
        ack = uac_in_dialog("ACK", i, 1, upstream_ok, f"z9hG4bK-4242-{i}-5")
        t0 = perf()
        out = receive(ack, caller, now)
        spent += perf() - t0
        _expect(out, [("ACK", u)], "ACK")
        bye = uac_in_dialog("BYE", i, 2, upstream_ok, f"z9hG4bK-4242-{i}-6")
        t0 = perf()
        out = receive(bye, caller, now)
        spent += perf() - t0
        (bye_on,) = _expect(out, [("BYE", u)], "BYE")
        bye_ok = uas_response(bye_on, "200 OK", to_tag=None, record_route=False)
        t0 = perf()
        out = receive(bye_ok, callee, now)
        due = next_timer()
        if due is not None and due <= now:
            out += handle_timer(now)
        spent += perf() - t0
        _expect(out, [("SIP/2.0 200", c)], "200 to BYE")
    return spent


def drain(proxy: Any, clock: list[float]) -> float:
    """Let every transaction timer run out (part of each call's cost)."""
    clock[0] += 120.0
    t0 = time.thread_time()
    while True:
        due = proxy.next_timer()
        if due is None or due > clock[0]:
            break
        proxy.handle_timer(clock[0])
    return time.thread_time() - t0


def ladder_messages(proxy: Any) -> list[bytes]:
    """The seven messages the proxy receives in one ladder (from a fresh call through ``proxy``)."""
    from ryu_apps.signalling.sip.transaction import Peer
    i = 10 ** 8
    first = proxy.receive(invite(i), Peer(*CALLER), 0.0)
    forwarded = bytes(first[1].data)
    ringing = uas_response(forwarded, "180 Ringing", to_tag="t")
    ok = uas_response(forwarded, "200 OK", to_tag="t", body=ANSWER)
    proxy.receive(ringing, Peer(*CALLEE), 0.0)
    upstream_ok = bytes(proxy.receive(ok, Peer(*CALLEE), 0.0)[0].data)
    ack = uac_in_dialog("ACK", i, 1, upstream_ok, "z9hG4bK-a")
    bye = uac_in_dialog("BYE", i, 2, upstream_ok, "z9hG4bK-b")
    proxy.receive(ack, Peer(*CALLER), 0.0)
    bye_on = bytes(proxy.receive(bye, Peer(*CALLER), 0.0)[0].data)
    bye_ok = uas_response(bye_on, "200 OK", to_tag=None, record_route=False)
    proxy.receive(bye_ok, Peer(*CALLEE), 0.0)
    return [invite(i), ringing, ok, ack, bye, bye_ok]


def codec_cost(messages: list[bytes], repeat: int) -> tuple[float, float]:
    """Microseconds per ladder for parse_message, and for serialize, of its incoming messages."""
    from ryu_apps.signalling.sip.message import parse_message, serialize
    parsed = [parse_message(m) for m in messages]
    t0 = time.thread_time()
    for _ in range(repeat):
        for m in messages:
            parse_message(m)
    parse_us = (time.thread_time() - t0) / repeat * 1e6
    t0 = time.thread_time()
    for _ in range(repeat):
        for p in parsed:
            serialize(p)
    return parse_us, (time.thread_time() - t0) / repeat * 1e6


def child(calls: int, rounds: int, rate: float, profile: bool) -> list[dict[str, Any]]:
    import ryu_apps
    results = []
    with tempfile.TemporaryDirectory(prefix="bench-sip-msg-") as tmp:
        for round_no in range(rounds):
            proxy = build_proxy(Path(tmp))
            clock = [1000.0]
            run_ladders(proxy, 200, rate, 0, clock)          # warm-up (caches, admission's pool)
            drain(proxy, clock)
            profiler = None
            if profile and round_no == 0:
                import cProfile
                profiler = cProfile.Profile()
                profiler.enable()
            cpu0 = time.process_time()
            spent = run_ladders(proxy, calls, rate, 1000, clock)
            heap = (len(proxy._timers._heap), len(proxy._timers))     # entries, live deadlines
            spent += drain(proxy, clock)
            cpu = time.process_time() - cpu0
            if profiler is not None:
                profiler.disable()
                import pstats
                print("cProfile of one round (times inflated by the profiler):", file=sys.stderr)
                pstats.Stats(profiler, stream=sys.stderr).sort_stats("tottime").print_stats(30)
            stats = proxy.stats
            if stats.admitted != calls + 200 or stats.released != calls + 200 or stats.internal_errors:
                raise LadderError(f"admitted {stats.admitted}, released {stats.released}, "
                                  f"internal errors {stats.internal_errors} for {calls + 200} calls")
            if proxy.open_transactions() or proxy.calls:
                raise LadderError(f"{proxy.open_transactions()} transactions and {len(proxy.calls)} calls left")
            parse_us, serialize_us = codec_cost(ladder_messages(proxy), 2000)
            results.append({"code": str(Path(ryu_apps.__file__).parent.parent), "ladder_us": spent / calls * 1e6,
                            "cpu_us": cpu / calls * 1e6, "parse_us": parse_us, "serialize_us": serialize_us,
                            "heap": heap})
            gc.unfreeze()
            gc.collect()
    return results


def count_child(calls: int) -> None:
    """What runs under valgrind: 100 warm-up ladders, then ``calls`` more; no timing."""
    with tempfile.TemporaryDirectory(prefix="bench-sip-msg-") as tmp:
        proxy = build_proxy(Path(tmp))
        clock = [1000.0]
        run_ladders(proxy, 100, 1000.0, 0, clock)
        drain(proxy, clock)
        if calls:
            run_ladders(proxy, calls, 1000.0, 1000, clock)
            drain(proxy, clock)


def instructions(code: Path, calls: int) -> float:
    """Instructions per ladder (valgrind's count, not a clock: other load does not change it):
    a run of ``calls`` ladders less a run of none, over ``calls``. The peers' side (building
    the messages, checking the outputs) is counted too; it is the same code for both trees."""
    counts = []
    for n in (0, calls):
        command = ["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", sys.executable, __file__,
                   "--count", str(n)]
        done = subprocess.run(command, env=dict(os.environ, PYTHONPATH=str(code)), capture_output=True, text=True,
                              timeout=1800)
        found = [line for line in done.stderr.splitlines() if "Collected :" in line]
        if done.returncode != 0 or not found:
            raise RuntimeError(f"valgrind run on {code} failed:\n{done.stderr[-2000:]}")
        counts.append(int(found[-1].rsplit(":", 1)[1].strip()))
    return (counts[1] - counts[0]) / calls


def run_child(code: Path, args: argparse.Namespace, rounds: int, profile: bool = False) -> list[dict[str, Any]]:
    env = dict(os.environ, PYTHONPATH=str(code))
    command = [sys.executable, __file__, "--child", "--calls", str(args.calls), "--rounds", str(rounds),
               "--rate", str(args.rate)] + (["--profile"] if profile else [])
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        raise RuntimeError(f"ladder run on {code} failed:\n{done.stderr[-3000:]}")
    if done.stderr:
        print(done.stderr, end="", file=sys.stderr)
    result: list[dict[str, Any]] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def show(label: str, row: dict[str, Any]) -> str:
    return (f"{label}: {row['ladder_us']:7.1f} us/ladder in the proxy (process CPU {row['cpu_us']:7.1f} us/call "
            f"with the peers' side); parse_message {row['parse_us']:5.1f} us, serialize {row['serialize_us']:5.1f} us "
            f"per ladder's 6 messages; timer heap {row['heap'][0]} entries for {row['heap'][1]} live deadlines")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=4000, help="ladders per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rate", type=float, default=1000.0, help="calls per second of the fake clock")
    parser.add_argument("--profile", action="store_true", help="cProfile the first round (to stderr)")
    parser.add_argument("--baseline", help="a tree of the code to compare with (e.g. a detached worktree of main)")
    parser.add_argument("--instructions", type=int, metavar="CALLS", default=0,
                        help="instead: instructions per ladder under valgrind, over CALLS ladders")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args([] if argv is None else argv)
    if args.child:
        print(json.dumps(child(args.calls, args.rounds, args.rate, args.profile)))
        return 0
    if args.count is not None:
        count_child(args.count)
        return 0
    if args.instructions:
        return count_main(args)
    import platform
    print(f"SIP ladder in process on {platform.node()} ({os.cpu_count()} cores), "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load {os.getloadavg()[0]:.2f}; "
          f"{args.calls} calls per round (INVITE/100/180/200/ACK/BYE/200 + timers), {args.rounds} rounds")
    ours: list[float] = []
    theirs: list[float] = []
    ratios: list[float] = []
    for round_no in range(1, args.rounds + 1):
        order = [("this tree", REPO), ("baseline", Path(args.baseline))] if args.baseline else [("this tree", REPO)]
        if round_no % 2 == 0:
            order.reverse()
        got: dict[str, float] = {}
        for label, code in order:
            (row,) = run_child(code, args, 1, args.profile and round_no == 1 and label == "this tree")
            got[label] = row["ladder_us"]
            print(f"  round {round_no} " + show(f"{label} ({row['code']})", row), flush=True)
        ours.append(got["this tree"])
        if args.baseline:
            theirs.append(got["baseline"])
            ratios.append(got["this tree"] / got["baseline"])
    print(f"this tree: median {statistics.median(ours):.1f} us/ladder (min {min(ours):.1f}, max {max(ours):.1f})")
    if args.baseline:
        print(f"baseline:  median {statistics.median(theirs):.1f} us/ladder (min {min(theirs):.1f}, "
              f"max {max(theirs):.1f})")
        print(f"this tree / baseline per round: median {statistics.median(ratios):.2f} "
              f"(min {min(ratios):.2f}, max {max(ratios):.2f})")
    return 0


def count_main(args: argparse.Namespace) -> int:
    import platform
    import shutil
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (Debian package valgrind)")
        return 2
    print(f"SIP ladder in process under valgrind on {platform.node()}, "
          f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: instructions per ladder over "
          f"{args.instructions} ladders (a count, not a clock)")
    trees = [("this tree", REPO)] + ([("baseline", Path(args.baseline))] if args.baseline else [])
    got = {}
    for label, code in trees:
        got[label] = instructions(code, args.instructions)
        print(f"  {label} ({code}): {got[label] / 1e6:.3f} M instructions per ladder", flush=True)
    if args.baseline:
        print(f"this tree / baseline: {got['this tree'] / got['baseline']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
