"""Run the Alembic migrations from Python (``make demo``, tests, ``python -m lib.migrate``)."""

from __future__ import annotations

import argparse
import logging
import sys

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine

from lib.db import make_engine
from lib.errors import ConfigurationError
from lib.settings import PROJECT_ROOT, load_settings

logger = logging.getLogger(__name__)


def alembic_config() -> Config:
    """The project's Alembic configuration, independent of the working directory."""
    config = Config(str(PROJECT_ROOT / "alembic.ini"))
    config.set_main_option("script_location", str(PROJECT_ROOT / "migrations"))
    config.attributes["skip_logging_config"] = True
    return config


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database behind ``engine`` to ``revision``."""
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def downgrade(engine: Engine, revision: str = "base") -> None:
    """Undo migrations down to ``revision``."""
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Migrate the Connect Ops database.")
    parser.add_argument("--database-url", help="defaults to DATABASE_URL")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    try:
        url = args.database_url or load_settings().database_url
    except ConfigurationError as exc:
        sys.stderr.write(f"connect-ops: {exc}\n")
        return 2
    engine = make_engine(url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()
    logger.info("database migrated to head (%s)", engine.url.get_backend_name())
    return 0


if __name__ == "__main__":
    sys.exit(main())
