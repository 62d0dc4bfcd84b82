"""Sessions: long-lived shells whose commands share environment and working directory.

A session is one shell (`bash --noprofile --norc -s`, else `sh -s`) in its own process session, reading command
lines from a pipe on its stdin; fd 3 is a status pipe back to the agent. Every command gets FIFOs for its output
(and, when it runs in the background, its stdin) in a tmpfs directory, and the agent copies what arrives there into
`<run dir>/sessions/<session>/<command>.log` — the run dir is the host's directory mounted at /.sandburg/run, so the
output is kept on the host side, where the server reads it (by offset, after restarts, while it grows). Nothing of a
command's output is kept in memory beyond a 64 KiB read buffer.

Files per command (names from docs/agent-protocol.md):
    <cmd>.json        {"id", "command", "async", "seq", "started"}          written when it starts
    <cmd>.log         records: 1 byte stream (1 stdout, 2 stderr), 4 bytes big-endian length, the bytes
    <cmd>.exit.json   {"exitCode", "truncated", "ended"}                     written (atomically) when it ends

The line the agent writes for a foreground command (the session shell runs it, so `cd` and `export` persist):
    __sb_run <cmd> '<command>' </dev/null >'<out fifo>' 2>'<err fifo>'; echo "E <cmd> $?" >&3
and for a background one, whose job reports its own end (bash: `set -m` around the `&` gives the job a process
group of its own, so a signal or a session delete reaches all of it; other shells signal the job's subshell only):
    set -m; __sb_bg <cmd> '<command>' <'<in>' >'<out>' 2>'<err>' & echo "P <cmd> $!" >&3; set +m
where `__sb_run`/`__sb_bg` (see _PRELUDE) report the start and `command eval` the command: a syntax error is the
command's error (status 2, message in its stderr), not the session's end. A job killed before it can report is
noticed by its pid disappearing.
"""

from __future__ import annotations

import _thread
import os
import select
from time import monotonic, sleep, time

TYPE_CHECKING = False  # see agent.py
if TYPE_CHECKING:
    import signal as _signal
else:
    import _signal
if TYPE_CHECKING or __package__:
    from . import execute
    from . import protocol as P
    from .files import OpError, bad_request, opt_bool, opt_int, opt_str, resolve
else:  # run as a script from this directory
    import execute
    import protocol as P
    from files import OpError, bad_request, opt_bool, opt_int, opt_str, resolve

RUN_DIR = "/.sandburg/run"  # set by agent.main from the socket's directory
DEFAULT_MAX_OUTPUT = 10 << 20
_DRAIN_LIMIT = (
    1.0  # after a command ends, how long its output pipes may keep delivering (background children)
)
_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")

# Defined once in every session shell. `command eval` keeps a syntax error in the command from ending the shell
# (eval is a special builtin: POSIX shells exit on its errors), and running it inside a function keeps bash's
# parser state clean: after a failed eval in a brace group read from a pipe, bash misparses the next input line.
_PRELUDE = (
    '__sb_run() { echo "S $1" >&3; __sb_c=$2; shift 2; command eval "$__sb_c" 3>&-; }\n'
    # background: the command runs in a subshell of the job, so that `exit` in a trap ends only the command and the
    # job still reports its status; the job itself shrugs off TERM/INT/HUP (traps reset in the subshell) and dies
    # only by SIGKILL, which the agent notices by its pid
    '__sb_bg() { __sb_i=$1; echo "S $1" >&3; __sb_c=$2; shift 2; trap : TERM INT HUP; '
    '( command eval "$__sb_c" 3>&- ); echo "E $__sb_i $?" >&3; }\n'
)
_FG_TEMPLATE = '__sb_run {cid} {cmd} </dev/null >{out} 2>{err}; echo "E {cid} $?" >&3\n'
_BG_TEMPLATE = '{jc_on}__sb_bg {cid} {cmd} <{inp} >{out} 2>{err} & echo "P {cid} $!" >&3{jc_off}\n'

_sessions: dict[str, Session] = {}
_sessions_lock = _thread.allocate_lock()


