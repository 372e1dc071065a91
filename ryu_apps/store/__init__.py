"""Durable ledgers (shells around the core's `Ledger` interface)."""

from .sqlite import SqliteLedger

__all__ = ["SqliteLedger"]
