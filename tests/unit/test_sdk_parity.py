"""The sync and async SDK have one public surface.

Every class the sync shell exports (``sandburg._client.__all__``: the client, the sandbox, its namespaces and
what they hand out) has an ``Async`` twin in ``sandburg._async_client`` with the same public members: the same
names, the same signatures (parameter names, kinds, defaults and annotations, reading ``AsyncX`` as ``X``; an
``async def`` declares its unwrapped return type, so there is no coroutine wrapping to strip), the same
docstrings, and a coroutine function wherever the sync member does I/O. Adding a member to one side only fails
here.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import sandburg
from sandburg import _async_client, _client
from sandburg._models import SandboxInfo

PURE_METHODS: frozenset[str] = frozenset({"Process.exec_stream", "Command.follow_logs"})
"""Public sync methods (``"Class.name"``) that do no I/O, so their async twins stay plain functions: they
hand out a stream that connects once entered or iterated (``async with`` / ``async for`` on the async side)."""

AWAITABLE_OR_STREAM: frozenset[str] = frozenset({"Command.logs"})
"""Public sync methods whose async twin is a plain function returning either an awaitable (``await
cmd.logs()``) or an async iterable stream (``async for chunk in cmd.logs(follow=True)``): its ``Awaitable[X]``
return annotation reads as the sync ``X``."""

SYNC_CLASSES = [obj for name in _client.__all__ if inspect.isclass(obj := getattr(_client, name))]
PAIRS = [(cls, getattr(_async_client, f"Async{cls.__name__}", None)) for cls in SYNC_CLASSES]
PAIR_IDS = [cls.__name__ for cls in SYNC_CLASSES]

_ASYNC_PREFIX = re.compile(r"\bAsync(?=[A-Z])")
_AWAITABLE = re.compile(r"\bAwaitable\[(\w+)\]")


# ------------------------------------------------------------------------------------------- comparison


def _annotation(annotation: Any) -> str:
    if annotation is inspect.Parameter.empty:
        return "<none>"
    text = annotation if isinstance(annotation, str) else inspect.formatannotation(annotation)
    return _ASYNC_PREFIX.sub("", text)  # AsyncSandbox -> Sandbox, httpx.AsyncBaseTransport -> ...


def _signature(func: Any, awaitable_result: bool = False) -> list[str]:
    sig = inspect.signature(func)
    params = [
        f"{p.kind.name} {p.name}: {_annotation(p.annotation)} = {p.default!r}"
        for p in sig.parameters.values()
    ]
    result = _annotation(sig.return_annotation)
    if awaitable_result:
        result = _AWAITABLE.sub(r"\1", result)
    return [*params, f"-> {result}"]


def _public(cls: type) -> set[str]:
    return {name for name in dir(cls) if not name.startswith("_")}


def _differences(
    sync_cls: type,
    async_cls: type,
    pure: frozenset[str] = PURE_METHODS,
    dual: frozenset[str] = AWAITABLE_OR_STREAM,
) -> list[str]:
    """Every way ``async_cls`` is not the async twin of ``sync_cls``; empty when they match."""
    problems: list[str] = []
    sync_names, async_names = _public(sync_cls), _public(async_cls)
    for name in sorted(sync_names ^ async_names):
        problems.append(f"{name}: only on the {'sync' if name in sync_names else 'async'} side")
    for name in sorted(sync_names & async_names):
        where = f"{sync_cls.__name__}.{name}"
        s, a = inspect.getattr_static(sync_cls, name), inspect.getattr_static(async_cls, name)
        if s is a:  # inherited from a base both share (SandboxBase, SandboxInfo): nothing can drift
            continue
        if type(s) is not type(a):
            problems.append(f"{where}: a {type(s).__name__} on one side, a {type(a).__name__} on the other")
            continue
        does_io = not isinstance(s, property) and where not in pure | dual
        if isinstance(s, property):
            s, a = s.fget, a.fget
        elif isinstance(s, staticmethod | classmethod):
            s, a = s.__func__, a.__func__
        if not inspect.isfunction(s):
            if s != a:
                problems.append(f"{where}: {s!r} != {a!r}")
            continue
        if _signature(s) != _signature(a, where in dual):
            problems.append(f"{where}: signature {_signature(s)} != {_signature(a, where in dual)}")
        if inspect.getdoc(s) != inspect.getdoc(a):
            problems.append(f"{where}: docstrings differ")
        if inspect.iscoroutinefunction(s):
            problems.append(f"{where}: the sync one is a coroutine function")
        elif inspect.iscoroutinefunction(a) != does_io:
            want = "a coroutine function (it does I/O)" if does_io else "a plain function (no I/O)"
            problems.append(f"{where}: the async one should be {want}")
    return problems


def _class_def(class_name: str) -> ast.ClassDef:
    """The definition of a class of the SDK, in whichever of its modules it is."""
    for path in sorted(Path(sandburg.__file__).parent.glob("_*.py")):
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, ast.ClassDef) and node.name == class_name:
                return node
    raise AssertionError(f"no class {class_name} in sandburg/_*.py")


def _attribute_docs(class_name: str) -> dict[str, str]:
    """Attribute docstrings of a class: ``name: T`` in its body or ``self.name = ...`` in ``__init__``."""
    cls = _class_def(class_name)
    inits = [f.body for f in cls.body if isinstance(f, ast.FunctionDef) and f.name == "__init__"]
    docs = {}
    for body in [cls.body, *inits]:
        for stmt, nxt in zip(body, body[1:], strict=False):
            target = stmt.target if isinstance(stmt, ast.AnnAssign) else None
            if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1:
                target = stmt.targets[0]
            name = target.id if isinstance(target, ast.Name) else getattr(target, "attr", None)
            if name and isinstance(nxt, ast.Expr) and isinstance(nxt.value, ast.Constant):
                docs[name] = nxt.value.value
    return docs


# ------------------------------------------------------------------------------------------------ tests


def test_every_sync_class_has_an_exported_async_twin() -> None:
    assert {"Sandburg", "Sandbox", "Process", "FileSystem"} <= set(PAIR_IDS)
    missing = [cls.__name__ for cls, twin in PAIRS if twin is None]
    assert not missing, f"no Async twin in sandburg._async_client for {missing}"
    assert sorted(_async_client.__all__) == sorted(twin.__name__ for _, twin in PAIRS if twin)
    for _, twin in PAIRS:
        assert twin is not None and getattr(sandburg, twin.__name__) is twin, twin
        assert twin.__name__ in sandburg.__all__


@pytest.mark.parametrize(("sync_cls", "async_cls"), PAIRS, ids=PAIR_IDS)
def test_same_public_members(sync_cls: type, async_cls: type | None) -> None:
    assert async_cls is not None
    assert _differences(sync_cls, async_cls) == []


@pytest.mark.parametrize(("sync_cls", "async_cls"), PAIRS, ids=PAIR_IDS)
def test_same_attributes_and_attribute_docs(sync_cls: type, async_cls: type | None) -> None:
    assert async_cls is not None
    annotations = [
        {k: _annotation(v) for k, v in inspect.get_annotations(cls).items()} for cls in (sync_cls, async_cls)
    ]
    assert annotations[0] == annotations[1]
    docs = _attribute_docs(sync_cls.__name__), _attribute_docs(async_cls.__name__)
    assert docs[0] == docs[1]


@pytest.mark.parametrize(("sync_cls", "async_cls"), PAIRS, ids=PAIR_IDS)
def test_context_manager_protocol(sync_cls: type, async_cls: type | None) -> None:
    assert async_cls is not None
    is_cm = hasattr(sync_cls, "__enter__")
    assert hasattr(async_cls, "__aenter__") == hasattr(async_cls, "__aexit__") == is_cm
    assert not hasattr(async_cls, "__enter__"), "`with` on an async client would not close it"
    if is_cm:
        assert inspect.iscoroutinefunction(async_cls.__aenter__)
        assert inspect.iscoroutinefunction(async_cls.__aexit__)
        assert _signature(sync_cls.__exit__) == _signature(async_cls.__aexit__)


def _refuse(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"the parity test must not send requests: {request.method} {request.url}")


def _shell(obj: object) -> bool:
    """Whether ``obj`` is one of the clients' objects (it holds a connection) rather than plain data."""
    return hasattr(obj, "_client") or hasattr(obj, "_http")


