"""A persistent Durable Task sidecar (``TaskHubSidecarService``) backed by one SQLite file.

Why this package exists: devhost needs a task hub that, unlike durabletask's in-memory
test backend, keeps orchestrations, timers and entities across restarts of the host.

Modules: ``migrations`` (schema), ``storage`` (the connection and transactions),
``events`` (encodings), ``tx`` (transition context), ``instances`` / ``steps`` /
``entities`` (state transitions), ``dispatch`` + ``leases`` (handing out work),
``timers`` (durable timers and wake-ups), ``queries`` (scans and paging), ``hub``
(transitions + locking), ``servicer`` (gRPC protocol), ``server`` (``SqliteSidecar``),
``__main__`` (CLI) and ``bench`` (benchmark).
"""

from devhost.sqlite_hub.server import SqliteSidecar

__all__ = ["SqliteSidecar"]
