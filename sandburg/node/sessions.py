"""Host side of sessions: commands go to the agent; their output and status are read from the run dir.

The agent records every session command under `<run dir>/sessions/<session>/` (see sandburg/agent/sessions.py):
`<cmd>.json` at its start, `<cmd>.log` as output arrives (records: 1 byte stream, 4 bytes length, bytes) and
`<cmd>.exit.json` at its end. The run dir is a host directory (a size-limited subvolume), so logs outlive client
disconnects and server restarts and are read by offset without asking the agent. Everything in it was written from
inside the sandbox: it is read through O_NOFOLLOW walks and parsed defensively.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from typing import Any

from .agent_client import AgentClient, _request
from .rootfs import listdir_in, open_in, read_in

STDOUT, STDERR = 1, 2
_ID = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$")
_MAX_RECORD = 4 << 20


def valid_id(value: str) -> bool:
    return bool(_ID.match(value))


@dataclass
class CommandInfo:
    id: str
    command: str
    seq: int
    background: bool
    started: float
    exit_code: int | None = None
    truncated: bool = False
    ended: float | None = None


@dataclass
class SessionInfo:
    id: str
    created: float
    commands: list[CommandInfo] = field(default_factory=list)


@dataclass
class LogChunk:
    records: list[tuple[int, bytes]]  # (stream, bytes), in the order they were written
    next_offset: int


# -- calls to the agent -------------------------------------------------------------------------------------------
async def create(
    client: AgentClient, sid: str, cwd: str | None = None, env: dict[str, str] | None = None
) -> None:
    await client._call(_request("session_create", id=sid, cwd=cwd, env=env))


async def execute(
    client: AgentClient, sid: str, command: str, background: bool, max_output: int
) -> dict[str, Any]:
    return await client._call(
        _request("session_exec", id=sid, command=command, max_output=max_output, **{"async": background})
    )


async def send_input(client: AgentClient, sid: str, cmd_id: str, data: str, close: bool = False) -> None:
    await client._call(_request("session_input", id=sid, cmd_id=cmd_id, data=data, close=close))


async def signal(client: AgentClient, sid: str, cmd_id: str, signum: int) -> None:
    await client._call(_request("session_signal", id=sid, cmd_id=cmd_id, signal=signum))


async def delete(client: AgentClient, sid: str) -> None:
    await client._call(_request("session_delete", id=sid))


# -- reading the run dir -----------------------------------------------------------------------------------------
def _json(run_dir: str, relpath: str) -> dict[str, Any] | None:
    raw = read_in(run_dir, relpath, 64 << 10)
    if raw is None:
        return None
    try:
        obj = json.loads(raw)
    except ValueError:
        return None
    return obj if isinstance(obj, dict) else None


def _num(obj: dict[str, Any], key: str, default: float = 0.0) -> float:
    v = obj.get(key)
    return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else default


def session_ids(run_dir: str) -> list[str]:
    return sorted(n for n in listdir_in(run_dir, "sessions") if valid_id(n))


def session(run_dir: str, sid: str) -> SessionInfo | None:
    """The session as recorded in the run dir, with its commands in the order they were run."""
    if not valid_id(sid):
        return None
    meta = _json(run_dir, f"sessions/{sid}/session.json")
    if meta is None:
        return None
    info = SessionInfo(id=sid, created=_num(meta, "created"))
    for name in listdir_in(run_dir, f"sessions/{sid}"):
        if name.endswith(".json") and not name.endswith(".exit.json") and name != "session.json":
            cmd = command(run_dir, sid, name[: -len(".json")])
            if cmd is not None:
                info.commands.append(cmd)
    info.commands.sort(key=lambda c: c.seq)
    return info


def command(run_dir: str, sid: str, cid: str) -> CommandInfo | None:
    if not (valid_id(sid) and valid_id(cid)):
        return None
    meta = _json(run_dir, f"sessions/{sid}/{cid}.json")
    if meta is None or not isinstance(meta.get("command"), str):
        return None
    info = CommandInfo(
        id=cid, command=meta["command"], seq=int(_num(meta, "seq")), background=meta.get("async") is True,
        started=_num(meta, "started"),
    )  # fmt: skip
    end = _json(run_dir, f"sessions/{sid}/{cid}.exit.json")
    if end is not None and isinstance(end.get("exitCode"), int):
        info.exit_code = int(end["exitCode"])
        info.truncated = end.get("truncated") is True
        info.ended = _num(end, "ended")
    return info


def read_log(run_dir: str, sid: str, cid: str, offset: int = 0, max_bytes: int = 4 << 20) -> LogChunk:
    """Whole records from byte `offset` of the command's log, up to about `max_bytes` of payload."""
    if not (valid_id(sid) and valid_id(cid)) or offset < 0:
        return LogChunk([], offset)
    try:
        fd = open_in(run_dir, f"sessions/{sid}/{cid}.log")
    except OSError:
        return LogChunk([], offset)
    records: list[tuple[int, bytes]] = []
    try:
        pos, total = offset, 0
        while total < max_bytes:
            head = os.pread(fd, 5, pos)
            if len(head) < 5:
                break
            stream, size = head[0], int.from_bytes(head[1:], "big")
            if stream not in (STDOUT, STDERR) or size > _MAX_RECORD:
                break  # not written by the agent: stop rather than guess
            data = os.pread(fd, size, pos + 5)
            if len(data) < size:
                break  # the agent is still writing this record
            records.append((stream, data))
            pos += 5 + size
            total += size
        return LogChunk(records, pos)
    finally:
        os.close(fd)


def split(records: list[tuple[int, bytes]]) -> tuple[bytes, bytes, bytes]:
    """(output, stdout, stderr) of the records: output interleaves both in the order they arrived."""
    out = b"".join(d for s, d in records if s == STDOUT)
    err = b"".join(d for s, d in records if s == STDERR)
    return b"".join(d for _, d in records), out, err
