#!/usr/bin/env bash
# Start Open vSwitch (userspace datapath) unless it already answers. Idempotent.
# The socket buffer sizes must be set BEFORE ovs-vswitchd starts: it sends on every
# netdev port through one AF_PACKET socket, and a full best-effort queue would block all.
set -euo pipefail
if timeout 5 ovs-vsctl --timeout=3 show >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "[ovs-up] Open vSwitch is not running and starting it needs root" >&2; exit 1
fi
sysctl -qw net.core.wmem_default=8388608 net.core.wmem_max=8388608
timeout 60 /usr/share/openvswitch/scripts/ovs-ctl start --system-id=random >/dev/null 2>&1 || true
for _ in $(seq 1 30); do
  timeout 5 ovs-vsctl --timeout=3 show >/dev/null 2>&1 && { echo "[ovs-up] Open vSwitch is running"; exit 0; }
  sleep 1
done
echo "[ovs-up] Open vSwitch did not start (see /var/log/openvswitch/)" >&2
exit 1
