"""Crash points for restart-safety tests: `SANDBURG_CRASH_AT=<step>` makes the process die at that step.

Only armed by the server when its test setting is on; a production server refuses the variable.
"""

from __future__ import annotations

import os

_armed: str | None = None


def arm(step: str | None) -> None:
    global _armed
    _armed = step or None


def point(step: str) -> None:
    """Die here, abruptly (like kill -9: no cleanup, no finally blocks), if the armed step is `step`."""
    if _armed == step:
        os._exit(137)
