"""Per-hop guaranteed classes outside OpenFlow: Linux tc (userspace OVS) and OVSDB queues."""
