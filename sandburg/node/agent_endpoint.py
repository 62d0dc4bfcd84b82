"""Where the host reaches a sandbox's toolbox agent: a Unix socket in its run dir, or TCP with a token.

The `container` tier (and a gVisor sandbox on a node without networking) uses the Unix socket the agent binds in
the bind-mounted run dir. A networked gVisor sandbox's agent listens on TCP inside gVisor's netstack instead,
because runsc cannot checkpoint a sandbox holding a socket bound on a host path (docs/gvisor-checkpoint.md):
the host connects to the sandbox's bridge address, and every connection starts with a per-sandbox token, so
that no other process of the host (any uid can route to the bridge) gets a root shell in the sandbox.
"""

from __future__ import annotations

import errno
import os
import socket
import stat
from dataclasses import dataclass

AGENT_PORT = 46080  # inside every networked gVisor sandbox; reserved (docs/network.md)


@dataclass(frozen=True)
class Endpoint:
    """A Unix socket path, or host/port/token for TCP."""

    path: str = ""
    host: str = ""
    port: int = 0
    token: str = ""

    def __str__(self) -> str:
        return self.path or f"{self.host}:{self.port}"

    def connect(self, timeout: float) -> socket.socket:
        """A connected, blocking socket (timeout set); the token already sent for TCP."""
        if self.path:
            return connect_nofollow(self.path, timeout)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.settimeout(max(timeout, 0.001))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            # a sandbox that dies takes its netstack along without a FIN or reset: probe idle connections so a
            # read waiting on it fails within ~10 s even if nobody aborts it (node.stop does, at once)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 4)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 2)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)
            sock.connect((self.host, self.port))
            sock.sendall(self.token.encode())
        except BaseException:
            sock.close()
            raise
        return sock


def endpoint_of(value: str | Endpoint) -> Endpoint:
    return value if isinstance(value, Endpoint) else Endpoint(path=value)


def connect_nofollow(path: str, timeout: float) -> socket.socket:
    """Connect to the Unix socket at `path`, refusing anything that is not a socket there (e.g. a symlink).

    The directory holding the agent's socket is writable from inside the sandbox: a process there could replace
    the socket with a symlink to some host socket. Opening the path with O_PATH|O_NOFOLLOW, checking that it is a
    socket, and connecting through /proc/self/fd/N makes the host talk to that very inode or to nothing.
    """
    fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if not stat.S_ISSOCK(os.fstat(fd).st_mode):
            raise OSError(errno.ENOTSOCK, f"{path} is not a socket")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(max(timeout, 0.001))
            sock.connect(f"/proc/self/fd/{fd}")
        except BaseException:
            sock.close()
            raise
        return sock
    finally:
        os.close(fd)
