"""The toolbox file API over raw HTTP, on both tiers: Daytona's paths, bodies and status codes, and the edges
(not found, not empty, path traversal, symlinks pointing out, names that are not UTF-8, binary content)."""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from sandburg import Sandbox, Sandburg
from tests.e2e.conftest import TIERS
from tests.e2e.test_bad_input import assert_error

CLIMB = "../../../../../../etc"  # from /workspace: above /


@pytest.fixture(scope="module", params=TIERS)
def box(sb: Sandburg, request: pytest.FixtureRequest) -> Iterator[Sandbox]:
    b = sb.create(image="busybox", isolation=request.param, labels={"test": "test_files"})
    try:
        yield b
    finally:
        b.delete()


@pytest.fixture
def d(box: Sandbox, http: httpx.Client, request: pytest.FixtureRequest) -> str:
    """A fresh directory in the sandbox for one test."""
    path = f"/workspace/{request.node.originalname}-{uuid.uuid4().hex[:6]}"
    sh(http, box, f"mkdir -p {path}")
    return path


def tb(box: Sandbox, route: str) -> str:
    return f"toolbox/{box.id}/{route}"


def sh(http: httpx.Client, box: Sandbox, command: str) -> str:
    r = http.post(tb(box, "process/execute"), json={"command": command, "timeout": 30})
    assert r.status_code == 200, r.text
    assert r.json()["exitCode"] == 0, r.json()
    return str(r.json()["stdout"])


def names(entries: list[dict[str, Any]], base: str) -> list[str]:
    return [e["path"][len(base) + 1 :] for e in entries]


def test_list_with_depth(http, box, d):
    sh(
        http,
        box,
        f"cd {d} && mkdir -p a/b/c && echo x > a/b/c/f && echo y > top && ln -s / root && ln -s . loop",
    )
    r = http.get(tb(box, "files"), params={"path": d})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert names(r.json(), d) == ["a", "loop", "root", "top"]
    assert "x-sandburg-truncated" not in r.headers
    r = http.get(tb(box, "files"), params={"path": d, "depth": 3})
    assert names(r.json(), d) == ["a", "a/b", "a/b/c", "loop", "root", "top"]  # links listed, never entered
    entries = http.get(tb(box, "files"), params={"path": d, "depth": 100}).json()
    assert names(entries, d) == ["a", "a/b", "a/b/c", "a/b/c/f", "loop", "root", "top"]
    f = entries[3]
    assert {k: f[k] for k in ("name", "isDir", "size", "mode", "permissions", "owner", "group")} == {
        "name": "f", "isDir": False, "size": 2, "mode": "-rw-r--r--", "permissions": "0644", "owner": "root",
        "group": "root",
    }  # fmt: skip
    assert entries[4]["linkTarget"] == "." and entries[4]["isDir"] is True
    assert_error(http.get(tb(box, "files"), params={"path": d, "depth": 0}), 400, "VALIDATION_ERROR")
    assert_error(http.get(tb(box, "files"), params={"path": f"{d}/nope"}), 404, "FILE_NOT_FOUND")
    assert_error(http.get(tb(box, "files"), params={"path": f"{d}/top", "depth": 2}), 400, "NOT_A_DIRECTORY")
    assert_error(http.get(tb(box, "files"), params={"path": CLIMB}), 400, "INVALID_FILE_PATH")


def test_create_folder(http, box, d):
    r = http.post(tb(box, "files/folder"), params={"path": f"{d}/x/y", "mode": "750"})
    assert (r.status_code, r.content) == (201, b"")
    assert sh(http, box, f"stat -c %a {d}/x/y") == "750\n"
    assert http.post(tb(box, "files/folder"), params={"path": f"{d}/x/y", "mode": "700"}).status_code == 201
    assert sh(http, box, f"stat -c %a {d}/x/y") == "750\n"  # mkdir -p: an existing directory is left alone
    assert http.post(tb(box, "files/folder"), params={"path": f"{d}/dflt"}).status_code == 201
    assert sh(http, box, f"stat -c %a {d}/dflt") == "755\n"
    sh(http, box, f"touch {d}/file")
    assert_error(http.post(tb(box, "files/folder"), params={"path": f"{d}/file"}), 409, "FILE_EXISTS")
    assert_error(
        http.post(tb(box, "files/folder"), params={"path": f"{d}/m", "mode": "rwx"}), 400, "VALIDATION_ERROR"
    )
    assert_error(http.post(tb(box, "files/folder"), params={"path": CLIMB}), 400, "INVALID_FILE_PATH")


