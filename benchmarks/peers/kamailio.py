"""Kamailio 5.6 (Debian ``kamailio``) with a given configuration, in the foreground.

    with Kamailio(config, workdir, port, defines={"NEXT_HOP": '"sip:127.0.0.1:5070"'}) as k:
        ...                      # k.pid, k.cpu_seconds()

Started as ``kamailio -f CFG -DD -E -m 1024 -x tlsf -Y RUNDIR -P PIDFILE -A NAME=VALUE ...``:
``-DD`` keeps the main process in the foreground (our child; its workers are its children),
``-E`` logs to stderr (kept in ``workdir/kamailio-PORT.log``), ``-m 1024 -x tlsf`` gives 1 GiB
of shared memory with the TLSF allocator (the defaults, 64 MiB and the fragment allocator,
run out at 1,000-2,000 setups/s: "tm: new_t(): out of mem"), ``-Y``/``-P`` keep the runtime
directory and pid file in ``workdir`` (no root, no /run/kamailio). The configurations in
docs/examples/kamailio/ read ``LISTEN``, ``WORKERS`` and their own settings from ``-A``.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from types import TracebackType

from .procs import stop, tree_cpu_seconds, wait_sip

REPO = Path(__file__).resolve().parents[2]
CONFIGS = REPO / "docs" / "examples" / "kamailio"
REFERENCE = CONFIGS / "kamailio-reference.cfg"
FRONT_END = CONFIGS / "kamailio-mam.cfg"


def available() -> str | None:
    """None when Kamailio and the modules the configurations load are installed, else why not."""
    if shutil.which("kamailio") is None:
        return "kamailio is not installed (Debian package kamailio)"
    for config in (REFERENCE, FRONT_END):
        result = subprocess.run(["kamailio", "-c", "-f", str(config)], capture_output=True, text=True, timeout=30)
        if result.returncode != 0:
            return f"kamailio -c {config.name}: {result.stderr.strip().splitlines()[-1:]}"
    return None


class Kamailio:
    def __init__(self, config: Path, workdir: Path, port: int, *, defines: dict[str, str | int] | None = None,
                 workers: int = 2, shm_mb: int = 1024, allocator: str = "tlsf") -> None:
        self.config, self.port = config, port
        rundir = workdir / f"kamailio-{port}"
        rundir.mkdir(parents=True, exist_ok=True)
        self.log = rundir / "kamailio.log"
        argv = [shutil.which("kamailio") or "kamailio", "-f", str(config), "-DD", "-E", "-m", str(shm_mb),
                "-x", allocator, "-Y", str(rundir), "-P", str(rundir / "kamailio.pid"), "-w", str(rundir),
                "-A", f"LISTEN=udp:127.0.0.1:{port}", "-A", f"WORKERS={workers}"]
        for name, value in (defines or {}).items():
            argv += ["-A", f"{name}={value}"]
        self.argv = argv
        self._log = self.log.open("wb")
        self.process = subprocess.Popen(argv, cwd=rundir, stdout=self._log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        try:
            wait_sip(port, self.process)
        except Exception:
            self.stop()
            raise RuntimeError(f"kamailio did not start: {self.log_tail()}") from None

    @property
    def pid(self) -> int:
        return self.process.pid

    def cpu_seconds(self) -> float:
        return tree_cpu_seconds(self.process.pid)

    def log_tail(self, chars: int = 3000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""

    def stop(self) -> None:
        stop(self.process, 15)
        self._log.close()

    def __enter__(self) -> Kamailio:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.stop()
