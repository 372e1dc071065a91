"""Several controllers sharing one etcd ledger: replication (watch), and later roles."""
