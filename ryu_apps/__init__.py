"""Media aggregation manager: aggregate QoS reservations for VoIP between user communities."""

__version__ = "0.1.0"
