"""The media aggregation manager as a Ryu / os-ken application.

    MAM_CONFIG=site.yaml ryu-manager ryu_apps.mam_app
    MAM_CONFIG=site.yaml mam-osken ryu_apps.mam_app

A thin shell: each OpenFlow event is decoded into a value and handed to the data-plane
valve (``openflow/valve.py``, pure) through ``openflow/shell.py``, which sends the
messages it returns and performs its reports; the REST API and the SIP proxy talk to the
same `MamService`. The configuration file may also be named in a ``--config-file``
given to the manager, as ``[mam] config = site.yaml``.
"""

from __future__ import annotations

import atexit
import logging
import os
import signal
import socket
import time
from dataclasses import replace
from typing import Any

from . import compat, gc_tuning, security
from .config import Config, ConfigError, build_manager, load_config
from .core.errors import MamError
from .core.cdr import CdrStore, MemoryCdrStore
from .core.store import Ledger, MemoryLedger
from .core.survey import Survey
from .dataplane.classes import class_applier
from .metrics import Metrics
from .openflow import decode, events
from .openflow.idle import MediaIdle
from .openflow.shell import Shell
from .openflow.valve import Valve
from .service import MamService
from .events import EventHub
from .records import CdrRecorder
from .store import SqliteCdrStore, SqliteLedger

log = logging.getLogger("mam")
#: The timer loop sleeps until the core's next deadline, and at most this long (a guard
#: against a clock step; nothing depends on it).
LONGEST_SLEEP_S = 30.0
RECORDS_FLUSH_S = 1.0       # buffered call records are written at least this often

compat.cfg.CONF.register_opts([compat.cfg.StrOpt("config", default=None,
                                                 help="the media aggregation manager's YAML configuration")],
                              group="mam")


def config_path() -> str:
    path = os.environ.get("MAM_CONFIG") or compat.cfg.CONF.mam.config
    if not path:
        raise ConfigError("", "no configuration: set MAM_CONFIG=<file.yaml> (or [mam] config= in --config-file)")
    return path


def _stop_on_sigterm(owner: Any) -> None:
    """SIGTERM ends ryu-manager without its shutdown: stop the SIP workers (by PID) first,
    then do what was to be done (the previous handler, or the default: exit)."""
    previous = signal.getsignal(signal.SIGTERM)

    def handler(signum: int, frame: Any) -> None:
        try:
            owner.stop(wait=False)
        finally:
            if callable(previous):
                previous(signum, frame)
            elif previous != signal.SIG_IGN:
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                os.kill(os.getpid(), signal.SIGTERM)

    atexit.register(owner.stop, False)
    try:
        signal.signal(signal.SIGTERM, handler)
    except ValueError:                # not the main thread: the app's stop() and atexit still stop them
        log.warning("SIGTERM will not stop the SIP workers (the app started outside the main thread)")