def _instance_pairs() -> Iterator[tuple[object, object]]:
    """A sync client and an async one, a sandbox of each, and every shell object reachable from them."""
    transport = httpx.MockTransport(_refuse)
    sync_client = sandburg.Sandburg("http://fake/api", "k", transport=transport)
    async_client = sandburg.AsyncSandburg("http://fake/api", "k", transport=transport)
    info = SandboxInfo(id="x", name="box", state="started")
    session, command = sandburg.SessionInfo(id="s"), sandburg.CommandInfo(id="c", command="make")
    sync_box, async_box = sandburg.Sandbox(sync_client, info), sandburg.AsyncSandbox(async_client, info)
    sync_cmd = sandburg.Command(sync_client, "x", "s", command)
    async_cmd = sandburg.AsyncCommand(async_client, "x", "s", command)
    todo: list[tuple[object, object]] = [
        (sync_client, async_client),
        (sync_box, async_box),
        (sandburg.Session(sync_client, "x", session), sandburg.AsyncSession(async_client, "x", session)),
        (sync_cmd, async_cmd),
        # streams connect only once entered or iterated: handing them out sends nothing
        (sync_cmd.follow_logs(), async_cmd.follow_logs()),
        (sync_cmd.logs(follow=True), async_cmd.logs(follow=True)),
        (sync_box.process.exec_stream("make"), async_box.process.exec_stream("make")),
    ]
    try:
        while todo:
            pair = todo.pop()
            yield pair
            for name in {n for n in vars(pair[0]) if not n.startswith("_")}:
                s, a = getattr(pair[0], name), getattr(pair[1], name, None)
                if _shell(s):
                    todo.append((s, a))
    finally:
        sync_client.close()
        asyncio.run(async_client.close())


