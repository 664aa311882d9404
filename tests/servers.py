"""Real servers on 127.0.0.1 for tests: a feed server, a webhook receiver, an SMTP server."""

from __future__ import annotations

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any


@dataclass
class Route:
    body: bytes = b""
    status: int = 200
    content_type: str = "application/rss+xml; charset=utf-8"
    etag: str | None = None
    delay: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)
    drip: float = 0.0
    """Seconds between bytes: a server that drips its answer."""
    location: str | None = None


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""

    def json(self) -> Any:
        return json.loads(self.body)


class FeedServer:
    """Serves ``routes`` by path, honours If-None-Match, records every request; a path's
    ``planned`` routes, if any, answer first, one request each."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.planned: dict[str, list[Route]] = {}
        self.lock = threading.Lock()
        self.requests: list[Request] = []
        self.base = ""

    def url(self, path: str) -> str:
        return f"{self.base}{path}"

    def handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.requests.append(Request("GET", self.path, dict(self.headers.items())))
                with server.lock:
                    planned = server.planned.get(self.path)
                    route = planned.pop(0) if planned else server.routes.get(self.path)
                if route is None:
                    self.send_error(404)
                    return
                if route.delay:
                    time.sleep(route.delay)
                if route.etag and self.headers.get("If-None-Match") == route.etag:
                    self.send_response(304)
                    self.send_header("ETag", route.etag)
                    self.end_headers()
                    return
                self.send_response(route.status)
                self.send_header("Content-Type", route.content_type)
                self.send_header("Content-Length", str(len(route.body)))
                if route.etag:
                    self.send_header("ETag", route.etag)
                if route.location:
                    self.send_header("Location", route.location)
                for name, value in route.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                if route.drip:
                    for byte in route.body:
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                        time.sleep(route.drip)
                else:
                    self.wfile.write(route.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


Reply = int | tuple[int, dict[str, str]]
"""A planned answer: a status, or a status and headers."""


@dataclass
class Receiver:
    """Records acknowledged POSTs; answers the planned replies in turn, then ``default``;
    ``delay`` holds every answer that long (a receiver that hangs)."""

    planned: list[Reply] = field(default_factory=list)
    planned_by_path: dict[str, list[Reply]] = field(default_factory=dict)
    default: int = 200
    delay: float = 0.0
    attempts: int = 0
    requests: list[Request] = field(default_factory=list)
    base: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, path: str = "/hook") -> str:
        return f"{self.base}{path}"

    def requests_to(self, path: str) -> list[Request]:
        return [r for r in self.requests if r.path == path]

    def bodies(self, path: str | None = None) -> list[Any]:
        return [r.json() for r in self.requests if path is None or r.path == path]

    def handler(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = self.rfile.read(length)
                with receiver.lock:
                    receiver.attempts += 1
                    planned = receiver.planned_by_path.get(self.path) or receiver.planned
                    reply = planned.pop(0) if planned else receiver.default
                    status, headers = reply if isinstance(reply, tuple) else (reply, {})
                    if 200 <= status < 300:  # taken in, even if the sender dies before the answer
                        receiver.requests.append(
                            Request("POST", self.path, dict(self.headers.items()), body)
                        )
                if receiver.delay:
                    time.sleep(receiver.delay)
                self.send_response(status)
                for name, value in headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class SmtpServer:
    """An aiosmtpd server on loopback recording messages; ``reply`` overrides the DATA reply."""

    host: str = "127.0.0.1"
    port: int = 0
    messages: list[Any] = field(default_factory=list)
    replies: list[str] = field(default_factory=list)
    refuse: set[str] = field(default_factory=set)
    """Recipients refused with 550 at RCPT."""

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address in self.refuse:
            return "550 5.1.1 No such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        if self.replies:
            return self.replies.pop(0)
        self.messages.append(envelope)
        return "250 Message accepted"
