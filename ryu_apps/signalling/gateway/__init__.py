"""The signalling gateway: per-PBX SIP normalisation profiles and SIP <-> H.323 interworking."""
