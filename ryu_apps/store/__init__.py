"""Durable ledgers (shells around the core's `Ledger` interface)."""

from .sqlite import SqliteCdrStore, SqliteLedger

__all__ = ["SqliteCdrStore", "SqliteLedger"]
