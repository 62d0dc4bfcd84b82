"""The audit log against the real server (docs/audit.md): what is recorded for API calls, execs, session
commands, file transfers and secret use (never the value); query filters and JSON-lines export; `verify` on an
intact log and after each kind of tampering (edited, removed, reordered, truncated), through the API and the CLI;
and that nothing inside a sandbox can write or reach the log."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from sandburg import AuditRecord, FileNotFoundInSandboxError, Sandbox, Sandburg
from tests._support.private import private_server
from tests._support.server import ServerProcess
from tests._support.tenants import new_tenant

ROOT = Path(__file__).resolve().parents[2]


def org_of(server: ServerProcess) -> str:
    with open(os.path.join(server.data_dir, "credentials.json")) as fh:
        return str(json.load(fh)["organization_id"])


def records(sb: Sandburg, **kw: Any) -> list[AuditRecord]:
    out: list[AuditRecord] = []
    cursor = 0
    while True:
        page = sb.audit.list(limit=1000, cursor=cursor, **kw)
        out += page
        if len(page) < 1000:
            return out
        cursor = page[-1].seq


def process(recs: list[AuditRecord], kind: str) -> list[AuditRecord]:
    return [r for r in recs if r.type == "process" and r.payload.get("kind") == kind]


def test_exec_session_files_and_api_calls_are_recorded(
    sb: Sandburg, server: ServerProcess, make_box: Callable[..., Sandbox]
) -> None:
    box = make_box(isolation="container")
    r = box.process.exec("echo hi; exit 3", cwd="/tmp", env={"MY_FLAG": "v-not-recorded"})
    assert r.exit_code == 3
    session = box.process.create_session("audit-s1")
    assert session.exec("echo from-session").stdout == "from-session\n"
    box.fs.upload_file(b"x" * 1234, "/tmp/up.bin")
    assert box.fs.download_file("/tmp/up.bin") == b"x" * 1234
    recs = records(sb, sandbox=box.id)
    org = org_of(server)
    assert all(x.tenant == org and x.sandbox_id == box.id for x in recs)

    [ex] = process(recs, "exec")
    assert ex.payload["command"] == "echo hi; exit 3" and ex.payload["cwd"] == "/tmp"
    assert ex.payload["exitCode"] == 3 and ex.payload["durationMs"] > 0 and ex.payload["user"] == "root"
    assert ex.payload["envNames"] == ["MY_FLAG"] and "v-not-recorded" not in json.dumps(ex.payload)
    assert ex.actor and re.fullmatch(r"[0-9a-f-]{36}", ex.actor)
    [sess] = process(recs, "session")
    assert sess.payload["command"] == "echo from-session" and sess.payload["exitCode"] == 0
    assert sess.payload["sessionId"] == "audit-s1"
    assert process(recs, "session-start")
    files = [(x.payload["op"], x.payload["path"], x.payload["bytes"]) for x in recs if x.type == "file"]
    assert files == [("upload", "/tmp/up.bin", 1234), ("download", "/tmp/up.bin", 1234)]

    api = [x for x in recs if x.type == "api"]
    routes = {(a.payload["method"], a.payload["route"], a.payload["status"]) for a in api}
    assert ("POST", "/api/toolbox/{sandbox_id}/process/execute", 200) in routes, routes
    assert ("GET", "/api/toolbox/{sandbox_id}/files/download", 200) in routes, routes
    assert all(a.actor == ex.actor and a.payload["durationMs"] >= 0 for a in api)
    # an error is recorded with its status too
    with pytest.raises(FileNotFoundInSandboxError):
        box.fs.download_file("/no/such/file")
    api = [x for x in records(sb, sandbox=box.id, type="api") if x.payload["status"] == 404]
    assert api and api[-1].payload["route"] == "/api/toolbox/{sandbox_id}/files/download"


def test_exec_on_gvisor_is_recorded(sb: Sandburg, make_box: Callable[..., Sandbox]) -> None:
    box = make_box(isolation="gvisor")
    assert box.process.exec("exit 7").exit_code == 7
    [ex] = process(records(sb, sandbox=box.id), "exec")
    assert ex.payload["exitCode"] == 7 and ex.payload["command"] == "exit 7"


def test_streamed_exec_is_recorded(
    sb: Sandburg, server: ServerProcess, make_box: Callable[..., Sandbox]
) -> None:
    from tests.e2e.test_streams import collect, ws

    box = make_box(isolation="container")
    with ws(server, f"toolbox/{box.id}/process/execute/stream") as conn:
        conn.send(json.dumps({"command": "echo streamed; exit 4"}))
        _, _, ctl = collect(conn)
    assert ctl["exitCode"] == 4
    deadline = time.monotonic() + 10  # recorded when the WebSocket handler ends, just after the close
    while not (recs := process(records(sb, sandbox=box.id), "exec-stream")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert recs and recs[0].payload["exitCode"] == 4 and recs[0].payload["command"] == "echo streamed; exit 4"
    api = [x for x in records(sb, sandbox=box.id, type="api") if x.payload["method"] == "WS"]
    assert api and api[0].payload["status"] == 101


def test_terminal_and_code_run_are_recorded(
    sb: Sandburg, server: ServerProcess, make_box: Callable[..., Sandbox], http: Any
) -> None:
    from tests.e2e.test_streams import read_until, ws

    box = make_box(isolation="container")
    with ws(server, f"toolbox/{box.id}/process/pty/create-connect?id=aud1&cwd=/tmp") as conn:
        conn.recv(timeout=20)
        read_until(conn, b"# ")
        conn.send(b"exit 5\n")
        try:
            while True:
                conn.recv(timeout=20)
        except Exception:  # closed once the shell exits
            pass
    r = http.post(f"toolbox/{box.id}/process/code-run", json={"code": "exit 6", "language": "bash"})
    assert r.status_code in (200, 400), r.text  # busybox has no bash: 400, still a recorded run
    deadline = time.monotonic() + 10
    while not (pty := process(records(sb, sandbox=box.id), "pty")) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pty and pty[0].payload["exitCode"] == 5 and pty[0].payload["cwd"] == "/tmp", pty
    assert pty[0].payload["ptyId"] == "aud1" and pty[0].payload["durationMs"] > 0
    [run] = process(records(sb, sandbox=box.id), "code-run")
    assert run.payload["codeBytes"] == 6 and "exit 6" not in json.dumps(run.payload)


def test_secret_use_names_the_version_never_the_value(
    sb: Sandburg, server: ServerProcess, make_box: Callable[..., Sandbox]
) -> None:
    name, value = f"AUDIT_{uuid.uuid4().hex[:8].upper()}", f"sk-audit-{uuid.uuid4().hex}"
    sb.secrets.set(name, "first-" + value)
    sb.secrets.set(name, value)  # version 2
    try:
        box = make_box(isolation="container", secrets=[name])
        assert box.process.exec(f'echo "${name}"').stdout == "***\n"
        used = [x for x in records(sb, sandbox=box.id, type="secret")]
        assert len(used) == 1 and used[0].payload["secrets"] == [{"env": name, "name": name, "version": 2}]
        session = box.process.create_session("with-secret")
        assert session.exec(f'echo "${name}"').stdout == "***\n"  # the session's shell got it at its start
        used = [x for x in records(sb, sandbox=box.id, type="secret")]
        assert len(used) == 2, used  # the log read that masked the output is not a use
        ex = process(records(sb, sandbox=box.id), "exec")[0]
        assert ex.payload["command"] == f'echo "${name}"'
        box.process.exec(f"echo {value} >/dev/null")  # a value pasted into a command line
        pasted = process(records(sb, sandbox=box.id), "exec")[-1]
        assert pasted.payload["command"] == "echo *** >/dev/null", pasted
        export = "\n".join(sb.audit.export())
        assert name in export and value not in export
        box.delete()
    finally:
        sb.secrets.delete(name)
    time.sleep(0.3)  # the writer commits within 50 ms
    for suffix in ("", "-wal"):
        path = os.path.join(server.data_dir, "sandburg.db" + suffix)
        if os.path.exists(path):
            with open(path, "rb") as fh:
                assert value.encode() not in fh.read(), path


def test_query_filters_and_export(sb: Sandburg, make_box: Callable[..., Sandbox]) -> None:
    a, b = make_box(isolation="container"), make_box(isolation="container")
    a.process.exec("true")
    middle = datetime.now(UTC)
    time.sleep(0.05)
    b.process.exec("echo b")
    a.process.exec("echo a-late")
    only_a = records(sb, sandbox=a.id)
    assert only_a and all(x.sandbox_id == a.id for x in only_a)
    procs = records(sb, sandbox=a.id, type="process")
    assert [p.payload["command"] for p in procs] == ["true", "echo a-late"]
    late = records(sb, type=["process"], since=middle)
    assert {p.payload["command"] for p in late} >= {"echo b", "echo a-late"} and "true" not in {
        p.payload["command"] for p in late if p.sandbox_id == a.id
    }
    early = records(sb, sandbox=a.id, type="process", until=middle)
    assert [p.payload["command"] for p in early] == ["true"]
    sb.get(a.name)  # by name: recorded under the id, the name kept
    by_name = [x for x in records(sb, sandbox=a.id, type="api") if x.payload.get("sandboxName") == a.name]
    assert by_name and by_name[-1].payload["route"] == "/api/sandbox/{sandbox_id_or_name}", by_name
    page = sb.audit.list(sandbox=a.id, limit=1)
    assert len(page) == 1 and sb.audit.list(sandbox=a.id, limit=1, cursor=page[0].seq)[0].seq > page[0].seq
    lines = list(sb.audit.export(sandbox=b.id))
    parsed = [json.loads(line) for line in lines]
    assert parsed and all(p["sandboxId"] == b.id and len(p["hash"]) == 64 for p in parsed)
    assert [p["seq"] for p in parsed] == sorted(p["seq"] for p in parsed)


def test_cli_ls_export_verify(cli: Callable[..., subprocess.CompletedProcess[str]], tmp_path: Path) -> None:
    r = cli("audit", "ls", "--type", "api", "--limit", "5")
    assert r.returncode == 0 and "SEQ" in r.stdout, r.stderr
    out = tmp_path / "audit.jsonl"
    r = cli("audit", "export", "--type", "api", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert all(json.loads(line)["type"] == "api" for line in out.read_text().splitlines())
    r = cli("audit", "verify")
    assert r.returncode == 0 and r.stdout.startswith("ok: "), (r.stdout, r.stderr)


# -- tampering: a server of this module's own, whose database the tests edit ---------------------------------------
@pytest.fixture(scope="module")
def own_server() -> Iterator[ServerProcess]:
    with private_server("audit") as srv:
        yield srv


def verify_cli(srv: ServerProcess) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, SANDBURG_API_URL=srv.api_url, SANDBURG_API_KEY=srv.api_key)
    return subprocess.run(
        [sys.executable, "-m", "sandburg.cli.main", "audit", "verify"], env=env, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip


def db(srv: ServerProcess) -> sqlite3.Connection:
    return sqlite3.connect(os.path.join(srv.data_dir, "sandburg.db"), timeout=30, isolation_level=None)


Row = tuple[Any, ...]
COLS = "seq, ts, organization_id, actor, type, sandbox_id, payload, prev_hash, hash"


def middle_rows(srv: ServerProcess, n: int = 2) -> list[Row]:
    with db(srv) as con:
        rows = con.execute(
            f"SELECT {COLS} FROM audit_records WHERE organization_id = ? ORDER BY seq", (org_of(srv),)
        ).fetchall()
    assert len(rows) >= 6, rows
    mid = len(rows) // 2
    return rows[mid : mid + n]


def put_back(srv: ServerProcess, rows: list[Row]) -> None:
    with db(srv) as con:
        for row in rows:
            con.execute(f"INSERT OR REPLACE INTO audit_records ({COLS}) VALUES (?,?,?,?,?,?,?,?,?)", row)


def test_a_key_sees_only_its_organizations_records(own_server: ServerProcess) -> None:
    srv = own_server
    key, org, _ = new_tenant(srv)  # a second organization and its key, made by the operator
    with (
        Sandburg(api_url=srv.api_url, api_key=srv.api_key) as mine,
        Sandburg(api_url=srv.api_url, api_key=key) as other,
    ):
        mine.list()
        theirs = other.audit.list(limit=1000)
        assert theirs == [] or all(r.tenant == org for r in theirs)  # its own first call, at most
        assert all(r.tenant == org for r in records(other)) and records(other)  # its `list` above is recorded
        assert all(r.tenant == org_of(srv) for r in records(mine))
        assert other.audit.verify().ok and mine.audit.verify().ok


def test_verify_detects_edits_removals_reordering_and_truncation(own_server: ServerProcess) -> None:
    srv = own_server
    with Sandburg(api_url=srv.api_url, api_key=srv.api_key) as sb:
        for _ in range(8):
            sb.list()
        v = sb.audit.verify()
        assert v.ok and v.records >= 8 and not v.problems, v
        assert verify_cli(srv).returncode == 0

        # an edited payload
        [row] = middle_rows(srv, 1)
        with db(srv) as con:
            con.execute("UPDATE audit_records SET payload = ? WHERE seq = ?", ('{"status": 200}', row[0]))
        v = sb.audit.verify()
        assert not v.ok and v.problems[0].seq == row[0] and "hash" in v.problems[0].problem, v
        r = verify_cli(srv)
        assert r.returncode == 1 and f"seq {row[0]}:" in r.stdout, r.stdout
        put_back(srv, [row])
        assert sb.audit.verify().ok

        # a record removed from the middle: the break shows at the next one
        [row, after] = middle_rows(srv, 2)
        with db(srv) as con:
            con.execute("DELETE FROM audit_records WHERE seq = ?", (row[0],))
        v = sb.audit.verify()
        assert (
            not v.ok and v.problems[0].seq == after[0] and "missing or reordered" in v.problems[0].problem
        ), v
        put_back(srv, [row])
        assert sb.audit.verify().ok

        # two records swapped (each keeps the other's content under its own seq)
        a, b = middle_rows(srv, 2)
        with db(srv) as con:
            con.execute("DELETE FROM audit_records WHERE seq IN (?, ?)", (a[0], b[0]))
        put_back(srv, [(a[0], *b[1:]), (b[0], *a[1:])])
        v = sb.audit.verify()
        assert not v.ok and v.problems[0].seq == a[0], v
        with db(srv) as con:
            con.execute("DELETE FROM audit_records WHERE seq IN (?, ?)", (a[0], b[0]))
        put_back(srv, [a, b])
        assert sb.audit.verify().ok

    # the tail cut off while the server is down: the anchor still names the old head
    srv.stop()
    org = org_of(srv)
    with db(srv) as con:
        seqs = [
            r[0]
            for r in con.execute(
                "SELECT seq FROM audit_records WHERE organization_id = ? ORDER BY seq", (org,)
            )
        ]
        con.execute("DELETE FROM audit_records WHERE organization_id = ? AND seq > ?", (org, seqs[-4]))
    srv.start()
    with Sandburg(api_url=srv.api_url, api_key=srv.api_key) as sb:
        v = sb.audit.verify()
    assert not v.ok and v.problems[0].seq == seqs[-4], v
    assert f"head is record {seqs[-1]}" in v.problems[0].problem, v


# -- only the server writes the log ---------------------------------------------------------------------------------
def test_only_server_code_writes_audit_records() -> None:
    """The agent (the only code in a sandbox that talks to the host) has no audit operation, and the audit tables
    are written only by the server's audit writer."""
    agent = "\n".join(p.read_text() for p in (ROOT / "sandburg" / "agent").rglob("*.py"))
    assert "audit" not in agent.lower()
    rows, recorders = set(), set()
    for p in (ROOT / "sandburg").rglob("*.py"):
        text, name = p.read_text(), str(p.relative_to(ROOT))
        if re.search(r"(?<!class )(AuditRecord|AuditHead)\(|(INSERT INTO|UPDATE) audit_", text):
            rows.add(name)
        if re.search(r"\.record\(\s*\"|\baudited\(", text):
            recorders.add(name)
    assert rows == {"sandburg/server/audit.py"}, rows  # the writer thread alone makes rows
    assert recorders and all(r.startswith("sandburg/server/") for r in recorders), recorders


