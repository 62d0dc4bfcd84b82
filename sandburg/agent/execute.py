"""The exec operation: run a command in its own session and stream its output.

Shell commands normally go to a *warm shell*: a shell started ahead of time in its own session, with its output
pipes ready, blocked reading its script from fd 3. An exec only writes `cd`, the request's `export`s and the
command into that pipe; a fresh warm shell is started for the next exec in the background. Under gVisor a
fork+exec of bash costs ~45 ms, so this takes the shell's start-up off the request path (a builtin such as `true`
then answers in ~1 ms). Requests that need stdin, or env names that are not shell identifiers, take the cold
path (spawn `shell -c command`), with the same semantics.

Commands are started with posix_spawn (vfork+exec inside libc: this multi-threaded process is never forked)
and each is reaped by its own thread calling waitpid() on that pid only, so no global SIGCHLD reaper can race
with it. The exec loop poll()s the command's pipes, the client socket (stdin, signals, disconnect) and a wake
pipe the reaper closes when the command has exited.
"""

from __future__ import annotations

import _socket
import _thread
import errno
import os
import select
from time import monotonic, sleep

TYPE_CHECKING = False  # see agent.py
if TYPE_CHECKING:
    import signal as _signal
    from collections.abc import Callable
else:
    import _signal
if TYPE_CHECKING or __package__:
    from . import protocol as P
    from .files import bad_request, opt_bool, opt_float, opt_int, opt_str, resolve
else:  # run as a script from this directory
    import protocol as P
    from files import bad_request, opt_bool, opt_float, opt_int, opt_str, resolve

DEFAULT_MAX_OUTPUT = 10 << 20
_READ_SIZE = 64 << 10
_STDIN_HIGH_WATER = 1 << 20  # stop reading the socket while this much stdin waits for the command
_DRAIN_LIMIT = 1.0  # seconds of post-exit draining, in case a background grandchild keeps writing
_RESET_SIGNALS = RESET_SIGNALS = (
    _signal.SIGPIPE,
    _signal.SIGXFSZ,
)  # CPython ignores these; children must not inherit that
_DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

CHILD_ENV: dict[str, str] = {}  # the sandbox environment, without the agent's own variables (set by main)
RUNNING: set[int] = set()  # process groups of running commands
_shell: str | None = None
# posix_spawn cannot set the child's cwd (no addchdir in Python 3.11): chdir the agent itself under this lock.
# Nothing else in the agent depends on its cwd: every file operation uses an absolute path.
_spawn_lock = SPAWN_LOCK = _thread.allocate_lock()


def _which(name: str, env: dict[str, str], cwd: str) -> str:
    # The child's PATH, not the agent's (posix_spawnp would search the agent's). Relative entries are relative to
    # the command's cwd; resolve them here, the agent's own cwd changes under other threads.
    if "/" in name:
        return name if name.startswith("/") else f"{cwd}/{name}"
    for d in env.get("PATH", _DEFAULT_PATH).split(":"):
        cand = f"{d if d.startswith('/') else f'{cwd}/{d}'}/{name}"
        if os.access(cand, os.X_OK) and not os.path.isdir(cand):
            return cand
    raise FileNotFoundError(errno.ENOENT, "command not found", name)


def _command(req: dict[str, object]) -> tuple[list[str], dict[str, str]]:
    command, argv = req.get("command"), req.get("argv")
    if isinstance(command, str) and argv is None:
        argv = [_shell_path(), "-c", command]
    elif (
        command is not None
        or not isinstance(argv, list)
        or not argv
        or not all(isinstance(a, str) for a in argv)
    ):
        raise bad_request("exec needs either 'command' (a string) or 'argv' (a non-empty list of strings)")
    env = dict(CHILD_ENV)
    extra = req.get("env") or {}
    if not isinstance(extra, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in extra.items()
    ):
        raise bad_request("'env' must map strings to strings")
    env.update(extra)
    return argv, env


def _shell_path() -> str:
    global _shell
    if _shell is None:
        _shell = "/bin/bash" if os.access("/bin/bash", os.X_OK) else "/bin/sh"
    return _shell


# -- warm shells ------------------------------------------------------------------------------------------------
_WARM_SCRIPT = (
    ". /proc/self/fd/3"  # sources the script the agent writes into fd 3 (POSIX: bash, dash, busybox)
)
_warm: list[tuple[int, int, int, int]] = []  # (pid, stdout r, stderr r, script w); at most one
_warm_lock = _thread.allocate_lock()
_spawning = _thread.allocate_lock()  # held while a warm shell is being started (one at a time)


