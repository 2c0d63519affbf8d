"""transcriber=openai, one request: a chunk sent to the API with bounded retries, and its reply read as segments
in the episode's time."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any

import numpy as np
import openai

from tasks.errors import RequestFailed, TranscriptionError
from tasks.models import Segment, Settings, Word
from tasks.openai_client import call_with_retries, masked
from tasks.transcribe.languages import LANGUAGE_CODES
from tasks.transcribe.openai_chunks import FILE_NAME, MIME_TYPE, Chunk, encode_chunk
from tasks.transcribe.openai_stitch import ChunkTranscript

MAX_UPLOAD_BYTES = 25_000_000  # the API's limit is 25 MB; 25 MiB would be the kinder reading, so not that one
TEXT_ONLY_PREFIXES = ("gpt-",)  # gpt-4o-transcribe & co. answer `json` (text only); whisper-1 and servers: segments


class Requester:
    """Sends chunks to the API with bounded retries, each try taking a slot of the shared rate limit if any; each
    chunk's samples are made a file by `encode`."""

    def __init__(
        self,
        client: openai.OpenAI,
        settings: Settings,
        key: str | None,
        on_retry: Callable[[str], None],
        encode: Callable[[np.ndarray], bytes] = encode_chunk,
    ):
        self.client, self.settings, self.key, self.on_retry, self.encode = client, settings, key, on_retry, encode
        self.where = masked(f"the OpenAI API at {client.base_url}".rstrip("/"), key)  # credentials in it masked
        self.model = settings.openai.openai_transcribe_model
        self.timed = not self.model.startswith(TEXT_ONLY_PREFIXES)
        self.stopped = threading.Event()  # set when a chunk has failed: the others send nothing more

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"model": self.model, "response_format": "verbose_json" if self.timed else "json"}
        if self.timed:
            params["timestamp_granularities"] = (
                ["segment", "word"] if self.settings.transcribe.word_timestamps else ["segment"]
            )
        if self.settings.transcribe.language:
            params["language"] = self.settings.transcribe.language
        return params

    def transcribe(self, samples: np.ndarray, chunk: Chunk) -> ChunkTranscript:
        """The chunk's transcript, from its samples (chunk.start_s to chunk.end_s)."""
        data = self.encode(samples)
        if len(data) > MAX_UPLOAD_BYTES:  # cannot happen at CHUNK_S and BIT_RATE; said plainly if it ever does
            raise TranscriptionError(f"chunk {chunk.number + 1} encoded to {len(data):,} bytes, over the API's limit")
        payload = self._send(data, chunk)
        return parse_reply(payload, chunk, chunk.start_s, self.timed, f"{self.where} (chunk {chunk.number + 1})")

    def _send(self, data: bytes, chunk: Chunk) -> dict[str, Any]:
        # A server slower than real time is taken for stuck: http_timeout_s per minute of audio, at least once.
        read_s = max(1.0, (chunk.end_s - chunk.start_s) / 60) * self.settings.network.http_timeout_s
        timeout = openai.Timeout(read_s, connect=self.settings.network.http_timeout_s)

        def send() -> dict[str, Any]:
            response = self.client.audio.transcriptions.with_raw_response.create(
                file=(FILE_NAME, data, MIME_TYPE), timeout=timeout, **self.params()
            )
            return self._json(response.http_response.content, chunk)

        try:
            return call_with_retries(
                send,
                self.settings.openai,
                TranscriptionError,
                self.stopped,
                key=self.key,
                timeout_s=read_s,
                on_retry=lambda message: self.on_retry(f"{self.where}, chunk {chunk.number + 1}: {message}"),
            )
        except RequestFailed as exc:
            if exc.refused:
                hint = f"; {exc.reason}" if exc.key_refused or exc.out_of_quota else ""
                raise TranscriptionError(f"{self.where} refused chunk {chunk.number + 1}: {exc.detail}{hint}") from None
            raise TranscriptionError(
                f"{self.where} failed on chunk {chunk.number + 1} {exc.attempts} times; last: {exc.detail}"
            ) from None

    def _json(self, content: bytes, chunk: Chunk) -> dict[str, Any]:
        try:
            payload = json.loads(content)
        except ValueError:  # told, not quoted: the answer is a stranger's bytes
            raise TranscriptionError(
                f"{self.where} answered chunk {chunk.number + 1} with malformed JSON ({len(content):,} bytes)"
            ) from None
        if not isinstance(payload, dict) or not isinstance(payload.get("text"), str):
            raise TranscriptionError(f"{self.where} answered chunk {chunk.number + 1} without a transcript text")
        return payload


def _number(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError("a time that is not a number")
    return float(value)


def parse_reply(payload: dict[str, Any], chunk: Chunk, offset_s: float, timed: bool, where: str) -> ChunkTranscript:
    """A transcription reply (verbose_json or json) as segments in the episode's time; words at the top level
    (whisper-1's shape) or in the segments (some servers') go to the segment they fall in."""
    language = payload.get("language")
    language = LANGUAGE_CODES.get(language.lower(), language) if isinstance(language, str) and language else None
    raw_segments = payload.get("segments") or []
    text = " ".join(str(payload.get("text", "")).split())
    if not raw_segments:  # a text-only model's answer, or nothing said
        if not text:
            return ChunkTranscript(chunk, (), language, timed)
        estimated = Segment(start=round(chunk.own_start_s, 3), end=round(chunk.own_end_s, 3), text=text)
        return ChunkTranscript(chunk, (estimated,), language, timed=False)

    def at(value: object) -> float:
        return round(min(chunk.end_s, max(chunk.start_s, offset_s + _number(value))), 3)

    def word(raw: dict[str, Any]) -> Word:
        return Word(
            start=at(raw["start"]),
            end=at(raw["end"]),
            text=str(raw["word"]).strip(),
            probability=raw.get("probability"),
        )

    try:
        segments = [
            Segment(
                start=at(s["start"]),
                end=max(at(s["start"]), at(s["end"])),
                text=" ".join(str(s["text"]).split()),
                words=tuple(word(w) for w in s.get("words") or ()),
            )
            for s in raw_segments
        ]
        loose = [word(w) for w in payload.get("words") or ()]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # their messages may quote the answer
        missing = f"no {exc.args[0]!r} in one" if isinstance(exc, KeyError) else type(exc).__name__
        raise TranscriptionError(f"{where} answered with segments of an unexpected shape ({missing})") from None
    if loose and not any(s.words for s in segments):
        placed: list[list[Word]] = [[] for _ in segments]
        for w in loose:
            middle = (w.start + w.end) / 2
            placed[
                min(range(len(segments)), key=lambda i: max(segments[i].start - middle, middle - segments[i].end, 0.0))
            ].append(w)
        segments = [s.model_copy(update={"words": tuple(ws)}) for s, ws in zip(segments, placed)]
    segments.sort(key=lambda s: s.start)  # a server's segments are not always in order
    return ChunkTranscript(chunk, tuple(s for s in segments if s.text or s.words), language, timed=timed)
