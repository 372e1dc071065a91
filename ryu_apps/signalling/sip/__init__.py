"""The SIP proxy: a sans-IO protocol core (message, sdp, transaction, call_state, proxy)
and I/O shells (the standalone asyncio server, the hub server used inside the controller)."""
