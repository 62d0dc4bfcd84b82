"""Errors through Daytona's Python SDK (scripts/dt_errors.py): its own exception classes, and typed 501s."""

from __future__ import annotations

from tests.e2e.daytona_py.conftest import RunScript

EXPECTED = {
    "auth": ("DaytonaAuthenticationError", 401),
    "auth_create": ("DaytonaAuthenticationError", 401),
    "conflict": ("DaytonaConflictError", 409),
    "bad_image": ("DaytonaNotFoundError", 404),
    "bad_resources": ("DaytonaBadRequestError", 400),
    "not_found": ("DaytonaNotFoundError", 404),
    "timeout": ("DaytonaProcessExecutionTimeoutError", 408),
    "stopped_exec": ("DaytonaConflictError", 409),
    "secrets": ("DaytonaNotFoundError", 404),  # SECRET_NOT_FOUND: the store has no such secret
    "volume_missing": ("DaytonaNotFoundError", 404),  # VOLUME_NOT_FOUND
    "archive_started": ("DaytonaConflictError", 409),  # SANDBOX_BUSY: only a stopped sandbox is archived
}
NOT_YET = ("preview", "resize", "ssh", "update_env")


def test_sdk_exception_types(run_script: RunScript) -> None:
    out = run_script("dt_errors.py")
    for key, (cls, status) in EXPECTED.items():
        assert (out[key]["type"], out[key]["status"]) == (cls, status), (key, out[key])
    assert "DaytonaTimeoutError" in out["timeout"]["mro"]
    for key in NOT_YET:
        e = out[key]
        assert e["status"] == 501 and e["code"] == "NOT_IMPLEMENTED", (key, e)
        assert "DaytonaError" in e["mro"] and " issue" in e["message"], (key, e)
