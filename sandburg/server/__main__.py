"""`python -m sandburg.server`: run the server in the foreground."""

from __future__ import annotations

from .daemon import run_foreground

if __name__ == "__main__":
    raise SystemExit(run_foreground())
