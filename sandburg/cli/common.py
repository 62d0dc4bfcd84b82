"""What every `sandburg` subcommand prints the same way."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable
from typing import Any

from .._errors import SandburgError


def print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True))


def print_error(exc: SandburgError) -> None:
    print(f"error: {exc.message} ({exc.code})", file=sys.stderr)


def delete_each(names: Iterable[str], delete: Callable[[str], object]) -> int:
    """Delete each named thing; print what `delete` returns when it is a string, else the name. An error for one
    is printed and the others are still deleted (delete what can be deleted); exit status 1 if any failed."""
    status = 0
    for name in names:
        try:
            done = delete(name)
            print(done if isinstance(done, str) else name)
        except SandburgError as exc:
            print_error(exc)
            status = 1
    return status