def _is_name(k: str) -> bool:
    return (
        bool(k)
        and (k[0].isalpha() or k[0] == "_")
        and all(c.isalnum() or c == "_" for c in k)
        and k.isascii()
    )


def _quote(v: str) -> str:
    return "'" + v.replace("'", "'\\''") + "'"


def spawn_warm() -> None:
    """Start one warm shell if none is waiting (called at start-up and after each use, off the request path)."""
    if not _spawning.acquire(False):
        return
    try:
        with _warm_lock:
            if _warm:
                return
        _spawn_warm()
    finally:
        _spawning.release()


def _spawn_warm() -> None:
    fds: list[int] = []
    try:
        shell = _shell_path()
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        scr_r, scr_w = os.pipe()
        fds = [out_r, out_w, err_r, err_w, scr_r, scr_w]
        actions: list[tuple[object, ...]] = [
            (os.POSIX_SPAWN_DUP2, out_w, 1),
            (os.POSIX_SPAWN_DUP2, err_w, 2),
            (os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0),
            (os.POSIX_SPAWN_DUP2, scr_r, 3),
        ]
        with _spawn_lock:
            os.chdir("/")
            pid = os.posix_spawn(
                shell, [shell, "-c", _WARM_SCRIPT], CHILD_ENV, file_actions=actions, setsid=True,
                setsigdef=_RESET_SIGNALS, setsigmask=(),
            )  # fmt: skip
    except OSError:
        for fd in fds:
            os.close(fd)
        return  # no warm shell: execs take the cold path
    for fd in (out_w, err_w, scr_r):
        os.close(fd)
    RUNNING.add(pid)
    with _warm_lock:
        _warm.append((pid, out_r, err_r, scr_w))


def _take_warm(command: str, extra_env: dict[str, str], cwd: str) -> tuple[int, int, int] | None:
    if not all(_is_name(k) for k in extra_env):
        return None
    with _warm_lock:
        got = _warm.pop() if _warm else None
    if got is None and _spawning.locked():
        # one is on its way: it is further along than a shell started now would be. Poll rather than wait on the
        # lock: a waiter holding it, even briefly, would make the next spawn_warm() give up.
        deadline = monotonic() + 2
        while got is None and _spawning.locked() and monotonic() < deadline:
            sleep(0.0005)
            with _warm_lock:
                got = _warm.pop() if _warm else None
        if got is None:
            with _warm_lock:
                got = _warm.pop() if _warm else None
    try:
        _thread.start_new_thread(spawn_warm, ())  # for the next exec
    except RuntimeError:
        pass  # no thread to spare (pids limit): the next exec takes the cold path
    if got is None:
        return None
    pid, out_r, err_r, scr_w = got
    lines = [f"cd -- {_quote(cwd)} || exit 126"]
    lines += [f"export {k}={_quote(v)}" for k, v in extra_env.items()]
    script = ("\n".join(lines) + "\n" + command + "\n").encode(errors="surrogateescape")
    try:
        view = memoryview(script)
        while view:
            view = view[os.write(scr_w, view) :]
    except OSError:  # the warm shell died while waiting (e.g. killed from inside): reap it, go cold
        os.close(scr_w)
        kill_group(pid)
        os.waitpid(pid, 0)
        RUNNING.discard(pid)
        os.close(out_r)
        os.close(err_r)
        return None
    os.close(scr_w)
    return pid, out_r, err_r


def _spawn(argv: list[str], env: dict[str, str], cwd: str, stdin: bool) -> tuple[int, int, int, int]:
    """Start the command in its own session; return (pid, stdout fd, stderr fd, stdin fd or -1)."""
    exe = _which(argv[0], env, cwd)
    fds: list[int] = []
    try:
        out_r, out_w = os.pipe()
        fds += (out_r, out_w)
        err_r, err_w = os.pipe()
        fds += (err_r, err_w)
        actions: list[tuple[object, ...]] = [(os.POSIX_SPAWN_DUP2, out_w, 1), (os.POSIX_SPAWN_DUP2, err_w, 2)]
        child_ends = [out_w, err_w]
        in_w = -1
        if stdin:
            in_r, in_w = os.pipe()
            fds += (in_r, in_w)
            actions.append((os.POSIX_SPAWN_DUP2, in_r, 0))
            child_ends.append(in_r)
        else:
            actions.append((os.POSIX_SPAWN_OPEN, 0, "/dev/null", os.O_RDONLY, 0))
        with _spawn_lock:
            os.chdir(cwd)
            pid = os.posix_spawn(
                exe, argv, env, file_actions=actions, setsid=True, setsigdef=_RESET_SIGNALS, setsigmask=()
            )
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    for fd in child_ends:
        os.close(fd)
    if in_w >= 0:
        os.set_blocking(in_w, False)
    return pid, out_r, err_r, in_w


