"""``mam-osken``: run app modules under os-ken, which ships no manager command.

    mam-osken [--ofp-tcp-listen-port P] [--config-file F] ryu_apps.mam_app [...]

Mirrors what ``ryu-manager`` does: parse the framework's options, load the apps,
instantiate them with their contexts, and wait on their threads. The hub type follows
``OSKEN_HUB_TYPE`` (native threads by default).
"""

from __future__ import annotations

import logging
import os
import sys


def main(argv: list[str] | None = None) -> int:
    os.environ["MAM_FRAMEWORK"] = "os_ken"
    from os_ken import cfg, log
    from os_ken.base.app_manager import AppManager
    from os_ken.controller import controller  # noqa: F401  (registers --ofp-tcp-listen-port)
    from os_ken.lib import hub
    from os_ken.topology import switches  # noqa: F401  (registers --observe-links and friends before parsing,
    #                                         as ryu-manager does; loaded when dataplane.discovery is on)

    conf = cfg.CONF
    conf.register_cli_opts([
        cfg.MultiStrOpt("app", positional=True, default=[], help="application module to run"),
        cfg.StrOpt("pid-file", default=None, help="write the process id here"),
    ])
    conf(args=sys.argv[1:] if argv is None else argv, prog="mam-osken", project="os_ken")
    log.init_log()
    logger = logging.getLogger("mam-osken")
    hub.patch(thread=True)
    if conf.pid_file:
        with open(conf.pid_file, "w") as handle:
            handle.write(str(os.getpid()))
    apps = conf.app or ["os_ken.controller.ofp_handler"]
    manager = AppManager.get_instance()
    manager.load_apps(apps)
    services = manager.instantiate_apps(**manager.create_contexts())
    logger.info("running %s under os-ken (%s hub)", ", ".join(apps), getattr(hub, "HUB_TYPE", "?"))
    try:
        hub.joinall(services)
    except KeyboardInterrupt:
        pass
    finally:
        manager.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
