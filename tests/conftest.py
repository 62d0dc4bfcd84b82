"""Shared pytest setup. Unit tests need nothing; integration and e2e tests need root and the host runtimes."""

from __future__ import annotations

import os

import pytest


def pytest_sessionstart(session: pytest.Session) -> None:
    # Leftovers of an earlier run that was killed would make this run's leak checks lie.
    if os.geteuid() == 0:
        from tests.cleanup import main

        main()
