"""`sandburg cp`'s argument handling (the copies themselves run against a real server in tests/e2e)."""

from __future__ import annotations

import pytest

from sandburg.cli.cp import split_location
from sandburg.cli.main import main


@pytest.mark.parametrize(
    "text, expected",
    [
        ("box:/workspace/a", ("box", "/workspace/a")),
        ("sb-1.x_y:rel/path", ("sb-1.x_y", "rel/path")),
        ("box:", ("box", ".")),
        ("/abs/a:b", (None, "/abs/a:b")),
        ("./a:b", (None, "./a:b")),
        ("plain", (None, "plain")),
        (":x", (None, ":x")),
    ],
)
def test_split_location(text: str, expected: tuple[str | None, str]) -> None:
    assert split_location(text) == expected


def test_cp_needs_exactly_one_sandbox_side(capsys: pytest.CaptureFixture[str]) -> None:
    for args in (["cp", "a", "b"], ["cp", "box:a", "box:b"]):
        assert main(args, client_factory=lambda url: _Fake()) == 2  # type: ignore[arg-type,return-value]
        assert "exactly one of SRC and DST" in capsys.readouterr().err


class _Fake:
    def __enter__(self) -> _Fake:
        return self

    def __exit__(self, *exc: object) -> None:
        pass
