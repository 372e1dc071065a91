"""A minimal app for runtime tests: logs once it is instantiated, through the compat layer."""

from ryu_apps import compat


class HelloApp(compat.RyuApp):
    OFP_VERSIONS = [compat.ofproto_v1_3.OFP_VERSION]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.logger.info("hello-app started under %s", compat.FRAMEWORK)

    @compat.set_ev_cls(compat.ofp_event.EventOFPSwitchFeatures, compat.CONFIG_DISPATCHER)
    def switch_features(self, ev):  # having an OpenFlow handler makes the manager listen
        self.logger.info("hello-app saw switch %016x", ev.msg.datapath.id)
