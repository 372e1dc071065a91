"""The core imports with ryu, os-ken, webob, eventlet and sockets out of reach."""

import ast
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROBE = textwrap.dedent("""
    import importlib, importlib.abc, pkgutil, sys
    BLOCKED = ("ryu", "os_ken", "webob", "eventlet", "requests", "yaml")

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ImportError(f"blocked import of {name}")
            return None

    for name in list(sys.modules):
        if name.split(".")[0] in BLOCKED:
            del sys.modules[name]
    sys.meta_path.insert(0, Block())
    import ryu_apps.core as core
    names = [m.name for m in pkgutil.walk_packages(core.__path__, "ryu_apps.core.")]
    for name in names:
        importlib.import_module(name)
    leaked = sorted(n for n in sys.modules if n.split(".")[0] in BLOCKED)
    print(len(names), ",".join(leaked))
""")


#: What the core may import: the standard library's pure parts and networkx. No sockets,
#: threads, clocks, I/O, controller runtime or web framework.
ALLOWED_IMPORTS = {"__future__", "dataclasses", "enum", "typing", "ipaddress", "math", "heapq", "networkx",
                   "collections", "itertools", "functools", "bisect", "contextlib",
                   "re",           # parsing schedule times
                   "datetime"}     # calendar arithmetic on a given `now` (schedules); never datetime.now()


def test_core_imports_without_any_runtime_or_web_framework():
    result = subprocess.run([sys.executable, "-S", "-c", PROBE], cwd=ROOT, capture_output=True, text=True,
                            timeout=60, env={"PYTHONPATH": f"{ROOT}:{':'.join(p for p in sys.path if p)}"})
    assert result.returncode == 0, result.stderr
    count, leaked = result.stdout.strip().split(" ") if " " in result.stdout.strip() else (result.stdout.strip(), "")
    assert int(count) >= 10, "expected every core module to be walked"
    assert leaked == ""


def test_core_source_names_no_wall_clock():
    for path in (ROOT / "ryu_apps" / "core").glob("*.py"):
        text = path.read_text()
        for forbidden in ("time.time(", "datetime.now(", "time.monotonic("):
            assert forbidden not in text, f"{path.name} reads the wall clock ({forbidden})"


def test_core_modules_import_only_pure_libraries():
    for path in (ROOT / "ryu_apps" / "core").glob("*.py"):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                roots = {(node.module or "").split(".")[0]}
            else:
                continue
            assert roots <= ALLOWED_IMPORTS, f"{path.name}:{node.lineno} imports {sorted(roots - ALLOWED_IMPORTS)}"
