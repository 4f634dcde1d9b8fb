"""``python -m server --host H --port P``: run the companion service on uvicorn."""

from __future__ import annotations

import argparse
import logging
import sys

import uvicorn

from lib.cli import run_command
from lib.settings import Settings
from server.app import create_app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    return run_command("connect-ops server", lambda cli: _serve(cli.settings, args))


def _serve(settings: Settings, args: argparse.Namespace) -> int:
    app = create_app(settings, watchdog=True)
    logging.getLogger(__name__).info("companion service on http://%s:%s", args.host, args.port)
    uvicorn.run(app, host=args.host, port=args.port, log_level=settings.log_level.lower(),
                proxy_headers=True, server_header=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
