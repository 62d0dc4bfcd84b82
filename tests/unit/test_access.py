"""access.py: which role and scopes may use which area, read or write (the pure decision; the e2e tests in
tests/e2e/test_tenants.py drive it through the server)."""

from __future__ import annotations

import pytest

from sandburg.server import access
from sandburg.server.errors import ApiError


@pytest.mark.parametrize(
    ("path", "area"),
    [
        ("/api/sandbox", "sandboxes"),
        ("/api/sandbox/abc/stop", "sandboxes"),
        ("/api/sandbox/abc/network", "sandboxes"),
        ("/api/sandbox/abc/snapshot", "snapshots"),
        ("/api/sandbox/abc/restore", "snapshots"),
        ("/api/sandbox/abc/fork", "snapshots"),
        ("/api/state-snapshots/x/fork", "snapshots"),
        ("/api/toolbox/abc/process/execute", "toolbox"),
        ("/api/images/x", "images"),
        ("/api/snapshots/x", "images"),  # Daytona's snapshots are images
        ("/api/secrets/X", "secrets"),
        ("/api/volumes", "volumes"),
        ("/api/audit/verify", "audit"),
        ("/api/keys", "keys"),
        ("/api/keys/current", None),
        ("/api/organizations/current/usage", "organizations"),
        ("/api/health", None),
        ("/api/config", None),
    ],
)
def test_area_of(path: str, area: str | None) -> None:
    assert access.area_of(path) == area


def test_writes_are_unsafe_methods_except_read_posts() -> None:
    assert not access.is_write("GET", "/api/sandbox")
    assert access.is_write("POST", "/api/sandbox")
    assert access.is_write("DELETE", "/api/secrets/X")
    assert not access.is_write("POST", "/api/toolbox/x/files/bulk-download")


def test_roles() -> None:
    assert access.allows("read-only", None, "toolbox", write=False)
    assert not access.allows("read-only", None, "toolbox", write=True)
    assert access.allows("member", None, "toolbox", write=True)
    assert not access.allows("member", None, "keys", write=False)
    assert access.allows("admin", None, "keys", write=True)
    assert not access.allows("root", None, "sandboxes", write=False)


def test_scopes_narrow_the_role() -> None:
    scopes = access.parse_scopes(["sandboxes:read", "toolbox"])
    assert access.allows("member", scopes, "sandboxes", write=False)
    assert not access.allows("member", scopes, "sandboxes", write=True)
    assert access.allows("member", scopes, "toolbox", write=True)
    assert not access.allows("read-only", scopes, "toolbox", write=True)  # the role stays the ceiling
    assert not access.allows("admin", scopes, "secrets", write=False)


@pytest.mark.parametrize("bad", [["nope"], ["toolbox:write"], ["sandboxes:"], []])
def test_bad_scopes_are_refused(bad: list[str]) -> None:
    with pytest.raises(ApiError) as info:
        access.parse_scopes(bad)
    assert info.value.code == "VALIDATION_ERROR"


def test_check_names_what_is_missing() -> None:
    with pytest.raises(ApiError) as info:
        access.check("read-only", None, "POST", "/api/toolbox/x/process/execute")
    assert info.value.code == "FORBIDDEN" and "toolbox" in info.value.message
    access.check("read-only", None, "GET", "/api/toolbox/x/files/download")  # no raise


def test_a_key_grants_no_more_than_it_has() -> None:
    narrow = frozenset({"sandboxes", "toolbox:read"})
    assert access.may_grant("admin", None, "member", None)
    assert not access.may_grant("member", None, "admin", None)
    assert not access.may_grant("admin", narrow, "member", None)
    assert access.may_grant("admin", narrow, "member", frozenset({"sandboxes:read", "toolbox:read"}))
    assert not access.may_grant("admin", narrow, "member", frozenset({"toolbox"}))