def _quote(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


def _check_id(value: object, what: str) -> str:
    if (
        not isinstance(value, str)
        or not 0 < len(value) <= 64
        or not set(value) <= _ID_CHARS
        or value[0] == "."
    ):
        raise bad_request(f"{what} must be 1-64 characters of [A-Za-z0-9._-], not starting with '.'")
    return value


def _write_json(path: str, obj: object) -> None:
    tmp = path + ".tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    try:
        os.write(fd, P.dumps(obj))
    finally:
        os.close(fd)
    os.rename(tmp, path)  # readers see the whole file or none


class Command:
    def __init__(
        self, session: Session, cid: str, seq: int, command: str, background: bool, max_output: int
    ) -> None:
        self.session, self.id, self.seq, self.command = session, cid, seq, command
        self.background, self.max_output = background, max_output
        self.pgid = 0
        self.exit_code: int | None = None
        self.started = False
        self.ended = False
        self.in_w = -1
        self.close_pending = False
        self.stdin_lock = _thread.allocate_lock()
        self.done_r, self.done_w = os.pipe()  # closed write end = the command's record is complete
        base = f"{session.fifo_dir}/{cid}"
        self.fifos = (base + ".out", base + ".err", base + ".in")
        self.log_path = f"{session.dir}/{cid}.log"

    def prepare(self) -> tuple[int, int]:
        for f in self.fifos[:2] + ((self.fifos[2],) if self.background else ()):
            os.mkfifo(f, 0o600)
        out_r = os.open(self.fifos[0], os.O_RDONLY | os.O_NONBLOCK)
        err_r = os.open(self.fifos[1], os.O_RDONLY | os.O_NONBLOCK)
        if self.background:  # O_RDWR: never blocks, and the command's `<fifo` finds a writer
            self.in_w = os.open(self.fifos[2], os.O_RDWR | os.O_NONBLOCK)
        _write_json(f"{self.session.dir}/{self.id}.json", {
            "id": self.id, "command": self.command, "async": self.background, "seq": self.seq, "started": time(),
        })  # fmt: skip
        return out_r, err_r

    def line(self) -> str:
        out, err, inp = (_quote(f) for f in self.fifos)
        cmd = _quote(self.command)
        if self.background:
            jc_on, jc_off = ("set -m; ", "; set +m") if self.session.bash else ("", "")
            return _BG_TEMPLATE.format(
                cid=self.id, cmd=cmd, out=out, err=err, inp=inp, jc_on=jc_on, jc_off=jc_off
            )
        return _FG_TEMPLATE.format(cid=self.id, cmd=cmd, out=out, err=err)

    def pump(self, out_r: int, err_r: int) -> None:
        """Copy the command's output into its log until it ended and its pipes are drained (own thread)."""
        log = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o644)
        streams = {out_r: 1, err_r: 2}
        written = 0
        truncated = False
        try:
            while not self.started and not self.ended:  # before the shell opened the FIFOs, EOF means nothing
                sleep(0.001)
            poller = select.poll()
            for fd in streams:
                poller.register(fd, select.POLLIN)
            drain_until = 0.0
            while streams:
                if self.ended and not drain_until:
                    drain_until = monotonic() + _DRAIN_LIMIT
                if drain_until and monotonic() > drain_until:
                    break
                events = poller.poll(20 if not self.ended else 0)
                if not events:
                    if self.ended:
                        break  # ended and quiet: what a background grandchild writes later is not this command's
                    self._check_gone()
                    continue
                for fd, _ev in events:
                    data = os.read(fd, 64 << 10)
                    if not data:
                        poller.unregister(fd)
                        del streams[fd]
                        continue
                    room = self.max_output - written
                    if len(data) > room:
                        data, truncated = data[:room], True
                    if data:
                        try:
                            os.write(log, bytes((streams[fd],)) + len(data).to_bytes(4, "big") + data)
                        except OSError:  # the run dir is full: keep draining so the command never blocks
                            truncated = True
                            room = 0
                        written += len(data)
        finally:
            for fd in (out_r, err_r):
                os.close(fd)
            os.close(log)
            while not self.ended:  # the output closed before the shell reported the end: wait for it
                self._check_gone()
                sleep(0.005)
            code = self.exit_code if self.exit_code is not None else -1
            try:
                _write_json(f"{self.session.dir}/{self.id}.exit.json",
                            {"exitCode": code, "truncated": truncated, "ended": time()})  # fmt: skip
            except OSError:
                pass
            self.close_stdin()
            for f in self.fifos:
                try:
                    os.unlink(f)
                except OSError:
                    pass
            os.close(self.done_w)

    def _check_gone(self) -> None:
        """A background job killed before it could report its end: its pid is gone (or a zombie)."""
        if not self.pgid or self.ended:
            return
        try:
            with open(f"/proc/{self.pgid}/stat", "rb") as fh:
                alive = fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
        except OSError:
            alive = False
        if not alive:
            sleep(0.05)  # its "E" line may still be on the way
            if not self.ended:
                self.finish(137)

    def finish(self, code: int) -> None:
        self.exit_code = code
        self.ended = True

    def close_stdin(self) -> None:
        # Before the job has opened its end of the stdin FIFO, closing the only writer would leave its `<fifo`
        # open blocked forever: wait for its start ("S" comes after its redirections are in place).
        with self.stdin_lock:
            if not self.started and not self.ended:
                self.close_pending = True
                return
            if self.in_w >= 0:
                os.close(self.in_w)
                self.in_w = -1


