"""Helpers of the test scripts (run by .venv-daytona's python, next to Daytona's SDK). The scripts are named
dt_*.py: a script's directory comes first on sys.path, so a plain name (`git`, `errors`) could shadow a library's
module."""

from __future__ import annotations

import json
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

T = TypeVar("T")
TEST_LABEL = {"sandburg-test": os.environ.get("SANDBURG_TEST_NAME", "daytona-py")[:60]}


def emit(result: dict[str, Any]) -> None:
    """The script's result: one JSON line, last on stdout."""
    sys.stdout.write(json.dumps(result, default=str) + "\n")
    sys.stdout.flush()


def error_info(exc: BaseException) -> dict[str, Any]:
    return {
        "type": type(exc).__name__,
        "mro": [c.__name__ for c in type(exc).__mro__],
        "status": getattr(exc, "status_code", None) or getattr(exc, "status", None),
        "code": getattr(exc, "code", None) or getattr(exc, "error_code", None),
        "message": str(exc)[:500],
    }


def catch(fn: Callable[[], T]) -> dict[str, Any]:
    """Call `fn`, which should raise: the exception's class names, status and message."""
    try:
        value = fn()
    except Exception as exc:  # noqa: BLE001 - the point is to look at it
        return error_info(exc)
    return {"type": None, "returned": repr(value)[:300]}


@contextmanager
def cleanup(daytona: Any) -> Iterator[list[Any]]:
    """Sandboxes appended to the yielded list are deleted at the end, whatever happens."""
    made: list[Any] = []
    try:
        yield made
    except BaseException:
        traceback.print_exc()
        raise
    finally:
        for sandbox in made:
            try:
                daytona.delete(sandbox)
            except Exception as exc:  # noqa: BLE001 - already deleted by the script is fine
                if "not found" not in str(exc).lower():
                    print(f"cleanup of {sandbox.id} failed: {exc}", file=sys.stderr)
