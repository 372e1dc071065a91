#!/usr/bin/env python3
"""Remove what a killed emulation left behind: only what its state file records.

    sudo .venv/bin/python mininet/down.py            # every recorded run
    sudo .venv/bin/python mininet/down.py m3fa       # one run, by its prefix

Each run records its prefix, bridges and controller PID in /tmp/mam-emulations/. This
deletes those bridges, the interfaces named with that prefix, and the controller process
(only if that PID still runs ryu-manager) and the recorded host shells. It never touches anything else: no `mn -c`.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from emulation import STATE_DIR, _interfaces_with_prefix, run, stop_process  # noqa: E402


def clean(state_file: Path) -> str:
    state = json.loads(state_file.read_text())
    prefix = state["prefix"]
    pid = state.get("controller_pid")
    if pid:
        cmdline = Path(f"/proc/{pid}/cmdline")
        if cmdline.exists() and b"ryu-manager" in cmdline.read_bytes():
            stop_process(pid)
    for host_pid in state.get("host_pids", []):   # Mininet's host shells (mnexec ... bash)
        comm = Path(f"/proc/{host_pid}/comm")
        if comm.exists() and comm.read_text().strip() in ("bash", "mnexec"):
            try:
                os.kill(host_pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    for bridge in state.get("bridges", []):
        if bridge.startswith(prefix):
            run("ovs-vsctl", "--timeout=10", "--if-exists", "del-br", bridge, check=False)
    for interface in _interfaces_with_prefix(prefix):
        run("ip", "link", "del", interface, check=False)
    state_file.unlink(missing_ok=True)
    return prefix


def main(argv: list[str] | None = None) -> int:
    wanted = set(sys.argv[1:] if argv is None else argv)
    files = sorted(STATE_DIR.glob("*.json")) if STATE_DIR.exists() else []
    done = [clean(f) for f in files if not wanted or f.stem in wanted]
    print(f"cleaned {len(done)} emulation(s){': ' + ', '.join(done) if done else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
