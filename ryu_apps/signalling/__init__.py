"""Signalling shells: the SIP proxy (and, later, the H.323 gatekeeper) that feed call
setup and teardown to admission through :class:`ryu_apps.signalling.call_control.CallControl`."""
