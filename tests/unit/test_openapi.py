"""The OpenAPI spec exported to docs/openapi.json matches the code (regenerate with `make openapi`)."""

from __future__ import annotations

import json
from pathlib import Path

from sandburg.server.openapi import render, spec

EXPORTED = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def test_exported_spec_is_current() -> None:
    assert EXPORTED.exists(), "docs/openapi.json is missing: run `make openapi`"
    assert EXPORTED.read_text() == render(), "docs/openapi.json is stale: run `make openapi` and commit it"


def test_spec_has_daytona_paths_and_status_codes() -> None:
    paths = spec()["paths"]
    assert "200" in paths["/api/sandbox"]["post"]["responses"]  # Daytona's SDK needs 200 on create
    for path in (
        "/api/sandbox",
        "/api/sandbox/{sandbox_id_or_name}",
        "/api/sandbox/{sandbox_id_or_name}/start",
        "/api/sandbox/{sandbox_id_or_name}/stop",
        "/api/sandbox/{sandbox_id_or_name}/labels",
        "/api/toolbox/{sandbox_id}/process/execute",
        "/api/toolbox/{sandbox_id}/files",
        "/api/toolbox/{sandbox_id}/files/bulk-upload",
        "/api/toolbox/{sandbox_id}/files/bulk-download",
    ):
        assert path in paths, path
    json.dumps(spec())  # serialisable as is