class Session:
    def __init__(self, sid: str, cwd: str, env: dict[str, str]) -> None:
        self.id = sid
        self.dir = f"{RUN_DIR}/sessions/{sid}"
        shm = "/dev/shm" if os.path.isdir("/dev/shm") else "/tmp"
        self.fifo_dir = f"{shm}/.sandburg-sessions/{sid}"
        self.commands: dict[str, Command] = {}
        self.seq = 0
        self.lock = _thread.allocate_lock()  # one foreground command at a time
        self.ended = False
        os.makedirs(self.dir, mode=0o755)
        os.makedirs(self.fifo_dir, mode=0o700, exist_ok=True)
        self.bash = bash = os.access("/bin/bash", os.X_OK)
        shell = "/bin/bash" if bash else "/bin/sh"
        argv = [shell, "--noprofile", "--norc", "-s"] if bash else [shell, "-s"]
        cmd_r, self.cmd_w = os.pipe()
        status_r, status_w = os.pipe()
        actions = [
            (os.POSIX_SPAWN_DUP2, cmd_r, 0),
            (os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0),
            (os.POSIX_SPAWN_OPEN, 2, "/dev/null", os.O_WRONLY, 0),
            (os.POSIX_SPAWN_DUP2, status_w, 3),
        ]
        with execute.SPAWN_LOCK:
            os.chdir(cwd)
            self.pid = os.posix_spawn(shell, argv, {**execute.CHILD_ENV, **env}, file_actions=actions, setsid=True,
                                      setsigdef=execute.RESET_SIGNALS, setsigmask=())  # fmt: skip
        os.close(cmd_r)
        os.close(status_w)
        execute.RUNNING.add(self.pid)
        os.write(self.cmd_w, _PRELUDE.encode())
        _write_json(f"{self.dir}/session.json", {"id": sid, "created": time(), "shell": shell})
        _thread.start_new_thread(self._status_loop, (status_r,))

    def _status_loop(self, status_r: int) -> None:
        buf = b""
        while True:
            try:
                data = os.read(status_r, 4096)
            except OSError:
                data = b""
            if not data:
                break
            buf += data
            while b"\n" in buf:
                line, buf = buf.split(b"\n", 1)
                self._status(line.decode(errors="replace").split())
        os.close(status_r)
        # the shell is gone (`exit`, killed, session deleted): commands still running end with its status
        try:
            code = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
        except ChildProcessError:
            code = -1
        code = 128 - code if code < 0 else code
        execute.RUNNING.discard(self.pid)
        self.ended = True
        for cmd in list(self.commands.values()):
            if not cmd.ended:
                cmd.started = True
                cmd.finish(code)
        os.close(self.cmd_w)

    def _status(self, parts: list[str]) -> None:
        if len(parts) < 2 or parts[1] not in self.commands:
            return
        cmd = self.commands[parts[1]]
        if parts[0] == "S":
            with cmd.stdin_lock:
                cmd.started = True
            if cmd.close_pending:
                cmd.close_stdin()
        elif parts[0] == "P" and len(parts) == 3 and parts[2].isdigit():
            cmd.pgid = int(parts[2])
        elif parts[0] == "E" and len(parts) == 3:
            cmd.started = True
            cmd.finish(int(parts[2]) if parts[2].lstrip("-").isdigit() else -1)

    def run(self, command: str, background: bool, max_output: int) -> Command:
        if self.ended:
            raise OpError("SESSION_ENDED", f"session {self.id!r} has ended")
        self.seq += 1
        cid = os.urandom(8).hex()
        cmd = Command(self, cid, self.seq, command, background, max_output)
        out_r, err_r = cmd.prepare()
        self.commands[cid] = cmd
        _thread.start_new_thread(cmd.pump, (out_r, err_r))
        try:
            os.write(self.cmd_w, cmd.line().encode(errors="surrogateescape"))
        except OSError as exc:  # the shell died between the check and the write
            cmd.started = True
            cmd.finish(-1)
            raise OpError("SESSION_ENDED", f"session {self.id!r} has ended") from exc
        return cmd

    def kill(self) -> None:
        execute.kill_group_surely(self.pid)
        for cmd in self.commands.values():
            if cmd.pgid:
                execute.kill_group_surely(cmd.pgid)


def _get(req: dict[str, object]) -> Session:
    sid = _check_id(req.get("id"), "session id")
    with _sessions_lock:
        session = _sessions.get(sid)
    if session is None:
        raise OpError("SESSION_NOT_FOUND", f"session {sid!r} not found")
    return session


def _command(session: Session, req: dict[str, object]) -> Command:
    cid = req.get("cmd_id")
    cmd = session.commands.get(cid) if isinstance(cid, str) else None
    if cmd is None:
        raise OpError("COMMAND_NOT_FOUND", f"command {cid!r} not found in session {session.id!r}")
    return cmd


