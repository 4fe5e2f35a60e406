"""A real HTTP server on loopback for the service's outbound requests: it serves STAC items and assets (with
range requests, as object stores do, unless ``ranges`` is off), redirects, and receives alert webhooks,
answering each POST with the next status of a queue. Every request is recorded (its log)."""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    method: str
    path: str
    host: str
    headers: dict[str, str]
    body: bytes


@dataclass
class LocalHTTP:
    """``routes``: path -> (status, headers, body) for GET; POSTs answer ``post_statuses`` in turn (then 200).
    ``sent``: bytes of body answered to GETs, by path."""

    routes: dict[str, tuple[int, dict, bytes]] = field(default_factory=dict)
    post_statuses: list[int] = field(default_factory=list)
    received: list[Received] = field(default_factory=list)
    ranges: bool = True
    sent: dict[str, int] = field(default_factory=dict)

    def __post_init__(self):
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def record(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                owner.received.append(Received(self.command, self.path, self.headers.get("Host", ""), dict(self.headers),
                                               self.rfile.read(length) if length else b""))

            def do_GET(self):
                self.record()
                status, headers, body = owner.routes.get(self.path, (404, {}, b"not here"))
                wanted = re.fullmatch(r"bytes=(\d+)-(\d+)", self.headers.get("Range", ""))
                if owner.ranges and status == 200 and wanted:
                    first, last = int(wanted.group(1)), min(int(wanted.group(2)), len(body) - 1)
                    status, headers = 206, {**headers, "Content-Range": f"bytes {first}-{last}/{len(body)}"}
                    body = body[first:last + 1]
                owner.sent[self.path] = owner.sent.get(self.path, 0) + len(body)
                self.send_response(status)
                for k, v in {"Content-Length": str(len(body)), **headers}.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self):
                self.record()
                status = owner.post_statuses.pop(0) if owner.post_statuses else 200
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def posts(self) -> list[Received]:
        return [r for r in self.received if r.method == "POST"]

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
