"""The start-up every command line shares: settings, logging, the database and Stripe, and a
problem said in one line on stderr, never a traceback.

    def main(argv: list[str] | None = None) -> int:
        args = parser.parse_args(argv)
        return run_command("connect-ops sync", lambda cli: _sync(cli, args),
                           require=("STRIPE_SECRET_KEY",))

Exit codes: what the body returns; 2 for a configuration problem (``ConfigurationError``,
raised while loading the settings or by the body); 1 for any other ``ConnectOpsError`` (the
command was refused or failed).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from functools import cached_property

from sqlalchemy import Engine

from lib.db import SessionFactory, make_engine, make_session_factory
from lib.errors import ConfigurationError, ConnectOpsError
from lib.logging_setup import configure_logging
from lib.settings import Settings, load_settings
from lib.stripe_gateway import StripeGateway

EXIT_FAILED = 1
EXIT_CONFIGURATION = 2


class CommandContext:
    """A command's settings; its engine, session factory and gateway are made on first use,
    so a command that never touches the database or Stripe opens neither."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def engine(self) -> Engine:
        return make_engine(self.settings.database_url)

    @cached_property
    def factory(self) -> SessionFactory:
        return make_session_factory(self.engine)

    @cached_property
    def gateway(self) -> StripeGateway:
        return StripeGateway(self.settings)

    def close(self) -> None:
        """Dispose of the engine if one was made."""
        if "engine" in self.__dict__:
            self.engine.dispose()


def say(prog: str, message: object) -> None:
    """One line on stderr, named for the command."""
    sys.stderr.write(f"{prog}: {message}\n")


def run_command(
    prog: str, body: Callable[[CommandContext], int], *, require: Sequence[str] = (),
    log: bool = True,
) -> int:
    """Load the settings (``require`` names the variables the command needs), configure
    logging unless ``log`` is False, run ``body`` and return its exit code."""
    try:
        settings = load_settings().require(*require)
    except ConfigurationError as exc:
        say(prog, exc)
        return EXIT_CONFIGURATION
    if log:
        configure_logging(settings.log_level)
    context = CommandContext(settings)
    try:
        return body(context)
    except ConfigurationError as exc:
        say(prog, exc)
        return EXIT_CONFIGURATION
    except ConnectOpsError as exc:
        say(prog, exc)
        return EXIT_FAILED
    finally:
        context.close()
