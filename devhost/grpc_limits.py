"""The gRPC message size limit of every channel and server devhost opens.

Why this module exists: gRPC's default receive limit is 4 MiB, far below what Azure
accepts for a Durable Task message, so an entity state or orchestration input over 4 MiB
failed locally with RESOURCE_EXHAUSTED although it works in Azure. The SQLite hub's
server, the loopback proxy and the work-item driver's channel all take their limits from
here, so they cannot drift apart.
"""

from __future__ import annotations

# Send and receive limit, in bytes, for one gRPC message.
MAX_MESSAGE_BYTES = 64 * 1024 * 1024

GRPC_OPTIONS: tuple[tuple[str, int], ...] = (
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
)
