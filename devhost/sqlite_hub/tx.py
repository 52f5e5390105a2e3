"""The context handed to every state-transition function.

Why this module exists: the domain modules (instances, steps, entities) are plain
functions that run *inside* one ``Storage.write()`` transaction. ``Tx`` bundles what
they share: the connection, one ``now`` for the whole transition, the lease table (so
removing or replacing state can void leases on it) and a log for diagnostics.
"""

from __future__ import annotations

import logging
import sqlite3
from dataclasses import dataclass

from devhost.sqlite_hub.leases import LeaseTable

log = logging.getLogger("devhost.sqlite_hub")


@dataclass
class Tx:
    conn: sqlite3.Connection
    now: float
    leases: LeaseTable
    max_history: int = 10_000
