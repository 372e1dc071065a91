"""Give eventlet.wsgi back the ALREADY_HANDLED that ryu 4.34 imports.

ryu/app/wsgi.py (imported by ryu-manager before any app) does
``from eventlet.wsgi import ALREADY_HANDLED``; eventlet removed that name in 0.30.3, and
the last eventlet that has it (0.30.2) does not run on Python 3.11. Newer eventlet
tracks "already handled" in ``WSGI_LOCAL.already_handled`` and ends the response when
the application's result iterates to nothing, so an empty tuple is a faithful stand-in.

The venv's ``mam-eventlet-compat.pth`` (written by scripts/bootstrap.sh) imports this
module at interpreter start. It imports nothing heavy: it only registers a finder that
acts when ``eventlet.wsgi`` is first imported, and does nothing otherwise.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
from types import ModuleType

ALREADY_HANDLED: tuple[()] = ()


class _Loader(importlib.abc.Loader):
    def __init__(self, wrapped: importlib.abc.Loader) -> None:
        self.wrapped = wrapped

    def create_module(self, spec):  # type: ignore[no-untyped-def]
        return self.wrapped.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.wrapped.exec_module(module)
        if not hasattr(module, "ALREADY_HANDLED"):
            module.ALREADY_HANDLED = ALREADY_HANDLED  # type: ignore[attr-defined]


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):  # type: ignore[no-untyped-def]
        if name != "eventlet.wsgi":
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader)
        return spec


def install() -> None:
    if not any(isinstance(finder, _Finder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Finder())


install()