def test_delete(http, box, d):
    sh(http, box, f"cd {d} && touch f && mkdir empty full && touch full/x && mkdir -p keep && touch keep/k "
                  f"&& ln -s {d}/keep link && ln -s {d}/keep full/inner")  # fmt: skip
    delete = lambda path, **kw: http.delete(tb(box, "files"), params={"path": path, **kw})  # noqa: E731
    r = delete(f"{d}/f")
    assert (r.status_code, r.content) == (204, b"")
    assert delete(f"{d}/empty").status_code == 204
    body = assert_error(delete(f"{d}/full"), 409, "DIRECTORY_NOT_EMPTY")
    assert body["source"] == "DAYTONA_DAEMON"
    assert delete(f"{d}/link").status_code == 204  # the link, not the directory it points to
    assert delete(f"{d}/full", recursive="true").status_code == 204  # does not follow full/inner
    assert sh(http, box, f"ls {d} {d}/keep") == f"{d}:\nkeep\n\n{d}/keep:\nk\n"
    assert_error(delete(f"{d}/f"), 404, "FILE_NOT_FOUND")
    assert_error(delete(CLIMB), 400, "INVALID_FILE_PATH")
    assert_error(delete("/", recursive="true"), 400, "INVALID_FILE_PATH")
    assert_error(http.delete(tb(box, "files")), 400, "VALIDATION_ERROR")  # path is required


def test_move(http, box, d):
    sh(http, box, f"cd {d} && echo a > a && echo b > b && mkdir dir && echo i > dir/i")
    move = lambda s, t, **kw: http.post(tb(box, "files/move"), params={"source": s, "destination": t, **kw})  # noqa: E731
    r = move(f"{d}/a", f"{d}/a2")
    assert (r.status_code, r.content) == (200, b"")
    assert_error(move(f"{d}/a2", f"{d}/b"), 409, "FILE_EXISTS")
    assert move(f"{d}/a2", f"{d}/b", overwrite="true").status_code == 200
    assert sh(http, box, f"cat {d}/b; ls {d}") == "a\nb\ndir\n"
    assert_error(move(f"{d}/nope", f"{d}/x"), 404, "FILE_NOT_FOUND")
    assert_error(move(f"{d}/b", f"{d}/no/such/dir"), 404, "FILE_NOT_FOUND")
    assert_error(move(f"{d}/dir", f"{d}/dir/sub"), 400, "BAD_REQUEST")
    assert_error(move(f"{d}/b", CLIMB), 400, "INVALID_FILE_PATH")
    # /dev/shm is another file system: the move copies, then deletes
    shm = f"/dev/shm/{os.path.basename(d)}"
    assert move(f"{d}/dir", shm).status_code == 200
    assert sh(http, box, f"cat {shm}/i; ls {d}") == "i\nb\n"


