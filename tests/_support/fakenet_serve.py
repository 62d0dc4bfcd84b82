"""The fake internet's servers, run inside its network namespace (tests/_support/fakenet.py starts it).

    python fakenet_serve.py ZONE_JSON DNS_ADDR [MIRROR_DIR]

For every (name, address) of the zone: HTTP on port 80 answering `hello from <name>`, a UDP echo on port 7;
an authoritative DNS server on DNS_ADDR:53 (UDP and TCP) for the zone's names (anything else: NXDOMAIN).
`mirror.test` serves MIRROR_DIR (the package mirror of scripts/fill-mirror.py) as static files on port 80 instead.
"""

from __future__ import annotations

import json
import os
import posixpath
import socket
import socketserver
import sys
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import dns.flags
import dns.message
import dns.rcode
import dns.rrset


class QuickHTTPServer(ThreadingHTTPServer):
    def server_bind(self) -> None:
        # HTTPServer.server_bind looks up the address's FQDN, between bind() and listen(): with no DNS in this
        # namespace that takes seconds, during which connections are refused
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])


PAGE = """<!doctype html><html><head><title>NAME test page</title>
<style>body{background:#fff;font:24px sans-serif} #result{color:#c00}</style></head>
<body><h1>NAME</h1><button id="go" onclick="document.getElementById('result').textContent='clicked on NAME'">
Go</button><p id="result">waiting</p></body></html>
"""


def http_server(addr: str, name: str) -> QuickHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            body = f"hello from {name}\n".encode()
            ctype = "text/plain"
            if self.path.startswith("/bytes/"):
                body = b"x" * int(self.path.split("/")[2])
            elif self.path == "/page.html":  # a page for the browser tests: a click changes the text
                body, ctype = PAGE.replace("NAME", name).encode(), "text/html; charset=utf-8"
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return QuickHTTPServer((addr, 80), Handler)


MIRROR_NAME = "mirror.test"
CONTENT_TYPES = {
    ".deb": "application/vnd.debian.binary-package",
    ".gz": "application/gzip",
    ".html": "text/html; charset=utf-8",
    ".json": "application/json",
    ".tgz": "application/octet-stream",
    ".whl": "application/octet-stream",
}


def mirror_file(root: str, url_path: str) -> str | None:
    """The file under `root` that `url_path` names, or None: never anything outside `root`.

    A directory stands for its index.json (an npm registry document) or index.html (a PEP 503 page).
    """
    path = posixpath.normpath("/" + urllib.parse.unquote(url_path.split("?", 1)[0].split("#", 1)[0]))
    if "\0" in path:
        return None
    # normpath already folds "..", and realpath follows symlinks: whatever the path, the result must stay in root
    real = os.path.realpath(os.path.join(root, path.lstrip("/")))
    if os.path.commonpath([root, real]) != root:
        return None
    if os.path.isdir(real):
        for index in ("index.json", "index.html"):
            if os.path.isfile(os.path.join(real, index)):
                return os.path.join(real, index)
        return None
    return real if os.path.isfile(real) else None


def mirror_server(addr: str, root: str) -> QuickHTTPServer:
    root = os.path.realpath(root)

    class Handler(BaseHTTPRequestHandler):
        # keep-alive: apt pipelines hundreds of requests over one connection
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:  # noqa: N802
            self.serve(body=True)

        def do_HEAD(self) -> None:  # noqa: N802
            self.serve(body=False)

        def serve(self, body: bool) -> None:
            path = mirror_file(root, self.path)
            if path is None:
                self.send_error(404)
                return
            url_path = self.path.split("?", 1)[0]
            if path.endswith("/index.html") and not url_path.endswith("/"):
                # a PEP 503 page links relative to its directory
                self.send_response(301)
                self.send_header("Location", url_path + "/")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            with open(path, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                self.send_response(200)
                ext = os.path.splitext(path)[1]
                self.send_header("Content-Type", CONTENT_TYPES.get(ext, "application/octet-stream"))
                self.send_header("Content-Length", str(size))
                self.end_headers()
                if body and size:
                    # headers went out unbuffered (wfile has no buffer): the file follows them, kernel to socket
                    self.connection.sendfile(fh)

        def log_message(self, *args: object) -> None:
            pass

    return QuickHTTPServer((addr, 80), Handler)


def udp_echo(s: socket.socket) -> None:
    while True:
        data, peer = s.recvfrom(2048)
        s.sendto(data, peer)


def answer(zone: dict[str, str], wire: bytes) -> bytes:
    q = dns.message.from_wire(wire)
    r = dns.message.make_response(q)
    r.flags |= dns.flags.AA
    name = q.question[0].name.to_text().rstrip(".").lower()
    if name not in zone:
        r.set_rcode(dns.rcode.NXDOMAIN)
    elif q.question[0].rdtype == 1:  # A
        r.answer.append(dns.rrset.from_text(q.question[0].name, 60, "IN", "A", zone[name]))
    return bytes(r.to_wire())


def dns_servers(addr: str, zone: dict[str, str]) -> list[socketserver.BaseServer]:
    class Udp(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            data, sock = self.request
            sock.sendto(answer(zone, data), self.client_address)

    class Tcp(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            n = int.from_bytes(self.rfile.read(2), "big")
            out = answer(zone, self.rfile.read(n))
            self.wfile.write(len(out).to_bytes(2, "big") + out)

    socketserver.ThreadingUDPServer.allow_reuse_address = True
    socketserver.ThreadingTCPServer.allow_reuse_address = True
    return [
        socketserver.ThreadingTCPServer((addr, 53), Tcp),
        socketserver.ThreadingUDPServer((addr, 53), Udp),
    ]


def main() -> None:
    zone: dict[str, str] = json.loads(sys.argv[1])
    dns_addr = sys.argv[2]
    mirror_dir = sys.argv[3] if len(sys.argv) > 3 else ""
    # every socket is bound and listening before "ready"
    servers: list[socketserver.BaseServer] = dns_servers(dns_addr, zone)
    for name, addr in zone.items():
        if name == MIRROR_NAME and mirror_dir:
            servers.append(mirror_server(addr, mirror_dir))
        else:
            servers.append(http_server(addr, name))
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        udp.bind((addr, 7))
        threading.Thread(target=udp_echo, args=(udp,), daemon=True).start()
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    print("ready", flush=True)
    threading.Event().wait()


if __name__ == "__main__":
    main()
