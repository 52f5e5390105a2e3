"""CLI: ``python -m devhost.sqlite_hub --db PATH --port N [--host H] [--durability full|normal]``.

Why this module exists: any Durable Task SDK worker or client can use the SQLite hub as
its sidecar by pointing at the address this prints. It shuts down cleanly on SIGINT or
SIGTERM.
"""

from __future__ import annotations

import argparse
import logging
import pathlib
import signal
import sys
import threading
from types import FrameType

from devhost.sqlite_hub.server import SqliteSidecar
from devhost.sqlite_hub.storage import HubInUseError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devhost.sqlite_hub", description=__doc__)
    parser.add_argument(
        "--db", required=True, type=pathlib.Path, help="SQLite task hub file (created if missing)"
    )
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0 = any free port)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--durability", choices=["full", "normal"], default="normal")
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    sidecar = SqliteSidecar(args.db, host=args.host, port=args.port, durability=args.durability)
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        sidecar.start()
    except (HubInUseError, OSError) as error:
        logging.getLogger("devhost.sqlite_hub").error("%s", error)
        return 2
    print(f"LISTENING {sidecar.address}", flush=True)  # for scripts waiting on the port
    stop.wait()
    sidecar.stop(grace=2.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