def test_instances_have_the_same_public_attributes() -> None:
    twins = dict((s, a) for s, a in PAIRS)
    seen = set()
    for s, a in _instance_pairs():
        where = type(s).__name__
        assert type(s) in twins, f"{where} is reachable from the client but not in _client.__all__"
        assert type(a) is twins[type(s)], f"{where}: the async side has a {type(a).__name__}"
        seen.add(type(s))
        public = [{n for n in vars(x) if not n.startswith("_")} for x in (s, a)]
        assert public[0] == public[1], where
        for name in public[0]:
            if not _shell(getattr(s, name)):
                assert getattr(s, name) == getattr(a, name), f"{where}.{name}"
    assert seen == set(SYNC_CLASSES)


# ------------------------------------------------------------------- the comparison catches drift


class Toy:
    """A sync shell."""

    def fetch(self, key: str, *, timeout: float | None = 5.0) -> Toy:
        """Fetch."""
        raise NotImplementedError

    def only_sync(self) -> None:
        """Added on one side only."""

    def send(self, data: bytes) -> int:
        """Send."""
        raise NotImplementedError

    def describe(self) -> str:
        """Describe."""
        raise NotImplementedError

    @property
    def ready(self) -> bool:
        """Ready."""
        return True


class AsyncToy:
    """Its faithful twin."""

    async def fetch(self, key: str, *, timeout: float | None = 5.0) -> AsyncToy:
        """Fetch."""
        raise NotImplementedError

    async def only_sync(self) -> None:
        """Added on one side only."""

    async def send(self, data: bytes) -> int:
        """Send."""
        raise NotImplementedError

    async def describe(self) -> str:
        """Describe."""
        raise NotImplementedError

    @property
    def ready(self) -> bool:
        """Ready."""
        return True


class AsyncToyDrifted:
    """A twin that drifted in every way the test looks for."""

    async def fetch(self, key: str, *, timeout: float | None = 10.0) -> AsyncToy:
        """Fetch."""
        raise NotImplementedError

    def send(self, data: bytes) -> int:
        """Send."""
        raise NotImplementedError

    async def describe(self) -> str:
        """Describe it."""
        raise NotImplementedError

    async def only_async(self) -> None:
        """Added on one side only."""

    ready = True


def test_the_comparison_catches_drift() -> None:
    assert _differences(Toy, AsyncToy) == []
    problems = _differences(Toy, AsyncToyDrifted)
    assert [p.split(":")[0] for p in problems] == [
        "only_async",
        "only_sync",
        "Toy.describe",
        "Toy.fetch",
        "Toy.ready",
        "Toy.send",
    ], problems
    assert "docstrings differ" in problems[2] and "signature" in problems[3]
    assert "should be a coroutine function" in problems[5]
    # a method that does no I/O must stay a plain function on the async side
    assert _differences(Toy, AsyncToy, pure=frozenset({"Toy.describe"})) == [
        "Toy.describe: the async one should be a plain function (no I/O)"
    ]
