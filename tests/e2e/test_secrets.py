"""Secrets against the real server (docs/secrets.md): the API never answers a value, the store holds only
ciphertext, every toolbox process gets the current values (a rotation reaches a running sandbox), output shows
them as ***, references are checked at create and delete, and snapshots hold no value while forks and restores get
the current one."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import uuid
from collections.abc import Callable, Iterator

import pytest
from websockets.exceptions import ConnectionClosed

from sandburg import (
    ImageNotFoundError,
    InvalidSecretError,
    Sandburg,
    SecretInUseError,
    SecretNotFoundError,
)
from tests.e2e.conftest import TIERS
from tests.e2e.test_bad_input import assert_error
from tests.e2e.test_streams import ERR, OUT, collect, read_until, ws

SPLIT = 'printf %s "${V:0:6}"; sleep 0.4; printf "%s\\n" "${V:6}"'  # the value written in two pieces


def uniq(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:8].upper()}"


def value() -> str:
    return f"sk-test-{uuid.uuid4().hex}"


def sha(v: str) -> str:
    return hashlib.sha256(v.encode()).hexdigest()


@pytest.fixture
def secret(sb: Sandburg) -> Iterator[Callable[[], tuple[str, str]]]:
    """A secret of this test: (name, value); deleted afterwards (its sandboxes are deleted first)."""
    made: list[str] = []

    def make() -> tuple[str, str]:
        name, val = uniq("TOKEN"), value()
        sb.secrets.set(name, val)
        made.append(name)
        return name, val

    yield make
    for name in made:
        try:
            sb.secrets.delete(name)
        except (SecretNotFoundError, SecretInUseError):
            pass


def stored_bytes(server) -> bytes:
    """Everything the server keeps on disk that could hold a value: the database with its WAL, and its log."""
    out = b""
    for name in ("sandburg.db", "sandburg.db-wal", "sandburg.db-shm"):
        path = os.path.join(server.data_dir, name)
        if os.path.exists(path):
            with open(path, "rb") as fh:
                out += fh.read()
    with open(server.log_path, "rb") as fh:
        return out + fh.read()


def test_api_never_answers_a_value(sb, http, server):
    name, val = uniq("API_KEY"), value()
    try:
        r = http.put(f"secrets/{name}", json={"value": val})
        assert r.status_code == 200 and val not in r.text
        assert set(r.json()) == {"name", "version", "createdAt", "updatedAt"} and r.json()["version"] == 1
        info = sb.secrets.set(name, val + "-2")
        assert info.name == name and info.version == 2 and info.updated_at >= info.created_at
        for path in ("secrets", f"secrets/{name}"):
            r = http.get(path)
            assert r.status_code == 200 and val not in r.text
        assert [s.version for s in sb.secrets.list() if s.name == name] == [2]
        assert sb.secrets.get(name).version == 2
        # at rest: ciphertext only, in the database file, its WAL and the server's log
        assert val.encode() not in stored_bytes(server)
        key = os.path.join(server.data_dir, "master.key")
        assert stat.S_IMODE(os.stat(key).st_mode) == 0o600 and os.path.getsize(key) == 32
    finally:
        sb.secrets.delete(name)
    with pytest.raises(SecretNotFoundError):
        sb.secrets.get(name)
    assert_error(http.delete(f"secrets/{name}"), 404, "SECRET_NOT_FOUND")


@pytest.mark.parametrize(
    "name, body, status, code",
    [
        ("bad-name", {"value": "x"}, 422, "INVALID_SECRET"),
        ("1STARTS_WITH_DIGIT", {"value": "x"}, 422, "INVALID_SECRET"),
        ("A" * 129, {"value": "x"}, 422, "INVALID_SECRET"),
        ("EMPTY_VALUE", {"value": ""}, 422, "INVALID_SECRET"),
        ("NUL_VALUE", {"value": "a\u0000b"}, 422, "INVALID_SECRET"),
        ("TOO_LARGE", {"value": "x" * (64 * 1024 + 1)}, 413, "SECRET_TOO_LARGE"),
        ("EXTRA_FIELD", {"value": "x", "version": 3}, 400, "VALIDATION_ERROR"),
        ("NO_VALUE", {}, 400, "VALIDATION_ERROR"),
    ],
)
def test_bad_secrets_are_refused(http, name, body, status, code):
    assert_error(http.put(f"secrets/{name}", json=body), status, code)
    assert name not in {s["name"] for s in http.get("secrets").json()["items"]}


def test_bad_references_make_no_sandbox(sb, http, secret):
    name, _ = secret()
    before = {b.id for b in sb.list()}
    box_name = f"sec-{uuid.uuid4().hex[:8]}"
    with pytest.raises(SecretNotFoundError):
        sb.create(name=box_name, image="busybox", secrets=[name, "NO_SUCH_SECRET_X"])
    with pytest.raises(InvalidSecretError):
        sb.create(name=box_name, image="busybox", secrets={"BAD-ENV": name})
    with pytest.raises(InvalidSecretError):  # the same variable from env and from a secret: ambiguous
        sb.create(name=box_name, image="busybox", env={name: "plain"}, secrets=[name])
    assert_error(
        http.post("sandbox", json={"name": box_name, "image": "busybox", "secrets": [{"A": "NOPE_NOPE"}]}),
        404, "SECRET_NOT_FOUND",
    )  # fmt: skip
    assert {b.id for b in sb.list()} == before


@pytest.mark.parametrize("tier", TIERS)
def test_injected_rotated_and_masked(sb, make_box, secret, tier):
    (a, va), (b, vb) = secret(), secret()
    box = make_box(isolation=tier, secrets=[a], labels={})
    other = make_box(isolation=tier, secrets={"MAPPED_ENV": b})
    # the value is in the env: seen through its hash (output holding it is masked)
    assert box.process.exec(f'printf %s "${a}" | sha256sum').stdout.split()[0] == sha(va)
    assert other.process.exec('printf %s "$MAPPED_ENV" | sha256sum').stdout.split()[0] == sha(vb)
    env = box.process.exec("env").stdout
    assert f"{a}=***" in env and va not in env
    r = box.process.exec(f'echo "${a}"; echo "${a}" >&2; exit 3')
    assert (r.exit_code, r.stdout, r.stderr) == (3, "***\n", "***\n")
    # a request's own env wins over a secret of the same name, for that command
    assert box.process.exec(f'echo "${a}"', env={a: "mine"}).stdout == "mine\n"
    # rotation: the running sandbox's next command has the new value, no restart
    rotated = value()
    assert sb.secrets.set(a, rotated).version == 2
    assert box.process.exec(f'printf %s "${a}" | sha256sum').stdout.split()[0] == sha(rotated)
    assert box.process.exec(f'echo "${a}"').stdout == "***\n"
    # the sandbox lists references, never values
    box.refresh()
    assert box.raw["secretRefs"] == {a: a} and sb.get(other.id).raw["secretRefs"] == {"MAPPED_ENV": b}
    assert va not in str(sb.get(box.id)) and rotated not in str(box)


def test_every_process_path_gets_and_masks(sb, http, server, make_box, secret):
    name, val = secret()
    box = make_box(isolation="container", image="debian-12", secrets={"V": name})
    tb = f"toolbox/{box.id}"
    # exec, with the value written in two pieces
    r = box.process.exec(SPLIT)
    assert r.stdout == "***\n", r
    # code-run
    r = http.post(f"{tb}/process/code-run", json={"code": "import os; print(os.environ['V'])"})
    assert r.status_code == 200 and r.json()["stdout"] == "***\n" and val not in r.text
    # streaming exec: the value split across chunks is still masked
    with ws(server, f"{tb}/process/execute/stream") as conn:
        conn.send(json.dumps({"command": SPLIT + '; echo "$V" >&2'}))
        out, err, ctl = collect(conn)
    assert (out, err, ctl["exitCode"]) == (b"***\n", b"***\n", 0)
    # sessions: the foreground answer, the logs, and following them
    session = box.process.create_session("s1")
    res = session.exec('echo "$V"; printf %s "$V" | sha256sum')
    assert res.stdout.split() == ["***", sha(val), "-"], res
    cmd = session.exec(SPLIT, background=True)
    frames = []
    path = f"{tb}/process/session/s1/command/{cmd.id}/logs"
    with ws(server, path) as conn:
        try:
            while True:
                frames.append(conn.recv(timeout=20))
        except ConnectionClosed:  # closed at the command's end
            pass
    assert b"".join(f[3:] for f in frames if isinstance(f, bytes) and f[:3] in (OUT, ERR)) == b"***\n"
    logs = http.get(f"{tb}/process/session/s1/command/{cmd.id}/logs").json()
    assert logs["stdout"] == "***\n" and logs["output"] == "***\n"
    # a terminal
    with ws(server, f"{tb}/process/pty/create-connect?id=t1") as conn:
        read_until(conn, b"# ")
        conn.send(b'echo "[$V]"; printf %s "$V" | sha256sum\n')
        screen = read_until(conn, sha(val).encode())
        assert b"[***]" in screen and val.encode() not in screen
        conn.send(b"exit\n")
        collect(conn)
    info = http.get(f"{tb}/process/pty").json()
    assert val not in json.dumps(info)
    assert val.encode() not in stored_bytes(server)


def test_delete_is_refused_while_referenced(sb, make_box, secret):
    name, _ = secret()
    box = make_box(isolation="container", secrets=[name])
    box.stop()  # a stopped sandbox still uses it
    with pytest.raises(SecretInUseError) as err:
        sb.secrets.delete(name)
    assert box.name in err.value.message
    box.delete()
    assert sb.secrets.delete(name).name == name
    with pytest.raises(SecretNotFoundError):
        sb.secrets.get(name)


def test_snapshots_hold_no_value_and_forks_get_the_current_one(sb, http, server, make_box, secret):
    name, val = secret()
    box = make_box(isolation="container", secrets={"V": name}, env={"PLAIN": "visible"})
    snap_name = f"secret-snap-{uuid.uuid4().hex[:8]}"
    try:
        snap = box.snapshot(snap_name)
        assert snap.env == {"PLAIN": "visible"}
        assert (
            val not in json.dumps(snap.settings) and val not in http.get(f"state-snapshots/{snap_name}").text
        )
        assert val.encode() not in stored_bytes(server)
        rotated = value()
        sb.secrets.set(name, rotated)
        box.restore(snap_name)
        assert box.process.exec('printf %s "$V" | sha256sum').stdout.split()[0] == sha(rotated)
        (child,) = sb.fork(snap_name)
        try:
            assert child.process.exec('printf %s "$V" | sha256sum').stdout.split()[0] == sha(rotated)
            assert child.process.exec('echo "$V"').stdout == "***\n"
            with pytest.raises(SecretInUseError):  # the fork references it too
                sb.secrets.delete(name)
        finally:
            child.delete()
    finally:
        try:
            sb.snapshots.delete(snap_name)
        except ImageNotFoundError:
            pass


def test_short_values_are_not_masked(sb, make_box):
    name = uniq("SHORT")
    sb.secrets.set(name, "abc")
    try:
        box = make_box(isolation="container", secrets=[name])
        assert box.process.exec(f'echo "${name}"').stdout == "abc\n"
        box.delete()
    finally:
        sb.secrets.delete(name)


def test_cli_secret_commands(cli, sb, server):
    name, val = uniq("CLI_TOKEN"), value()
    r = cli("secret", "set", name, "--value", val)
    assert r.returncode == 0 and r.stdout == f"{name} version 1\n", r.stderr
    r = cli("secret", "ls")
    assert name in r.stdout and val not in r.stdout
    r = cli(
        "create", "--image", "busybox", "--isolation", "container", "--secret", f"V={name}", "--secret", name
    )
    assert r.returncode == 0, r.stderr
    box_id = r.stdout.strip()
    try:
        r = cli("exec", box_id, "--", 'echo "$V $' + name + '"')
        assert r.stdout == "*** ***\n", r
        r = cli("secret", "rm", name)
        assert r.returncode == 1 and "SECRET_IN_USE" in r.stderr
    finally:
        sb.get(box_id).delete()
    r = cli("secret", "inspect", name)
    assert json.loads(r.stdout)["version"] == 1 and val not in r.stdout
    assert cli("secret", "rm", name).returncode == 0
    r = cli("secret", "set", "bad-name", "--value", "x")
    assert r.returncode == 1 and "INVALID_SECRET" in r.stderr
