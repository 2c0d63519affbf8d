"""A real HTTP server on 127.0.0.1 for feeds and audio, with Range requests, conditional GETs, redirects and faults
on demand: the tests use it to delay, fail and cut off chosen paths.
"""

from __future__ import annotations

import hashlib
import mimetypes
import re
import ssl
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

RANGE = re.compile(r"bytes=(\d*)-(\d*)$")


@dataclass
class Route:
    body: bytes = b""
    content_type: str = "application/octet-stream"
    status: int = 200
    delay_s: float = 0.0
    fail_times: int = 0
    fail_status: int = 503
    retry_after: str | None = None  # sent with the injected failures
    truncate_after: int | None = None
    redirect_to: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    ignore_range: bool = False  # like servers that answer every Range request with the whole body
    ignore_if_range: bool = False  # like servers that send the asked range of whatever file they have now
    drip_s: float = 0.0  # pause between 1 KiB pieces of the body: a server that never stalls long but never ends
    after_response: Callable[[Route], None] | None = None  # e.g. replace the body between two requests

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.body).hexdigest()[:16] + '"'


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        """Clients that hang up mid-response (timeouts, cut-off tests) are expected; anything else is printed."""
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError, ssl.SSLError)):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


@dataclass(frozen=True)
class Hit:
    method: str
    path: str
    headers: dict[str, str]
    at: float


class FeedServer:
    """Serves registered routes; records every request it gets. Use as a context manager."""

    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        self.routes: dict[str, Route] = {}
        self.hits: list[Hit] = []
        self._lock = threading.Lock()
        self._server = _Server((host, port), self._handler_class())
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="feedserver", daemon=True)

    def __enter__(self) -> FeedServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def url(self, path: str) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{path}"

    def add(self, path: str, body: bytes = b"", **options: object) -> str:
        """Serve `body` at `path` (options: see Route); returns its URL."""
        if "content_type" not in options:
            options["content_type"] = mimetypes.guess_type(path)[0] or "application/octet-stream"
        self.routes[path] = Route(body=body, **options)  # type: ignore[arg-type]
        return self.url(path)

    def add_directory(self, directory: Path, prefix: str = "/") -> None:
        for file in sorted(directory.iterdir()):
            if file.is_file():
                self.add(prefix + file.name, file.read_bytes())

    def count(self, path: str, method: str = "GET") -> int:
        with self._lock:
            return sum(1 for hit in self.hits if hit.path == path and hit.method == method)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # quiet: tests read `hits` instead
                pass

            def do_HEAD(self) -> None:
                self._respond(send_body=False)

            def do_GET(self) -> None:
                self._respond(send_body=True)

            def _respond(self, send_body: bool) -> None:
                path = self.path.split("?", 1)[0]
                with server._lock:
                    server.hits.append(Hit(self.command, path, dict(self.headers), time.monotonic()))
                    route = server.routes.get(path)
                    failing = route is not None and route.fail_times > 0
                    if failing:
                        route.fail_times -= 1
                if route is None:
                    return self._send(404, b"not found\n", "text/plain", send_body)
                time.sleep(route.delay_s)
                if failing:
                    retry = {"Retry-After": route.retry_after} if route.retry_after else {}
                    return self._send(route.fail_status, b"injected failure\n", "text/plain", send_body, retry)
                if route.redirect_to:
                    self.send_response(302)
                    self.send_header("Location", route.redirect_to)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return None
                body, status, extra = route.body, route.status, {"ETag": route.etag, **route.headers}
                if status == 200 and self._unchanged(extra):
                    return self._send(304, b"", route.content_type, False, {"ETag": extra["ETag"]})
                wanted = RANGE.match(self.headers.get("Range", ""))
                if_range = self.headers.get("If-Range")
                if_range_holds = route.ignore_if_range or if_range in (None, extra["ETag"])
                if wanted and status == 200 and not route.ignore_range and if_range_holds:
                    start = int(wanted[1]) if wanted[1] else max(0, len(body) - int(wanted[2] or 0))
                    end = int(wanted[2]) if wanted[1] and wanted[2] else len(body) - 1
                    if start >= len(body):
                        return self._send(416, b"", "text/plain", send_body, {"Content-Range": f"bytes */{len(body)}"})
                    end = min(end, len(body) - 1)
                    extra["Content-Range"] = f"bytes {start}-{end}/{len(body)}"
                    body, status = body[start : end + 1], 206
                extra.setdefault("Accept-Ranges", "none" if route.ignore_range else "bytes")
                self._send(status, body, route.content_type, send_body, extra, route.truncate_after, route.drip_s)
                if route.after_response is not None:
                    route.after_response(route)
                return None

            def _unchanged(self, validators: dict[str, str]) -> bool:
                """A conditional GET whose validator still matches: the client's copy is current."""
                if (tags := self.headers.get("If-None-Match")) is not None:
                    return validators["ETag"] in [tag.strip() for tag in tags.split(",")]
                since = self.headers.get("If-Modified-Since")
                return since is not None and since == validators.get("Last-Modified")

            def _send(
                self,
                status: int,
                body: bytes,
                content_type: str,
                send_body: bool,
                headers: dict[str, str] | None = None,
                truncate_after: int | None = None,
                drip_s: float = 0.0,
            ) -> None:
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                for name, value in (headers or {}).items():
                    self.send_header(name, value)
                self.end_headers()
                sent = body if truncate_after is None else body[:truncate_after]
                for start in range(0, len(sent) if send_body else 0, 1024 if drip_s else max(1, len(sent))):
                    time.sleep(drip_s)
                    self.wfile.write(sent[start : start + (1024 if drip_s else len(sent))])
                if truncate_after is not None:
                    self.close_connection = True

        return Handler