def op_session_create(sock: object, reader: P.FrameReader, req: dict[str, object]) -> dict[str, object]:
    sid = _check_id(req.get("id"), "session id")
    cwd = resolve(opt_str(req, "cwd", ""))
    env = req.get("env") or {}
    if not isinstance(env, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env.items()
    ):
        raise bad_request("'env' must map strings to strings")
    with _sessions_lock:
        if sid in _sessions:
            raise OpError("SESSION_EXISTS", f"session {sid!r} already exists")
        _sessions[sid] = Session(sid, cwd, env)
    return {"ok": True, "id": sid}


def op_session_exec(sock: object, reader: P.FrameReader, req: dict[str, object]) -> dict[str, object]:
    session = _get(req)
    command = req.get("command")
    if not isinstance(command, str) or not command:
        raise bad_request("'command' must be a non-empty string")
    background = opt_bool(req, "async", False)
    max_output = opt_int(req, "max_output", DEFAULT_MAX_OUTPUT)
    if background:
        cmd = session.run(command, True, max_output)
        return {"ok": True, "cmd_id": cmd.id}
    with session.lock:
        cmd = session.run(command, False, max_output)
        # wait for the end, but give up waiting (not the command) if the host goes away
        poller = select.poll()
        poller.register(cmd.done_r, select.POLLIN)
        fileno = getattr(sock, "fileno", None)
        if fileno is not None:
            poller.register(fileno(), select.POLLRDHUP if hasattr(select, "POLLRDHUP") else select.POLLHUP)
        while True:
            events = poller.poll()
            if any(fd == cmd.done_r for fd, _ in events):
                break
            if events:  # the connection closed: the command goes on in its session
                return {"ok": True, "cmd_id": cmd.id, "detached": True}
    return {"ok": True, "cmd_id": cmd.id, "exit_code": cmd.exit_code}


def op_session_input(sock: object, reader: P.FrameReader, req: dict[str, object]) -> dict[str, object]:
    cmd = _command(_get(req), req)
    data = req.get("data", "")
    if not isinstance(data, str):
        raise bad_request("'data' must be a string")
    if cmd.ended or cmd.in_w < 0:
        raise OpError("COMMAND_ALREADY_COMPLETED", f"command {cmd.id!r} takes no more input")
    if data:
        raw = memoryview(data.encode(errors="surrogateescape"))
        deadline = monotonic() + 5
        while raw:
            try:
                raw = raw[os.write(cmd.in_w, raw) :]
            except BlockingIOError:
                if monotonic() > deadline:
                    raise OpError("INTERNAL_ERROR", "the command is not reading its input") from None
                sleep(0.01)
    if opt_bool(req, "close", False):
        cmd.close_stdin()
    return {"ok": True}


def op_session_signal(sock: object, reader: P.FrameReader, req: dict[str, object]) -> dict[str, object]:
    cmd = _command(_get(req), req)
    sig = opt_int(req, "signal", _signal.SIGTERM)
    if cmd.ended:
        raise OpError("COMMAND_ALREADY_COMPLETED", f"command {cmd.id!r} has ended")
    if not cmd.pgid:
        raise bad_request("only background commands can be signalled")
    execute.kill_group(cmd.pgid, sig)
    if sig == _signal.SIGTERM:  # a command that ignores SIGTERM gets SIGKILL after a grace period
        execute.terminate_later(cmd.pgid, lambda: cmd.ended)
    return {"ok": True}


def op_session_delete(sock: object, reader: P.FrameReader, req: dict[str, object]) -> dict[str, object]:
    session = _get(req)
    with _sessions_lock:
        _sessions.pop(session.id, None)
    session.kill()
    deadline = monotonic() + 5
    while not session.ended and monotonic() < deadline:
        sleep(0.005)
    for cmd in session.commands.values():  # their records are complete before the logs go
        select.select([cmd.done_r], [], [], 2)
        os.close(cmd.done_r)
    _rmtree(session.dir)
    _rmtree(session.fifo_dir)
    return {"ok": True}


def _rmtree(path: str) -> None:
    try:
        names = os.listdir(path)
    except OSError:
        return
    for name in names:
        try:
            os.unlink(f"{path}/{name}")
        except OSError:
            pass
    try:
        os.rmdir(path)
    except OSError:
        pass


def kill_all() -> None:
    """At the agent's exit: end every session's shell and jobs."""
    with _sessions_lock:
        for session in _sessions.values():
            session.kill()


OPS = {
    "session_create": op_session_create,
    "session_exec": op_session_exec,
    "session_input": op_session_input,
    "session_signal": op_session_signal,
    "session_delete": op_session_delete,
}