def test_sandbox_cannot_reach_the_audit_store(
    server: ServerProcess, make_box: Callable[..., Sandbox]
) -> None:
    box = make_box(isolation="container")
    for path in (os.path.join(server.data_dir, "sandburg.db"), os.path.join(server.data_dir, "audit.key")):
        assert os.path.exists(path)
        r = box.process.exec(f"ls {path} || echo absent")
        assert "absent" in r.stdout, r
    assert box.process.exec("echo ok").stdout == "ok\n"  # positive control


def test_network_decisions_are_copied_into_the_chain(
    sb: Sandburg, make_box: Callable[..., Sandbox], fake_internet: Any
) -> None:
    fake_internet.check()
    box = make_box(image="debian-12", isolation="container", network={"allow": ["allowed.test"]})
    dst = fake_internet.addr("other.test")
    r = box.process.exec(f"curl -sS -m 3 -o /dev/null http://{dst}/ 2>&1; echo done")
    assert "done" in r.stdout
    denied: list[AuditRecord] = []
    deadline = time.monotonic() + 20  # the kernel log, the event writer, then the audit copy (about a second)
    while not denied and time.monotonic() < deadline:
        denied = [
            x for x in records(sb, sandbox=box.id, type="network")
            if x.payload.get("kind") == "deny" and x.payload.get("dst") == dst
        ]  # fmt: skip
        time.sleep(0.5)
    assert denied, (r.stdout, list(box.network.log(limit=50)), records(sb, sandbox=box.id, type="network"))
    rec = denied[0]
    assert rec.actor is None and rec.payload["dport"] == 80 and rec.payload["eventId"] > 0
    assert sb.audit.verify().ok