class MediaAggregationApp(compat.RyuApp):
    OFP_VERSIONS = [compat.ofproto_v1_3.OFP_VERSION]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        path = self.config_file = config_path()
        try:
            config = load_config(path)
            self.config: Config = replace(config, api=security.api_with_token(config.api, os.environ))
            for warning in security.check(self.config.api):
                log.warning("%s", warning)
            self._listen_openflow()
            ledger = self._open_ledger()
            manager = build_manager(self.config, ledger, now=time.time(), log=log.warning)
        except MamError as error:
            log.error("%s: %s", path, error)
            raise SystemExit(f"{path}: {error}") from None
        if not ledger.durable:
            log.warning("no 'store:' in %s: calls, aggregates and terminal locations are kept in memory only and "
                        "will not survive a restart (set store: /var/lib/mam/ledger.sqlite)", path)
        dataplane = self.config.dataplane
        survey = Survey(manager.topology, discovery=dataplane.discovery,
                        limit_by_speed=dataplane.port_speeds == "limit")
        self.service = MamService(manager, clock=time.time, survey=survey, lock=compat.rlock(),
                                  wakeup=compat.Wakeup)
        if dataplane.discovery:  # ryu.topology's Switches app is loaded after this one and reads it then
            compat.cfg.CONF.set_override("observe_links", True)
        self.metrics = Metrics(self.service)
        self.records = CdrRecorder(self._open_records(path), retention_days=self.config.cdr.retention_days)
        self.service.watch(self.records)
        self.event_hub = EventHub()       # GET /mam/v1/events (not self.events: RyuApp's own queue)
        self.service.watch(self.event_hub)
        self.wakeup = compat.Wakeup()
        valve = Valve(manager.topology, media_idle=MediaIdle(dataplane.media_idle),
                      idle_timeout_s=self.config.settings.plan.call_idle_timeout_s)
        self.shell = Shell(valve, self.service, classes=class_applier(dataplane), clock=time.monotonic,
                           observe_install=self.metrics.observe_flow_install, wake=self.wakeup.wake)
        self.metrics.shell = self.shell
        compat.filter_flow_removed(self.shell.removal_unwanted)   # ended calls' removals: not decoded
        self.shell.start()
        self.service.on_timer_change(self.wakeup.wake)
        self.sip: Any = None        # the SIP hub server, when sip.enabled (sip.workers: 0)
        self.sip_workers: Any = None  # the owner of the SIP worker processes (sip.workers: N)
        self.threads = [compat.hub.spawn(self._timer_loop), compat.hub.spawn(self._records_loop)]
        if self.cluster is not None:
            self.cluster.start(self.service, compat.hub.spawn, compat.hub.sleep)
            valve.responsible = frozenset()          # nothing is written until an election says so
            self.cluster.start_roles(self.config, self.shell.set_roles, compat.Wakeup(), compat.hub.spawn,
                                     compat.hub.sleep)
        self._start_rest()
        self._start_sip()
        self._start_h323()
        self._start_gateway()
        log.info("media aggregation manager: %d switch(es), %d communities, %d aggregate(s), store %s",
                 len(manager.topology.switches), len(manager.topology.communities), len(manager.aggregates()),
                 self.config.store_path or "in memory")
        gc_tuning.tune()      # live calls stay off the collector's hot path (see gc_tuning.py)
        self.threads.append(compat.hub.spawn(gc_tuning.Sweeper().run, compat.hub.sleep))

    # --- shells ---------------------------------------------------------------------------

    def _open_ledger(self) -> Ledger:
        self.cluster = None
        if self.config.store_url is not None:        # several controllers on one etcd (docs/cluster.md)
            from .cluster.replication import clustered, open_shared_ledger
            self.cluster = open_shared_ledger(self.config, self.config.topology, compat.Wakeup)
            self.config = clustered(self.config, self.cluster.ledger.lane)
            return self.cluster.ledger
        return SqliteLedger(self.config.store_path) if self.config.store_path else MemoryLedger()

    def _open_records(self, config_file: str) -> CdrStore:
        """Call records: ``cdr.path``, else the SQLite ledger's file, else (etcd ledger) a
        local ``cdr.sqlite`` beside the configuration; in memory with no store at all."""
        path = self.config.cdr.path
        if path is None and self.config.store_path and self.config.store_url is None:
            path = self.config.store_path
        if path is None and self.config.store_url is not None:
            path = os.path.join(os.path.dirname(os.path.abspath(config_file)), "cdr.sqlite")
        if path is None:
            log.warning("call detail records are kept in memory only, the newest %d (cdr.memory_limit); set "
                        "store: or cdr.path to keep them all", self.config.cdr.memory_limit)
            return MemoryCdrStore(limit=self.config.cdr.memory_limit)
        try:
            return SqliteCdrStore(path)
        except MamError as error:
            raise SystemExit(f"{config_file}: cdr: {error}") from None

    def _records_loop(self) -> None:
        """Write buffered call records once a second (a full batch is written at once)."""
        while True:
            compat.hub.sleep(RECORDS_FLUSH_S)
            try:
                self.records.flush()
            except Exception:  # the loop must survive anything one round meets
                log.exception("call records flush failed")

    def _listen_openflow(self) -> None:
        """Bind the OpenFlow listener where the configuration says (loopback unless told
        otherwise), with TLS when ``openflow.tls`` is set. ryu's listener starts after every
        app's __init__, and reads these then."""
        conf = compat.cfg.CONF
        openflow = self.config.openflow
        # the framework's own default is every address: only a host named on the command line counts
        named = conf.ofp_listen_host if conf.ofp_listen_host not in ("", "0.0.0.0", "::") else None
        host = openflow.listen_host or named or "127.0.0.1"
        conf.set_override("ofp_listen_host", host)
        port = openflow.listen_port or conf.ofp_tcp_listen_port or 6653   # one port, not also the old 6633
        tls = openflow.tls
        if tls is None:
            conf.set_override("ofp_tcp_listen_port", port)
        else:
            compat.fix_ryu_tls_listener()
            conf.set_override("ofp_ssl_listen_port", openflow.listen_port or conf.ofp_ssl_listen_port or port)
            conf.set_override("ctl_privkey", tls.key)
            conf.set_override("ctl_cert", tls.cert)
            conf.set_override("ca_certs", tls.ca)
        if not security.is_loopback(host) and tls is None:
            log.warning("OpenFlow listens on %s without TLS: anyone who reaches it can pose as a switch "
                        "(set openflow.tls)", host)

    def _start_rest(self) -> None:
        from .rest.api import make_wsgi_app
        api = self.config.api
        app = make_wsgi_app(self.service, api, self.metrics, self.records, self.event_hub)
        tls = None if api.tls is None else compat.server_tls_context(api.tls.cert, api.tls.key, api.tls.ca)
        self.threads.append(compat.serve_wsgi(app, api.host, api.port, tls))
        log.info("REST API on %s://%s:%d/mam/v1", "https" if tls else "http", api.host, api.port)

    def _start_sip(self) -> None:
        sip = self.config.sip
        if not sip.enabled:
            return
        from .signalling.gateway.front_end import gateway_routes
        extra = gateway_routes(self.config.gateway, self.config.topology.communities, sip.routes)
        if sip.workers:
            self._start_sip_workers(extra)
            return
        from .signalling.sip.hub_server import HubSipServer
        from .signalling.sip.ids import HashIds
        from .signalling.sip.proxy import SipProxy
        from .signalling.sip.proxy_config import ProxyConfig
        from .signalling.sip.routing import RouteTable
        proxy = SipProxy(ProxyConfig.from_sip_config(sip, routes=RouteTable.from_pairs(sip.routes + extra)),
                         self.service, HashIds(os.urandom(16)))
        from .signalling.gateway.normalise import ProxyNormaliser
        proxy.normaliser = ProxyNormaliser.for_config(self.config.gateway, self.config.topology.communities)
        self.sip = HubSipServer(proxy, spawn=compat.hub.spawn, sleep=compat.hub.sleep, socket_factory=socket.socket,
                                transports=sip.transports, bind_host=sip.listen_host, wakeup_factory=compat.Wakeup)
        self.service.subscribe(self.sip.on_changes)
        self.sip.restore(self.service.read(lambda m: [c.dialog for c in m.calls()
                                                      if c.dialog and c.dialog.get("protocol") == "sip"]))
        self.sip.start()
        log.info("SIP proxy on %s:%d (%s)", sip.listen_host, sip.listen_port, "/".join(sip.transports))

    def _start_sip_workers(self, extra_routes: tuple[tuple[str, str], ...]) -> None:
        """``sip.workers: N``: N SIP worker processes (the standalone proxy's ``--workers``
        code, reading this configuration file) with their admission answered on this hub."""
        from .signalling.sip.hub_owner import HubOwner
        sip = self.config.sip
        if "tcp" in sip.transports:
            log.warning("sip.workers: SIP workers serve UDP only; SIP over TCP is not served")
        argv = ["--config", os.path.abspath(self.config_file), *(f"--route={key}={hop}" for key, hop in extra_routes)]
        owner = HubOwner(self.service, argv, sip.workers, sip.listen_host, sip.listen_port, spawn=compat.hub.spawn,
                         sleep=compat.hub.sleep, wakeup_factory=compat.Wakeup, lock_factory=compat.rlock,
                         read_shared=sip.shared_reader == "workers")
        self.sip_workers = owner
        self.service.subscribe(owner.on_changes)
        owner.restore(self.service.read(lambda m: [(c.call_id, c.serial, c.dialog) for c in m.calls()
                                                   if c.dialog and c.dialog.get("protocol") == "sip"]))
        owner.start()
        _stop_on_sigterm(owner)
        log.info("SIP proxy on %s:%d (udp) in %d worker processes, pids %s; admission in this process",
                 sip.listen_host, owner.pool.shared_port, sip.workers, ", ".join(map(str, owner.pids())))

    def stop(self) -> None:
        """The framework's shutdown: the SIP workers first (by PID), then the app's threads."""
        if self.sip_workers is not None:
            try:
                self.sip_workers.stop()
            except Exception:  # noqa: BLE001 - the rest of the shutdown must run
                log.exception("stopping the SIP workers")
        super().stop()

    def _start_gateway(self) -> None:
        """The SIP <-> H.323 gateway (docs/gateway.md), when the configuration has a gateway: section."""
        gateway = self.config.gateway
        self.gateway: object | None = None
        if not gateway.enabled:
            return
        from .signalling.gateway.hub_server import hub_gateway
        from .signalling.gateway.interwork import Gateway
        from .signalling.gateway.standalone import settings_from_config
        from .signalling.h323.directory import TopologyDirectory
        from .signalling.sip.ids import HashIds
        from .signalling.gateway.front_end import front_end_sources
        service = self.service
        settings = settings_from_config(gateway, self.config.topology.communities, self.config.sip.t1_s)
        settings = replace(settings, trusted=settings.trusted | front_end_sources(
            gateway, self.config.sip, self.config.h323))          # our proxy and gatekeeper admitted their calls
        core = Gateway(settings, service, TopologyDirectory(lambda: service.manager.topology),
                       HashIds(os.urandom(16)))
        shell = hub_gateway(core, spawn=compat.hub.spawn, sleep=compat.hub.sleep, socket_factory=socket.socket,
                            event_factory=compat.WakeupEvent)
        self.gateway = shell
        self.service.subscribe(shell.on_changes)
        shell.start()
        log.info("SIP <-> H.323 gateway: SIP on %s:%d/udp, H.225 on %s:%d/tcp", *gateway.sip_listen,
                 *gateway.h323_listen)

    def _start_h323(self) -> None:
        h323 = self.config.h323
        self.h323: object | None = None
        if not h323.enabled:
            return
        from .signalling.h323.directory import TopologyDirectory
        from .signalling.h323.gatekeeper import Gatekeeper, GatekeeperSettings
        from .signalling.h323.hub_server import HubGatekeeper
        service = self.service
        gatekeeper = Gatekeeper(GatekeeperSettings.from_config(h323, self.config.gateway), service,
                                TopologyDirectory(lambda: service.manager.topology))
        self.h323 = HubGatekeeper(gatekeeper, spawn=compat.hub.spawn, sleep=compat.hub.sleep,
                                  socket_factory=socket.socket, event_factory=compat.WakeupEvent)
        self.service.subscribe(self.h323.on_changes)
        self.h323.start()
        log.info("H.323 gatekeeper %s: RAS on %s:%d/udp, call signalling on %s:%d/tcp", h323.gatekeeper_id,
                 h323.ras_host, h323.ras_port, h323.call_host, h323.call_port)

    def _timer_loop(self) -> None:
        """Run the core's timers when they are due, and the data plane's deferred reports
        when it asks; sleep otherwise (no polling)."""
        while True:
            try:
                when = self.service.next_timer()
                delay = LONGEST_SLEEP_S if when is None else min(LONGEST_SLEEP_S, when - time.time())
                if delay > 0 and not self.shell.pending():
                    self.wakeup.sleep(delay)
                self.shell.drain()         # class updates and data-plane reports, outside the service's lock
                self.service.handle_timer()
            except Exception:  # the loop must survive anything one round meets
                log.exception("timer loop round failed")
                compat.hub.sleep(0.1)

    # --- OpenFlow events: decode, hand to the valve through the shell (which performs) -----

    @compat.set_ev_cls(compat.ofp_event.EventOFPSwitchFeatures, compat.CONFIG_DISPATCHER)
    def switch_features(self, ev: Any) -> None:
        datapath = ev.msg.datapath
        self.shell.event("switch-features", lambda: events.SwitchConnected(self.shell.conn_of(datapath, new=True),
                                                                           int(datapath.id)))

    @compat.set_ev_cls(compat.ofp_event.EventOFPStateChange, compat.DEAD_DISPATCHER)
    def switch_state(self, ev: Any) -> None:
        datapath = ev.datapath
        if datapath is not None and getattr(datapath, "mam_conn", None) is not None:
            self.shell.event("switch-gone", lambda: events.SwitchGone(self.shell.conn_of(datapath)))

    @compat.set_ev_cls(compat.ofp_event.EventOFPPortDescStatsReply, compat.MAIN_DISPATCHER)
    def port_desc(self, ev: Any) -> None:
        self.shell.event("port-desc", lambda: decode.ports_described(self.shell.conn_of(ev.msg.datapath), ev.msg))

    @compat.set_ev_cls(compat.ofp_event.EventOFPPortStatus, compat.MAIN_DISPATCHER)
    def port_status(self, ev: Any) -> None:
        self.shell.event("port-status", lambda: decode.port_changed(self.shell.conn_of(ev.msg.datapath), ev.msg))

    @compat.set_ev_cls(compat.ofp_event.EventOFPFlowStatsReply, compat.MAIN_DISPATCHER)
    def flow_stats(self, ev: Any) -> None:
        datapath = ev.msg.datapath
        self.shell.event("flow-stats", lambda: decode.flow_stats_reply(
            self.shell.conn_of(datapath), self.shell.valve.switch_of(self.shell.conn_of(datapath)) or "", ev.msg))

    @compat.set_ev_cls(compat.ofp_event.EventOFPMeterConfigStatsReply, compat.MAIN_DISPATCHER)
    def meter_config(self, ev: Any) -> None:
        datapath = ev.msg.datapath
        self.shell.event("meter-config", lambda: decode.meter_config_reply(
            self.shell.conn_of(datapath), self.shell.valve.switch_of(self.shell.conn_of(datapath)) or "", ev.msg))

    # --- LLDP, from ryu.topology (os_ken.topology) when dataplane.discovery is on ----------

    @compat.set_ev_cls(compat.topology_event.EventLinkAdd)
    def link_add(self, ev: Any) -> None:
        link = ev.link
        self.shell.event("link-add", lambda: events.LinkHeard(link.src.dpid, link.src.port_no, link.dst.dpid,
                                                              link.dst.port_no, up=True))

    @compat.set_ev_cls(compat.topology_event.EventLinkDelete)
    def link_delete(self, ev: Any) -> None:
        link = ev.link
        self.shell.event("link-delete", lambda: events.LinkHeard(link.src.dpid, link.src.port_no, link.dst.dpid,
                                                                 link.dst.port_no, up=False))

    @compat.set_ev_cls(compat.ofp_event.EventOFPRoleReply, compat.MAIN_DISPATCHER)
    def role_reply(self, ev: Any) -> None:
        msg = ev.msg
        ofp = msg.datapath.ofproto
        role = {ofp.OFPCR_ROLE_MASTER: events.Role.MASTER, ofp.OFPCR_ROLE_SLAVE: events.Role.SLAVE,
                ofp.OFPCR_ROLE_EQUAL: events.Role.EQUAL}.get(msg.role)
        if role is not None:
            self.shell.event("role-reply", lambda: events.RoleChanged(self.shell.conn_of(msg.datapath), role))

    @compat.set_ev_cls(compat.ofp_event.EventOFPBarrierReply, compat.MAIN_DISPATCHER)
    def barrier_reply(self, ev: Any) -> None:
        self.shell.event("barrier", lambda: events.BarrierReply(self.shell.conn_of(ev.msg.datapath), int(ev.msg.xid)))

    @compat.set_ev_cls(compat.ofp_event.EventOFPErrorMsg, [compat.CONFIG_DISPATCHER, compat.MAIN_DISPATCHER])
    def error(self, ev: Any) -> None:
        msg = ev.msg
        self.shell.event("error", lambda: events.ErrorReply(self.shell.conn_of(msg.datapath), int(msg.xid),
                                                            int(msg.type), int(msg.code)))

    @compat.set_ev_cls(compat.ofp_event.EventOFPFlowRemoved, compat.MAIN_DISPATCHER)
    def flow_removed(self, ev: Any) -> None:
        self.shell.event("flow-removed", lambda: decode.flow_removed(self.shell.conn_of(ev.msg.datapath), ev.msg))

    @compat.set_ev_cls(compat.ofp_event.EventOFPPacketIn, compat.MAIN_DISPATCHER)
    def packet_in(self, ev: Any) -> None:
        self.shell.event("packet-in", lambda: decode.packet_in(self.shell.conn_of(ev.msg.datapath), ev.msg, compat))
