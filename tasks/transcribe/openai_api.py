"""transcriber=openai: the OpenAI audio API, or any server that speaks it, for episodes of any length.

The API refuses uploads over 25 MB, which a half-hour MP3 already passes. The episode is decoded once (the one
decoder, tasks/audio.py), cut into chunks of at most ten minutes at its quietest moments, each chunk re-encoded as
mono 16 kHz Opus at 32 kbit/s (2.4 MB for ten minutes) with two seconds of overlap on either side (openai_chunks),
and the chunks are sent in parallel, `openai_requests` at once (openai_request). Their segments are moved to the
chunk's offset and stitched, with the words the overlap made both neighbours hear kept once: the two are joined at
the longest run of words both heard at the same time around the cut (openai_stitch).
"""

from __future__ import annotations

import contextvars
from collections import Counter
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

import numpy as np
import openai

from tasks import audio as audio_codec
from tasks.errors import TranscriptionError
from tasks.events import Heard, Retried, Tell, nobody
from tasks.models import AudioFile, Episode, Settings, Transcript
from tasks.openai_client import api_key, new_client
from tasks.transcribe.openai_chunks import CHUNK_S, Chunk, encode_chunk, plan_chunks
from tasks.transcribe.openai_request import Requester
from tasks.transcribe.openai_stitch import ChunkTranscript, stitch
from tasks.transcribe.windows import streamed_power, stretches

BACKEND = "openai"


def api_transcript(
    audio: AudioFile,
    settings: Settings,
    tell: Tell = nobody,
    chunk_s: float = CHUNK_S,
    plan: Callable[..., tuple[Chunk, ...]] = plan_chunks,
    encode: Callable[[np.ndarray], bytes] = encode_chunk,
) -> Transcript:
    """The episode's transcript from the OpenAI audio API (or the compatible server at `openai_base_url`), sent
    in chunks of at most `chunk_s`, `openai_requests` at once; `tell` hears Heard after each finished chunk and
    Retried of each request tried again. `plan` cuts the episode (as
    plan_chunks does) and `encode(samples)` makes each chunk a file."""
    key = api_key(settings.openai, TranscriptionError)
    if key is None and not settings.openai.openai_base_url:
        raise TranscriptionError(
            "no OpenAI API key: set OPENAI_API_KEY, or name a Prefect Secret block in openai_api_key_secret"
        )
    # Twice through the file, never all of it in memory: once for its loudness (where to cut), once for the chunks.
    power, sample_count = streamed_power(
        audio_codec.stream(audio.path, settings.transcribe.max_audio_duration_s, settings.transcribe.max_decode_s)
    )
    duration_s = sample_count / audio_codec.SAMPLE_RATE
    chunks = plan(power, duration_s, chunk_s=chunk_s)
    client = new_client(
        settings.openai, key, openai.Timeout(settings.network.http_timeout_s)
    )  # each request sets its own
    requester = Requester(client, settings, key, lambda message: tell(Retried(message)), encode)
    done: dict[int, ChunkTranscript] = {}

    def collect(finished: set[Future[ChunkTranscript]]) -> None:
        for future in finished:
            part = future.result()
            done[part.chunk.number] = part
            heard = sum(p.chunk.own_end_s - p.chunk.own_start_s for p in done.values())
            tell(Heard(duration_s if len(done) == len(chunks) else min(heard, duration_s), duration_s))

    pending: set[Future[ChunkTranscript]] = set()
    with client, ThreadPoolExecutor(settings.openai.openai_requests, thread_name_prefix="openai-transcribe") as pool:
        try:
            samples = stretches(
                audio_codec.stream(audio.path, max_decode_s=settings.transcribe.max_decode_s),
                ((c.start_s, c.end_s) for c in chunks),
            )
            for chunk, chunk_samples in zip(chunks, samples):
                # Each chunk in a copy of this context: Prefect's settings, client and run context reach its requests.
                pending.add(pool.submit(contextvars.copy_context().run, requester.transcribe, chunk_samples, chunk))
                if len(pending) >= settings.openai.openai_requests:  # no more chunks decoded than can be sent
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    collect(finished)
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                collect(finished)
        except BaseException:  # the first failure stops the chunks not yet sent, and the retries of the others
            requester.stopped.set()
            for future in pending:
                future.cancel()
            raise
    parts = [done[c.number] for c in chunks]
    languages = Counter(p.language for p in parts if p.language)
    return Transcript(
        episode_id=audio.episode_id,
        audio_sha256=audio.sha256,
        backend=BACKEND,
        model=settings.openai.openai_transcribe_model,
        language=settings.transcribe.language or (languages.most_common(1)[0][0] if languages else None),
        language_probability=None,
        audio_duration_s=round(duration_s, 3),
        estimated_timing=not all(p.timed for p in parts),
        # Word times, where a server sent them unasked, helped the stitching; the transcript has them if asked.
        segments=tuple(
            s if settings.transcribe.word_timestamps else s.model_copy(update={"words": ()}) for s in stitch(parts)
        ),
    )


class OpenAIBackend:
    """The OpenAI audio API behind the transcribe stage's one entry point."""

    def __init__(self, settings: Settings, at_once: int):
        """Nothing to load: the client is made per episode, from the settings of that call."""

    def transcribe(self, audio: AudioFile, episode: Episode, settings: Settings, tell: Tell) -> Transcript:
        return api_transcript(audio, settings, tell)
