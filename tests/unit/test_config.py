from __future__ import annotations

import pytest

from sandburg.server.config import Settings


def test_crash_hook_needs_test_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBURG_CRASH_AT", "create.row")
    monkeypatch.delenv("SANDBURG_TEST_MODE", raising=False)
    with pytest.raises(SystemExit, match="test hook"):
        Settings.from_env()
    monkeypatch.setenv("SANDBURG_TEST_MODE", "1")
    assert Settings.from_env().crash_at == "create.row"


def test_bad_integer_setting_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SANDBURG_PORT", "abc")
    with pytest.raises(SystemExit, match="SANDBURG_PORT must be an integer"):
        Settings.from_env()
