"""``python -m server --host H --port P``: run the companion service on uvicorn."""

from __future__ import annotations

import argparse
import logging
import sys

import uvicorn

from lib.errors import ConfigurationError
from lib.logging_setup import configure_logging
from lib.settings import load_settings
from server.app import create_app


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    args = parser.parse_args(argv)
    try:
        settings = load_settings()
        configure_logging(settings.log_level)
        app = create_app(settings, watchdog=True)
    except ConfigurationError as exc:
        sys.stderr.write(f"connect-ops server: {exc}\n")
        return 2
    logging.getLogger(__name__).info("companion service on http://%s:%s", args.host, args.port)
    uvicorn.run(app, host=args.host, port=args.port, log_level=settings.log_level.lower(),
                proxy_headers=True, server_header=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