def _reaper(pid: int, wake_w: int, status: list[int]) -> None:
    try:
        status.append(os.waitpid(pid, 0)[1])
    finally:
        RUNNING.discard(pid)
        os.close(wake_w)  # EOF on the wake pipe tells the exec loop


reap = _reaper  # for the other operations that spawn (sessions, pty)
TERM_GRACE = 3.0  # seconds a process group gets between SIGTERM and SIGKILL


def terminate_later(pgid: int, is_done: Callable[[], bool], grace: float = TERM_GRACE) -> None:
    """After SIGTERM was sent to `pgid`: SIGKILL it if it still runs `grace` seconds later (own thread)."""

    def check() -> None:
        deadline = monotonic() + grace
        while monotonic() < deadline:
            if is_done():
                return
            select.select([], [], [], 0.05)
        if not is_done():
            kill_group(pgid)

    try:
        _thread.start_new_thread(check, ())
    except RuntimeError:
        kill_group(pgid)  # no thread to wait with: do not leave a process that ignores SIGTERM running


_REKILL_DELAYS = (0.02, 0.1, 0.3)  # seconds between the repeated kills of kill_group_surely


def kill_group(pgid: int, sig: int = _signal.SIGKILL) -> None:
    try:
        os.killpg(pgid, sig)
    except OSError:
        pass


def kill_group_surely(pgid: int) -> None:
    """SIGKILL the group now, and again a few times shortly after. Under gVisor a child that a member forks at the
    moment of the kill can escape it (seen: `sleep` forked by a bash killed while starting it survived, alone in
    its group); a second kill catches it. Stops as soon as the group is gone."""
    kill_group(pgid)

    def again() -> None:
        for delay in _REKILL_DELAYS:
            sleep(delay)
            try:
                os.killpg(pgid, _signal.SIGKILL)
            except OSError:  # ESRCH: nothing left in the group
                return

    try:
        _thread.start_new_thread(again, ())
    except RuntimeError:
        pass  # no thread to spare (pids limit): the first kill is all there is


