"""gc_tuning.tune(): the controller's collector settings (in a fresh interpreter: they are global)."""

from __future__ import annotations

import subprocess
import sys


def test_tune_freezes_start_up_objects_and_sets_the_thresholds() -> None:
    code = ("import gc; from ryu_apps import gc_tuning; gc_tuning.tune(); "
            "print(gc.get_threshold(), gc.get_freeze_count() > 0, gc.isenabled())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert out.stdout.split("\n")[0] == "(10000, 2, 1000) True True"
