"""A real HTTP server on 127.0.0.1 that speaks the OpenAI REST shapes the official client sends: audio
transcriptions (multipart) and chat completions (JSON).

By default `/v1/audio/transcriptions` is a self-hosted Whisper server: it decodes the uploaded file with PyAV and
transcribes it with the bundled faster-whisper model, answering `verbose_json` (or `json`) as whisper-1 does.
Tests queue replies per path (served first, in order), or swap a path's handler; every request is recorded.
"""

from __future__ import annotations

import json
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email import policy
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

TRANSCRIPTIONS = "/v1/audio/transcriptions"
CHAT = "/v1/chat/completions"


@dataclass
class Reply:
    status: int = 200
    json: object | None = None  # sent as application/json
    body: bytes | None = None  # sent as it is, when `json` is None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0  # before answering, after the request has been read


@dataclass
class Received:
    path: str
    headers: dict[str, str]  # names in lower case
    json: dict | None  # a JSON body
    form: dict[str, str]  # a multipart body's fields; a repeated field's values joined by ","
    files: dict[str, bytes]  # a multipart body's files, by field name
    started: float  # time.monotonic() when the request line arrived
    ended: float = 0.0  # when the reply was sent
    filenames: dict[str, str] = field(default_factory=dict)


def error(
    status: int,
    message: str,
    type_: str = "invalid_request_error",
    code: str | None = None,
    headers: dict[str, str] | None = None,
    delay_s: float = 0.0,
) -> Reply:
    """An error reply in the OpenAI API's shape."""
    return Reply(
        status,
        {"error": {"message": message, "type": type_, "param": None, "code": code}},
        headers=headers or {},
        delay_s=delay_s,
    )


def no_chat_handler(received: Received) -> Reply:
    return error(500, "no chat handler set", "server_error")


_whisper_lock = threading.Lock()


def whisper_transcription(received: Received) -> Reply:
    """A self-hosted Whisper server: the upload decoded with PyAV and transcribed with the bundled tiny.en model,
    answered as whisper-1 answers (language by name; words at the top level when asked for)."""
    from tasks import audio as audio_codec
    from tasks.models import Settings
    from tasks.transcribe.base import load_backend
    from tasks.transcribe.openai_request import LANGUAGE_CODES
    from tests.speech import decoded

    upload = received.files.get("file")
    if not upload:
        return error(400, "no file was uploaded")
    granularities = received.form.get("timestamp_granularities[]", "segment").split(",")
    settings = Settings.of(language=received.form.get("language") or None, word_timestamps="word" in granularities)
    suffix = Path(received.filenames.get("file", "upload.bin")).suffix
    with tempfile.NamedTemporaryFile(suffix=suffix) as file:
        file.write(upload)
        file.flush()
        try:
            samples = decoded(Path(file.name))
        except Exception as exc:
            return error(400, f"Invalid file format: {exc}")
    with _whisper_lock:  # one model, one transcription at a time, as a small server would run it
        backend = load_backend(settings, 1)
        detected, produced = backend.segments(samples, settings, settings.transcribe.language, None)  # type: ignore[attr-defined]
        segments = list(produced)
    names = {code: name for name, code in LANGUAGE_CODES.items()}
    text = " ".join(s.text for s in segments)
    if received.form.get("response_format", "json") != "verbose_json":
        return Reply(json={"text": text})
    answer: dict[str, object] = {
        "task": "transcribe",
        "language": names.get(detected.language or "", detected.language),
        "duration": round(samples.size / audio_codec.SAMPLE_RATE, 3),
        "text": text,
        "segments": [
            {
                "id": i,
                "seek": 0,
                "start": s.start,
                "end": s.end,
                "text": " " + s.text,
                "tokens": [],
                "temperature": 0.0,
                "avg_logprob": -0.3,
                "compression_ratio": 1.2,
                "no_speech_prob": 0.01,
            }
            for i, s in enumerate(segments)
        ],
    }
    if "word" in granularities:
        answer["words"] = [{"word": w.text, "start": w.start, "end": w.end} for s in segments for w in s.words]
    return Reply(json=answer)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: object, client_address: object) -> None:
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)  # type: ignore[arg-type]