def test_find(http, box, d):
    sh(http, box, f"cd {d} && printf 'one needle\\ntwo\\r\\nneedle 3\\n' > a.txt && mkdir sub "
                  f"&& printf 'x\\nNEEDLE\\n' > sub/b.txt && printf 'needle\\000bin' > bin.dat")  # fmt: skip
    r = http.get(tb(box, "files/find"), params={"path": d, "pattern": "needle"})
    assert r.status_code == 200 and "x-sandburg-truncated" not in r.headers
    assert r.json() == [
        {"file": f"{d}/a.txt", "line": 1, "content": "one needle"},
        {"file": f"{d}/a.txt", "line": 3, "content": "needle 3"},
    ]  # the binary file is skipped; the match is case-sensitive, as Daytona's
    r = http.get(tb(box, "files/find"), params={"path": d, "pattern": "^(NEEDLE|two)", "regex": "true"})
    assert [(m["file"][len(d) :], m["line"]) for m in r.json()] == [("/a.txt", 2), ("/sub/b.txt", 2)]
    assert http.get(tb(box, "files/find"), params={"path": d, "pattern": "("}).json() == []  # a fixed string
    assert_error(
        http.get(tb(box, "files/find"), params={"path": d, "pattern": "(", "regex": "true"}),
        400,
        "BAD_REQUEST",
    )
    assert_error(
        http.get(tb(box, "files/find"), params={"path": f"{d}/nope", "pattern": "x"}), 404, "FILE_NOT_FOUND"
    )
    assert_error(http.get(tb(box, "files/find"), params={"path": d}), 400, "VALIDATION_ERROR")
    assert_error(
        http.get(tb(box, "files/find"), params={"path": CLIMB, "pattern": "x"}), 400, "INVALID_FILE_PATH"
    )


def test_find_stops_at_10000_matches(http, box, d):
    sh(http, box, f"yes needle | head -n 10050 > {d}/many")
    r = http.get(tb(box, "files/find"), params={"path": d, "pattern": "needle"})
    assert r.status_code == 200 and r.headers["x-sandburg-truncated"] == "true"
    matches = r.json()
    assert len(matches) == 10_000 and matches[-1] == {
        "file": f"{d}/many",
        "line": 10_000,
        "content": "needle",
    }


def test_search(http, box, d):
    sh(
        http,
        box,
        f"cd {d} && mkdir -p src/deep x.py && touch a.py b.txt src/c.py src/deep/e.py src/deep/f.txt",
    )
    r = http.get(tb(box, "files/search"), params={"path": d, "pattern": "*.py"})
    assert r.status_code == 200
    body = r.json()
    assert sorted(body["files"]) == [f"{d}/a.py", f"{d}/src/c.py", f"{d}/src/deep/e.py"]  # not the dir x.py
    assert body["truncated"] is False
    r = http.get(tb(box, "files/search"), params={"path": d, "pattern": "src/**/*.txt"})
    assert r.json()["files"] == [f"{d}/src/deep/f.txt"]
    assert http.get(tb(box, "files/search"), params={"path": d, "pattern": "*.none"}).json() == {
        "files": [], "truncated": False,
    }  # fmt: skip
    assert_error(http.get(tb(box, "files/search"), params={"path": d, "pattern": "{a"}), 400, "BAD_REQUEST")
    assert_error(
        http.get(tb(box, "files/search"), params={"path": f"{d}/b.txt", "pattern": "*"}),
        400,
        "NOT_A_DIRECTORY",
    )


def test_replace(http, box, d):
    sh(http, box, f"cd {d} && printf 'foo bar foo' > a && chmod 640 a && ln -s a link && printf 'none' > b")
    body = {"files": [f"{d}/link", f"{d}/b", f"{d}/missing", d], "pattern": "foo", "newValue": "baz"}
    r = http.post(tb(box, "files/replace"), json=body)
    assert r.status_code == 200
    res = r.json()
    assert [(x["file"], x["success"]) for x in res] == [
        (f"{d}/link", True), (f"{d}/b", True), (f"{d}/missing", False), (d, False),
    ]  # fmt: skip
    assert "error" not in res[0] and res[2]["error"] and res[3]["error"]
    assert sh(http, box, f"cat {d}/a; echo; stat -c %a {d}/a; readlink {d}/link") == "baz bar baz\n640\na\n"
    assert_error(http.post(tb(box, "files/replace"), json={**body, "pattern": ""}), 400, "VALIDATION_ERROR")
    assert_error(
        http.post(tb(box, "files/replace"), json={"files": [], "pattern": "x"}), 400, "VALIDATION_ERROR"
    )
    assert_error(http.post(tb(box, "files/replace"), json={**body, "extra": 1}), 400, "VALIDATION_ERROR")


