"""The controller's REST API and admission without OpenFlow, as its own process:

    python -m benchmarks.peers.rest_only CONFIG.yaml

The same ``MamService`` and ``RestApi`` that ``ryu-manager ryu_apps.mam_app`` serves, on the
same server (``compat.serve_wsgi``: eventlet's WSGI server on ryu's hub), but no Fabric: a
call's media attach records the addresses and plans flows that no switch receives, where the
full controller without switches would release the call ("switch s1 is not connected"). For
a front end's admission rate and for signalling tests that need no data plane.
"""

from __future__ import annotations

import sys
import time


def main(argv: list[str]) -> int:
    from ryu_apps import compat
    from ryu_apps.config import build_manager, load_config
    from ryu_apps.metrics import Metrics
    from ryu_apps.rest.api import make_wsgi_app
    from ryu_apps.service import MamService

    config = load_config(argv[0])
    service = MamService(build_manager(config), clock=time.monotonic)
    app = make_wsgi_app(service, config.api, Metrics(service))
    thread = compat.serve_wsgi(app, config.api.host, config.api.port)
    print(f"REST API on http://{config.api.host}:{config.api.port}/mam/v1 (no OpenFlow)", flush=True)
    compat.hub.joinall([thread])
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
