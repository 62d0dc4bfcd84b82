"""`python -m sandburg.server.openapi`: print the OpenAPI spec (exported to docs/openapi.json, checked by a test)."""

from __future__ import annotations

import json
from typing import Any

from .app import create_app
from .config import Settings


def spec() -> dict[str, Any]:
    app = create_app(Settings(), start_runtime=False)
    return app.openapi()


def render() -> str:
    return json.dumps(spec(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    print(render(), end="")
