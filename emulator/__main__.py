"""`python -m emulator [--host H] [--port P]`: run the Stripe emulator with uvicorn.

A bad flag or setting prints one line on stderr and exits with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import NoReturn

from emulator.config import ConfigError, EmulatorConfig

logger = logging.getLogger("emulator")


class _Parser(argparse.ArgumentParser):
    """argparse that reports errors in one line (its default prints the usage too)."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"emulator: {message}\n")
        raise SystemExit(2)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid port {text!r}: not a number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"invalid port {value}: out of range")
    return value


def main(argv: list[str] | None = None) -> int:
    """Parse flags, read the configuration, serve until interrupted."""
    parser = _Parser(prog="python -m emulator", description="Local Stripe (Connect) emulator")
    parser.add_argument("--host", help="interface to bind (default 127.0.0.1 or EMULATOR_HOST)")
    parser.add_argument("--port", type=_port, help="port (default 12111 or EMULATOR_PORT)")
    parser.add_argument("--state-file", help="persist state to this JSON file")
    parser.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    args = parser.parse_args(argv)
    try:
        config = EmulatorConfig.from_env()
        changes: dict[str, object] = {}
        if args.host:
            changes["host"] = args.host
        if args.port is not None:
            changes["port"] = args.port
        if args.state_file:
            changes["state_file"] = args.state_file
        config = config.replace(**changes)
    except ConfigError as exc:
        sys.stderr.write(f"emulator: {exc}\n")
        return 2
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    import uvicorn

    from emulator.server import create_app

    app = create_app(config)
    logger.info("Stripe emulator on http://%s:%d (client id %s)", config.host, config.port, config.connect_client_id)
    try:
        uvicorn.run(app, host=config.host, port=config.port, log_level=args.log_level, lifespan="on")
    except OSError as exc:
        sys.stderr.write(f"emulator: cannot listen on {config.host}:{config.port}: {exc}\n")
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