def test_permissions(http, box, d):
    sh(http, box, f"touch {d}/f && ln -s f {d}/link")
    perms = lambda **kw: http.post(tb(box, "files/permissions"), params={"path": f"{d}/f", **kw})  # noqa: E731
    r = perms(mode="4710")
    assert (r.status_code, r.content) == (200, b"")
    assert sh(http, box, f"stat -c %a {d}/f") == "4710\n"
    assert perms(owner="1234", group="4321").status_code == 200
    assert perms(owner="nobody").status_code == 200  # a name from the sandbox's own /etc/passwd
    assert sh(http, box, f"stat -c '%u %g' {d}/f") == "65534 4321\n"
    assert perms(owner="0", group="0", mode="644").status_code == 200  # owner first, then the mode
    assert sh(http, box, f"stat -c '%u %g %a' {d}/f") == "0 0 644\n"
    assert perms().status_code == 200  # nothing to change
    assert_error(perms(owner="no-such-user"), 400, "BAD_REQUEST")
    assert_error(perms(mode="9"), 400, "VALIDATION_ERROR")
    missing = {"path": f"{d}/nope", "mode": "644"}
    assert_error(http.post(tb(box, "files/permissions"), params=missing), 404, "FILE_NOT_FOUND")
    assert_error(http.post(tb(box, "files/permissions"), params={"path": f"{d}/nope"}), 404, "FILE_NOT_FOUND")
    assert_error(http.post(tb(box, "files/permissions"), params={"path": CLIMB}), 400, "INVALID_FILE_PATH")


def test_symlinks_pointing_out_resolve_inside(http, box, d, tmp_path):
    host_dir = tmp_path / "host"
    host_dir.mkdir()
    (host_dir / "secret").write_text("host secret")
    sh(
        http,
        box,
        f"ln -s {host_dir}/secret {d}/escape && ln -s {host_dir} {d}/escdir && ln -s /etc/passwd {d}/pw",
    )
    q = {"path": f"{d}/escape"}
    assert http.get(tb(box, "files/info"), params=q).json()["linkTarget"] == f"{host_dir}/secret"
    assert_error(http.get(tb(box, "files/find"), params={**q, "pattern": "secret"}), 404, "FILE_NOT_FOUND")
    assert_error(http.post(tb(box, "files/permissions"), params={**q, "mode": "777"}), 404, "FILE_NOT_FOUND")
    res = http.post(tb(box, "files/replace"), json={"files": [q["path"]], "pattern": "host", "newValue": "x"})
    assert res.json()[0]["success"] is False
    assert_error(http.get(tb(box, "files"), params={"path": f"{d}/escdir"}), 404, "FILE_NOT_FOUND")
    # a link to the sandbox's own file reaches that file
    found = http.get(tb(box, "files/find"), params={"path": f"{d}/pw", "pattern": "root:"}).json()
    assert found and found[0]["content"].startswith("root:x:0:0")
    # deleting and moving act on the links themselves
    assert (
        http.post(
            tb(box, "files/move"), params={"source": f"{d}/escdir", "destination": f"{d}/e2"}
        ).status_code
        == 200
    )
    assert http.delete(tb(box, "files"), params={"path": d, "recursive": "true"}).status_code == 204
    assert (host_dir / "secret").read_text() == "host secret"
    assert os.stat(host_dir / "secret").st_mode & 0o777 != 0o777


