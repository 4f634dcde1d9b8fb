"""PostgreSQL connections carry the desk's session settings (lib.db.POSTGRESQL_SESSION_OPTIONS)."""

from __future__ import annotations

from sqlalchemy import Engine, text

from tests.conftest import requires_postgresql


@requires_postgresql()
def test_jit_is_off_on_every_pooled_connection(engine: Engine) -> None:
    with engine.connect() as first, engine.connect() as second:
        assert first.execute(text("SHOW jit")).scalar_one() == "off"
        assert second.execute(text("SHOW jit")).scalar_one() == "off"
