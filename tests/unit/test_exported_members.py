"""The public surface of ``sandburg``: what ``__all__`` lists is importable, documented, and cheap to import."""

from __future__ import annotations

import ast
import inspect
import json
import subprocess
import sys
from pathlib import Path

import sandburg
from sandburg import _errors

HEAVY = (
    "fastapi",
    "sqlalchemy",
    "uvicorn",
    "starlette",
    "pydantic",
    "alembic",
    "sandburg.server",
    "sandburg.node",
)


def test_all_is_importable_and_unique() -> None:
    assert len(sandburg.__all__) == len(set(sandburg.__all__))
    public = {name for name in dir(sandburg) if not name.startswith("_")}
    for name in sandburg.__all__:
        assert hasattr(sandburg, name), name
    # nothing public by accident (submodules excepted)
    leaked = {n for n in public - set(sandburg.__all__) if not inspect.ismodule(getattr(sandburg, n))}
    assert not leaked


def test_every_exception_is_exported() -> None:
    exceptions = {n for n, o in vars(_errors).items() if isinstance(o, type) and issubclass(o, BaseException)}
    assert exceptions <= set(sandburg.__all__)


def test_public_names_present_as_package_members() -> None:
    for name in sandburg.__all__:
        obj = getattr(sandburg, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            assert obj.__module__ == "sandburg", name


def _attribute_docstrings(module: object) -> set[str]:
    """Names assigned at module level and followed by a string literal (attribute docstrings)."""
    tree = ast.parse(Path(inspect.getfile(module)).read_text())  # type: ignore[arg-type]
    found = set()
    for stmt, nxt in zip(tree.body, tree.body[1:], strict=False):
        target: ast.expr | None = stmt.target if isinstance(stmt, ast.AnnAssign) else None
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
            target = stmt.targets[0]
        if isinstance(target, ast.Name) and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
            found.add(target.id)
    return found


def test_every_public_name_is_documented() -> None:
    missing = []
    for name in sandburg.__all__:
        obj = getattr(sandburg, name)
        if inspect.isclass(obj) or inspect.isfunction(obj):
            if not (obj.__doc__ or "").strip() or (inspect.isclass(obj) and "__doc__" not in vars(obj)):
                missing.append(name)
            if inspect.isclass(obj) and not issubclass(obj, BaseException):
                for attr, member in vars(obj).items():
                    if attr.startswith("_") or not callable(member) and not isinstance(member, property):
                        continue
                    func = member.__func__ if isinstance(member, staticmethod | classmethod) else member
                    if not (getattr(func, "__doc__", None) or "").strip():
                        missing.append(f"{name}.{attr}")
        else:  # constants: need an attribute docstring where they are defined
            modules = [sys.modules[m] for m in ("sandburg._client", "sandburg._config", "sandburg._core")]
            if not any(name in _attribute_docstrings(m) for m in modules):
                missing.append(name)
    assert not missing, f"undocumented public names: {missing}"


def _modules_after(statement: str) -> list[str]:
    code = f"import sys, json; {statement}; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return [m for m in json.loads(out) if m.startswith(HEAVY)]


def test_importing_the_sdk_stays_light() -> None:
    assert _modules_after("import sandburg") == []


def test_importing_the_cli_stays_light() -> None:
    assert _modules_after("import sandburg.cli.main") == []
