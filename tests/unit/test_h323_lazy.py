"""The controller pays for pycrate only when h323 is enabled."""

from __future__ import annotations

import subprocess
import sys


def test_importing_the_gatekeeper_and_the_app_config_does_not_load_pycrate() -> None:
    code = ("import sys; import ryu_apps.config, ryu_apps.signalling.h323.gatekeeper, "
            "ryu_apps.signalling.h323.hub_server; "
            "print(sorted(m for m in sys.modules if m.startswith('pycrate')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
    loaded = subprocess.run([sys.executable, "-c", "import sys; from ryu_apps.signalling.h323.asn1 import load; load(); "
                             "print('pycrate_asn1dir.H225' in sys.modules)"], capture_output=True, text=True, timeout=60)
    assert loaded.stdout.strip() == "True", loaded.stderr