def test_non_utf8_names(http, box, d):
    sh(http, box, f"cd {d} && echo 'hello needle' > \"$(printf 'caf\\351-\\377.txt')\"")
    name = "caf\udce9-\udcff.txt"  # the bytes 0xE9 and 0xFF, surrogate-escaped
    enc = f"{d}/caf%E9-%FF.txt"  # and percent-encoded in a query string
    r = http.get(tb(box, "files"), params={"path": d})
    assert "caf\\udce9-\\udcff.txt" in r.text  # JSON escapes: the body itself is valid ASCII
    assert [e["name"] for e in r.json()] == [name]
    assert http.get(tb(box, f"files/info?path={enc}")).json()["path"] == f"{d}/{name}"
    assert http.get(tb(box, f"files/download?path={enc}")).content == b"hello needle\n"
    assert http.get(tb(box, "files/search"), params={"path": d, "pattern": "*.txt"}).json()["files"] == [
        f"{d}/{name}"
    ]
    assert (
        http.get(tb(box, "files/find"), params={"path": d, "pattern": "needle"}).json()[0]["file"]
        == f"{d}/{name}"
    )
    r = http.post(tb(box, f"files/upload?path={d}/%FE.bin"), files={"file": ("f", b"\xfe data")})
    assert r.status_code == 200 and r.json() == {"path": f"{d}/\udcfe.bin", "size": 6}
    body = json.dumps({"files": [f"{d}/\udcfe.bin"], "pattern": "data", "newValue": "\udcfd"})  # ensure_ascii
    r = http.post(tb(box, "files/replace"), content=body, headers={"content-type": "application/json"})
    assert r.json() == [{"file": f"{d}/\udcfe.bin", "success": True}]
    assert http.get(tb(box, f"files/download?path={d}/%FE.bin")).content == b"\xfe \xfd"
    r = http.post(tb(box, "files/bulk-download"), content=json.dumps({"paths": [f"{d}/\udcfe.bin"]}),
                  headers={"content-type": "application/json"})  # fmt: skip
    assert r.status_code == 200 and b'filename="' + d.encode() + b'/\xfe.bin"' in r.content
    assert http.post(tb(box, f"files/move?source={enc}&destination={d}/%FD")).status_code == 200
    assert http.post(tb(box, f"files/permissions?path={d}/%FD&mode=600")).status_code == 200
    r = http.delete(tb(box, f"files?path={enc}"))
    assert_error(r, 404, "FILE_NOT_FOUND")
    assert "\\udcff" in r.json()["message"]
    assert http.delete(tb(box, f"files?path={d}/%FD")).status_code == 204
    listed = sh(http, box, f"cd {d} && for f in *; do echo \"$f\"; done | od -An -tx1 | tr -d ' \\n'")
    assert listed == "fe2e62696e0a"  # just "\xfe.bin" (busybox ls would print "?")


def test_binary_content(http, box, d):
    data = bytes(range(256)) * 64 + b"\0needle\xff" + os.urandom(1 << 20)
    r = http.post(tb(box, "files/upload"), params={"path": f"{d}/blob"}, files={"file": ("blob", data)})
    assert r.json()["size"] == len(data)
    assert http.get(tb(box, "files/download"), params={"path": f"{d}/blob"}).content == data
    assert (
        http.get(tb(box, "files/find"), params={"path": d, "pattern": "needle"}).json() == []
    )  # binary: skipped
    res = http.post(
        tb(box, "files/replace"), json={"files": [f"{d}/blob"], "pattern": "needle", "newValue": "NEEDLE"}
    )
    assert res.json() == [{"file": f"{d}/blob", "success": True}]
    got = http.get(tb(box, "files/download"), params={"path": f"{d}/blob"}).content
    assert got == data.replace(b"needle", b"NEEDLE")


def test_daytona_file_routes_need_a_started_sandbox(http, make_box):
    b = make_box(isolation="container")
    b.stop()
    for method, route, params in [("GET", "files", {"path": "/"}), ("POST", "files/folder", {"path": "/x"}),
                                  ("DELETE", "files", {"path": "/x"}), ("GET", "files/search", {"path": "/", "pattern": "*"})]:  # fmt: skip
        assert_error(http.request(method, tb(b, route), params=params), 409, "SANDBOX_NOT_RUNNING")
