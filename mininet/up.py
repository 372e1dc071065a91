#!/usr/bin/env python3
"""Bring an emulated network up with the controller, use it, bring it down.

    sudo .venv/bin/python mininet/up.py enterprise            # Mininet CLI; `exit` tears down
    sudo .venv/bin/python mininet/up.py carrier --for 300     # no CLI: up for 5 minutes (or Ctrl-C)

Node names carry a per-run prefix (printed); the controller's REST API and token are
printed too. If this process is killed, `mininet/down.py` removes what it left.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from emulation import Emulation  # noqa: E402
from topologies.__main__ import NAMES, spec  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("topology", choices=NAMES)
    parser.add_argument("--for", dest="seconds", type=float, default=None,
                        help="stay up this long without a CLI (default: Mininet CLI)")
    parser.add_argument("--sip", action="store_true", help="enable the controller's SIP proxy on 127.0.0.1:5060")
    parser.add_argument("--workdir", type=Path, default=HERE.parent / "out" / "emulation")
    args = parser.parse_args(argv)
    sip = {"enabled": True, "listen": "127.0.0.1:5060"} if args.sip else None
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))   # teardown runs on SIGTERM too
    with Emulation(spec(args.topology), args.workdir, sip=sip, log=print) as emu:
        print(f"up: prefix {emu.prefix}; REST http://127.0.0.1:{emu.api_port}/mam/v1 "
              f"(Authorization: Bearer {emu.token}); controller log {args.workdir / 'controller.log'}")
        if args.seconds is None:
            from mininet.cli import CLI
            CLI(emu.net)
        else:
            try:
                time.sleep(args.seconds)
            except KeyboardInterrupt:
                pass
    print("down: everything this run created is removed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