class OpenAIServer:
    """Serves the OpenAI API on 127.0.0.1; use as a context manager."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.transcribe: Callable[[Received], Reply] = whisper_transcription
        self.chat: Callable[[Received], Reply] = no_chat_handler
        self._queued: dict[str, list[Reply]] = {}
        self._in_flight: dict[str, int] = {}
        self._peak: dict[str, int] = {}
        self._lock = threading.Lock()
        self._server = _Server(("127.0.0.1", 0), self._handler_class())
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="openai-server", daemon=True
        )
        host, port = self._server.server_address[:2]
        self.base_url = f"http://{host}:{port}/v1"

    def __enter__(self) -> OpenAIServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def queue(self, path: str, *replies: Reply) -> None:
        """Serve these replies first, in order, to the requests for `path` (e.g. "/v1/chat/completions")."""
        with self._lock:
            self._queued.setdefault(path, []).extend(replies)

    def peak_in_flight(self, path: str) -> int:
        """The most requests for `path` that were being answered at once."""
        with self._lock:
            return self._peak.get(path, 0)

    def requests(self, path: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.path == path]

    def _reply_for(self, received: Received) -> Reply:
        with self._lock:
            queued = self._queued.get(received.path)
            if queued:
                return queued.pop(0)
        if received.path == TRANSCRIPTIONS:
            return self.transcribe(received)
        if received.path == CHAT:
            return self.chat(received)
        return error(404, f"Invalid URL (POST {received.path})")

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # quiet: tests read `received`
                pass

            def do_POST(self) -> None:
                started = time.monotonic()
                path = self.path.split("?", 1)[0]
                with server._lock:
                    server._in_flight[path] = server._in_flight.get(path, 0) + 1
                    server._peak[path] = max(server._peak.get(path, 0), server._in_flight[path])
                try:
                    received = self._read(path, started)
                    with server._lock:
                        server.received.append(received)
                    try:
                        reply = server._reply_for(received)
                    except Exception as exc:  # a handler's bug: a 500 the test will see, with the reason
                        reply = error(500, f"test handler failed: {type(exc).__name__}: {exc}", "server_error")
                    time.sleep(reply.delay_s)
                    self._send(reply)
                    received.ended = time.monotonic()
                finally:
                    with server._lock:
                        server._in_flight[path] -= 1

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    parts = []
                    while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
                        parts.append(self.rfile.read(size))
                        self.rfile.readline()
                    while self.rfile.readline().strip():  # trailers
                        pass
                    return b"".join(parts)
                return self.rfile.read(int(self.headers.get("Content-Length") or 0))

            def _read(self, path: str, started: float) -> Received:
                body = self._body()
                content_type = self.headers.get("Content-Type", "")
                form: dict[str, str] = {}
                files: dict[str, bytes] = {}
                filenames: dict[str, str] = {}
                document = None
                if content_type.startswith("multipart/form-data"):
                    message = BytesParser(policy=policy.HTTP).parsebytes(
                        b"Content-Type: " + content_type.encode() + b"\r\n\r\n" + body
                    )
                    for part in message.iter_parts():
                        name = part.get_param("name", header="content-disposition")
                        payload = part.get_payload(decode=True) or b""
                        if part.get_filename() is not None:
                            files[name], filenames[name] = payload, part.get_filename()
                        else:
                            value = payload.decode()
                            form[name] = f"{form[name]},{value}" if name in form else value
                elif body:
                    try:
                        document = json.loads(body)
                    except ValueError:
                        document = None
                headers = {name.lower(): value for name, value in self.headers.items()}
                return Received(path, headers, document, form, files, started, filenames=filenames)

            def _send(self, reply: Reply) -> None:
                if reply.json is not None:
                    body, content_type = json.dumps(reply.json).encode(), "application/json"
                else:
                    body, content_type = reply.body or b"", "application/json"
                self.send_response(reply.status)
                headers = {"Content-Type": content_type, **reply.headers, "Content-Length": str(len(body))}
                for name, value in headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)

        return Handler
