"""SIPp (Debian ``sip-tester``) as callee (UAS) and caller (UAC), with its statistics read back.

Scenarios live in tests/sipp/; the ``*_txn.xml`` ones match responses to transactions and
so tolerate a 180 that arrives after its 200 through multi-worker proxies."""

from __future__ import annotations

import csv
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from .procs import free_port, stop

REPO = Path(__file__).resolve().parents[2]
SCENARIOS = REPO / "tests" / "sipp"
CODECS = {"pcmu": "0;PCMU;", "pcma": "8;PCMA;", "g729": "18;G729;", "g722": "9;G722;"}


class Uas:
    """A SIPp callee on ``port`` running ``scenario`` until stopped."""

    def __init__(self, workdir: Path, port: int, scenario: str = "uas_answer_txn.xml") -> None:
        self.port = port
        self.process = subprocess.Popen(
            ["sipp", "-sf", str(SCENARIOS / scenario), "-i", "127.0.0.1", "-p", str(port), "-timeout", "900s",
             "-nostdin", "-buff_size", "4194304", "-trace_err"],
            cwd=workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        time.sleep(0.3)
        if self.process.poll() is not None:
            raise RuntimeError(f"the SIPp UAS ({scenario}) exited at start with {self.process.returncode}")

    def stop(self) -> None:
        stop(self.process, 5)


@dataclass
class UacResult:
    rate: float
    calls: int
    exit: int
    success: int = 0
    failed: int = 0
    elapsed_s: float = 0.0
    retransmissions: int = 0
    received: dict[str, int] = field(default_factory=dict)   # "8_200": n (scenario step _ response)
    setup_ms: list[float] = field(default_factory=list)       # INVITE -> 200 per admitted call
    errors: str = ""

    @property
    def achieved(self) -> float:
        return self.success / self.elapsed_s if self.elapsed_s else 0.0

    def total(self, response: str) -> int:
        return sum(v for k, v in self.received.items() if k.split("_", 1)[1] == response)


def run_uac(workdir: Path, target_port: int, calls: int, *, rate: float, scenario: str = "uac_call_txn.xml",
            codecs: tuple[str, ...] = ("pcmu",), hold_ms: int = 0, limit: int | None = None,
            timeout_s: int | None = None, rtt: bool = False) -> UacResult:
    """One SIPp UAC run to completion (``-m calls`` at ``-r rate``), under a timeout."""
    run_dir = Path(tempfile.mkdtemp(dir=workdir, prefix="uac-"))
    inject = run_dir / "codecs.csv"
    inject.write_text("SEQUENTIAL\n" + "\n".join(CODECS[c] for c in codecs) + "\n")
    budget = timeout_s if timeout_s is not None else int(calls / rate + hold_ms / 1000) + 30
    command = ["sipp", "-sf", str(SCENARIOS / scenario), "-inf", str(inject), "-i", "127.0.0.1",
               "-p", str(free_port()), "-s", "bob", f"127.0.0.1:{target_port}", "-m", str(calls),
               "-r", str(rate), "-l", str(limit or max(50, int(rate * 4))), "-d", str(hold_ms),
               "-timeout", f"{budget}s", "-timeout_error", "-trace_stat", "-fd", "1", "-trace_counts",
               "-trace_err", "-nostdin", "-buff_size", "4194304", "-max_socket", "1"]
    if rtt:
        command += ["-trace_rtt", "-rtt_freq", "1"]
    started = time.monotonic()
    try:
        result = subprocess.run(command, cwd=run_dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                timeout=budget + 30)
        code = result.returncode
    except subprocess.TimeoutExpired:
        code = -9
    wall = time.monotonic() - started
    out = UacResult(rate, calls, code)
    stem = Path(scenario).stem
    stats = sorted(run_dir.glob(f"{stem}_*_.csv"))
    if stats:
        rows = list(csv.reader(stats[0].open(), delimiter=";"))
        row = dict(zip(rows[0], rows[-1]))
        out.success = int(row.get("SuccessfulCall(C)", 0) or 0)
        out.failed = int(row.get("FailedCall(C)", 0) or 0)
        out.retransmissions = int(row.get("Retransmissions(C)", 0) or 0)
        out.elapsed_s = _seconds(row.get("ElapsedTime(C)", "")) or wall
    counts = sorted(run_dir.glob(f"{stem}_*_counts.csv"))
    if counts:
        rows = list(csv.reader(counts[-1].open(), delimiter=";"))
        for name, value in zip(rows[0], rows[-1]):
            if name.endswith("_Recv") and value.strip().isdigit():
                out.received[name[:-5]] = int(value)
    for path in run_dir.glob(f"{stem}_*_rtt.csv"):
        for line in path.read_text().splitlines()[1:]:
            parts = line.split(";")
            if len(parts) >= 2:
                try:
                    out.setup_ms.append(float(parts[1]))
                except ValueError:
                    pass
    out.errors = "\n".join(p.read_text(errors="replace")[-2000:] for p in run_dir.glob("*_errors.log"))
    return out


def _seconds(text: str) -> float:
    """SIPp's ``HH:MM:SS:mmmmmm`` elapsed time."""
    try:
        hours, minutes, seconds, micros = text.split(":")
        return int(hours) * 3600 + int(minutes) * 60 + int(seconds) + int(micros) / 1e6
    except ValueError:
        return 0.0
