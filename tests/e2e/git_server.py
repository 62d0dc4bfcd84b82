"""A small smart-HTTP git server for the e2e tests, run INSIDE a sandbox (it has no network but its loopback).

    python3 git_server.py ROOT PORT USER PASSWORD

serves the bare repositories under ROOT at http://127.0.0.1:PORT/<name>.git through `git http-backend` (CGI),
for clone, fetch and push, to requests with HTTP basic auth USER:PASSWORD only (anything else: 401 with a
challenge, as GitHub and GitLab answer). Standard library and the image's git only; it prints `listening` once
it accepts connections. Requests are logged to stderr.
"""

from __future__ import annotations

import base64
import hmac
import os
import subprocess
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROOT, PORT, USER, PASSWORD = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
EXPECTED = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()


class GitHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        self._git()

    def do_POST(self) -> None:
        self._git()

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            data = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(data)
                data += self.rfile.read(size)
                self.rfile.readline()
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def _reply(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _git(self) -> None:
        body = self._body()
        if not hmac.compare_digest(self.headers.get("Authorization", ""), EXPECTED):
            self._reply(401, [("WWW-Authenticate", 'Basic realm="git"')], b"authentication required\n")
            return
        path, _, query = self.path.partition("?")
        env = {
            **os.environ,
            "GIT_PROJECT_ROOT": ROOT,
            "GIT_HTTP_EXPORT_ALL": "1",
            "REMOTE_USER": USER,  # enables receive-pack (push) in http-backend
            "REMOTE_ADDR": "127.0.0.1",
            "REQUEST_METHOD": self.command,
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(len(body)),
            "HTTP_CONTENT_ENCODING": self.headers.get("Content-Encoding", ""),
            "GIT_PROTOCOL": self.headers.get("Git-Protocol", ""),
        }
        out = subprocess.run(["git", "http-backend"], input=body, env=env, capture_output=True, check=False)
        sep = b"\r\n\r\n" if b"\r\n\r\n" in out.stdout else b"\n\n"
        head, _, payload = out.stdout.partition(sep)
        status, headers = 200, []
        for line in head.decode("latin-1").splitlines():
            key, _, value = line.partition(":")
            if key.lower() == "status":
                status = int(value.split()[0])
            elif key:
                headers.append((key, value.strip()))
        if out.returncode != 0 and not head:
            status, payload = 500, out.stderr
        self._reply(status, headers, payload)


if __name__ == "__main__":
    server = ThreadingHTTPServer(("127.0.0.1", PORT), GitHandler)
    print("listening", flush=True)
    server.serve_forever()
