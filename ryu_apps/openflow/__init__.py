"""OpenFlow 1.3 shell: renders the core's flow plans into messages and keeps switches in sync."""
