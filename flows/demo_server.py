"""The demo's feed server: the standard library's file server over one folder, on 127.0.0.1, quiet.

It sends Last-Modified and answers If-Modified-Since with 304, so a second `podflow demo` sees an unchanged feed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:  # the live display owns the terminal
        pass


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        """A client hanging up mid-response is no news on a demo."""


@contextmanager
def serving(directory: Path, port: int = 0) -> Iterator[str]:
    """Serve the files of `directory` on 127.0.0.1:`port` (0: any free port) while in the block; yields the base URL."""
    server = _QuietServer(("127.0.0.1", port), partial(_QuietHandler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="demo-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()