def op_exec(sock: _socket.socket, reader: P.FrameReader, req: dict[str, object]) -> dict[str, object]:
    argv, env = _command(req)
    cwd = resolve(opt_str(req, "cwd", ""))
    timeout = opt_float(req, "timeout")
    max_output = opt_int(req, "max_output", DEFAULT_MAX_OUTPUT)
    if (timeout is not None and timeout < 0) or max_output < 0:
        raise bad_request("'timeout' and 'max_output' must not be negative")
    want_stdin = opt_bool(req, "stdin", False)
    if not os.path.isdir(cwd):
        raise FileNotFoundError(errno.ENOENT, "working directory not found", cwd)
    warm = None
    command = req.get("command")
    if isinstance(command, str) and not want_stdin:
        extra = req.get("env") or {}
        warm = _take_warm(command, extra if isinstance(extra, dict) else {}, cwd)
    wake_r, wake_w = os.pipe()
    try:
        if warm is not None:
            (pid, out_r, err_r), in_w = warm, -1
        else:
            pid, out_r, err_r, in_w = _spawn(argv, env, cwd, want_stdin)
    except BaseException:
        os.close(wake_r)
        os.close(wake_w)
        raise
    start = monotonic()
    RUNNING.add(pid)
    status: list[int] = []
    try:
        _thread.start_new_thread(_reaper, (pid, wake_w, status))
    except RuntimeError:  # no thread (pids limit): do not leave the command running unwatched, nor a zombie
        kill_group(pid)
        _reaper(pid, wake_w, status)
        for fd in (out_r, err_r, in_w, wake_r):
            if fd >= 0:
                os.close(fd)
        raise
    deadline = start + timeout if timeout else None  # no timeout, or 0: run until done
    streams = {out_r: P.STDOUT, err_r: P.STDERR}
    sent = {out_r: 0, err_r: 0}
    truncated = timed_out = close_stdin = False
    pending = bytearray()  # stdin the command has not taken yet
    stdin_polled = False  # in_w is registered for POLLOUT
    sockfd = sock.fileno()
    poller = select.poll()
    for fd in (out_r, err_r, wake_r, sockfd):
        poller.register(fd, select.POLLIN)

    def read_pipe(fd: int) -> None:
        nonlocal truncated
        data = os.read(fd, _READ_SIZE)
        if not data:
            poller.unregister(fd)
            del streams[fd]
            os.close(fd)
            return
        room = max_output - sent[fd]
        if len(data) > room:
            # past the cap: keep draining the pipe so that the command never blocks, but drop the bytes
            data = data[:room]
            truncated = True
        if data:
            sent[fd] += len(data)
            sock.sendall(P.frame(streams[fd], data))

    def feed_stdin() -> None:
        # in_w is polled for POLLOUT only while stdin bytes wait: an idle pipe end would report POLLERR forever
        # once the command closes its stdin
        nonlocal close_stdin, stdin_polled
        if pending:
            try:
                del pending[: os.write(in_w, pending)]
            except BlockingIOError:
                pass
            except OSError:  # EPIPE: the command closed its stdin or exited; nobody will read the rest
                pending.clear()
                close_stdin = True
        if bool(pending) != stdin_polled:
            stdin_polled = bool(pending)
            if stdin_polled:
                poller.register(in_w, select.POLLOUT)
            else:
                poller.unregister(in_w)
        if not pending and close_stdin:
            close_stdin_now()
        # backpressure: stop reading the socket while the command does not take its stdin
        poller.modify(sockfd, 0 if len(pending) > _STDIN_HIGH_WATER else select.POLLIN)

    def close_stdin_now() -> None:
        nonlocal in_w
        if in_w >= 0:
            os.close(in_w)
            in_w = -1

    def handle_frames() -> None:
        nonlocal close_stdin
        while (f := reader.pop()) is not None:
            ftype, payload = f
            if ftype == P.STDIN:
                if in_w < 0:
                    continue
                if payload:
                    pending.extend(payload)
                else:
                    close_stdin = True
                feed_stdin()
            elif ftype == P.SIGNAL:
                try:
                    msg = P.loads(payload)
                except ValueError:
                    continue
                sig = msg.get("signal") if isinstance(msg, dict) else None
                if isinstance(sig, int) and 0 < sig < 65:
                    kill_group(pid, sig)
                    if sig == _signal.SIGTERM:  # a command that ignores it is killed after a grace period
                        terminate_later(pid, lambda: bool(status))
            else:
                raise P.ProtocolError(f"unexpected {ftype!r} frame during exec")

    try:
        handle_frames()  # frames the client pipelined behind its request
        exited = False
        while not exited:
            wait = None if deadline is None else max(0, int((deadline - monotonic()) * 1000) + 1)
            events = poller.poll(wait)
            if deadline is not None and monotonic() >= deadline:
                timed_out = True
                deadline = None
                kill_group_surely(pid)
            for fd, _ev in events:
                if fd == wake_r:
                    exited = True
                elif fd == sockfd:
                    if not reader.fill():
                        raise P.ProtocolError("client closed the connection during exec")
                    handle_frames()
                elif fd == in_w:
                    feed_stdin()
                elif fd in streams:
                    read_pipe(fd)
        # The command has exited. Its own output is already in the pipes; take what is there now and stop, even
        # if a background grandchild still holds the pipes open (waiting for EOF would hang on `daemon &`).
        poller = select.poll()
        for fd in streams:
            poller.register(fd, select.POLLIN)
        limit = monotonic() + _DRAIN_LIMIT
        while streams and monotonic() < limit:
            events = poller.poll(0)
            if not events:
                break
            for fd, _ev in events:
                read_pipe(fd)
    except BaseException:
        # the client is gone or the stream broke: the command must not outlive its connection
        if not status:
            kill_group_surely(pid)
        raise
    finally:
        for fd in (*streams, wake_r, in_w):
            if fd >= 0:
                os.close(fd)
    duration_ms = round((monotonic() - start) * 1000, 3)
    code = os.waitstatus_to_exitcode(status[0])
    exit_code = 137 if timed_out else (128 - code if code < 0 else code)
    return {"ok": True, "exit_code": exit_code, "timed_out": timed_out, "truncated": truncated,
            "duration_ms": duration_ms}  # fmt: skip
