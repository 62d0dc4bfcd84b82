"""Schema migrations (Alembic), applied at server start: the store always matches the code that opens it."""

from __future__ import annotations

import os

from alembic import command
from alembic.config import Config
from sqlalchemy.engine import Engine

SCRIPT_DIR = os.path.join(os.path.dirname(__file__), "migrations")


def upgrade(engine: Engine) -> None:
    cfg = Config()
    cfg.set_main_option("script_location", SCRIPT_DIR)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
