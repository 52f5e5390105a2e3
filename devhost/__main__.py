"""`python -m devhost`: serve the app in this folder on http://127.0.0.1:7071."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from pathlib import Path

from devhost import logs
from devhost.app_index import AppLoadError
from devhost.connection import BackendAddressError
from devhost.host import DevHost, HostOptions, StartupError
from devhost.sqlite_hub.storage import HubInUseError


def parse_args(argv: list[str]) -> HostOptions:
    parser = argparse.ArgumentParser(prog="python -m devhost", description=__doc__)
    parser.add_argument(
        "--app", type=Path, default=Path.cwd(), help="folder holding function_app.py (default: .)"
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=7071, help="HTTP port (default 7071)")
    parser.add_argument(
        "--backend",
        default="sqlite",
        help="sqlite (default, persistent), memory (lost on exit), host:port of a sidecar, "
        "or a connection string such as 'Endpoint=http://localhost:8080;TaskHub=default;Authentication=None'",
    )
    parser.add_argument(
        "--db", type=Path, default=None, help="SQLite task hub file (default APP/.devhost/taskhub.db)"
    )
    parser.add_argument("--durability", choices=("full", "normal"), default="normal", help="SQLite sync mode")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING (default INFO)")
    parser.add_argument(
        "--no-local-model",
        action="store_true",
        help="do not serve the embedded local model when no model endpoint is configured",
    )
    args = parser.parse_args(argv)
    level = logging.getLevelNamesMapping().get(args.log_level.upper())
    if level is None:
        parser.error(f"--log-level {args.log_level!r} is not one of DEBUG, INFO, WARNING, ERROR")
    logs.configure(level)
    return HostOptions(
        app_dir=args.app,
        host=args.host,
        port=args.port,
        backend=args.backend,
        db_path=args.db,
        durability=args.durability,
        local_model=not args.no_local_model,
    )


def main(argv: list[str] | None = None) -> int:
    options = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        asyncio.run(DevHost(options).serve())
    except (AppLoadError, StartupError, BackendAddressError, HubInUseError) as error:
        logging.getLogger("devhost").error("%s", error)
        return 2
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
