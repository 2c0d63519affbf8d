"""transcriber=openai: the OpenAI audio API, or any server that speaks it, for episodes of any length.

The API refuses uploads over 25 MB, which a half-hour MP3 already passes. The episode is decoded once (the one
decoder, tasks/audio.py), cut into chunks of at most ten minutes at its quietest moments, each chunk re-encoded as
mono 16 kHz Opus at 32 kbit/s (2.4 MB for ten minutes) with two seconds of overlap on either side, and the chunks
are sent in parallel, `openai_requests` at once. Their segments are moved to the chunk's offset and stitched, with
the words the overlap made both neighbours hear kept once: the two are joined at the longest run of words both
heard at the same time around the cut.
"""

from __future__ import annotations

import contextvars
import io
import json
import math
import re
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from difflib import SequenceMatcher
from typing import Any, NamedTuple

import av
import numpy as np
import openai

from tasks import audio as audio_codec
from tasks.errors import TranscriptionError
from tasks.models import AudioFile, Episode, Segment, Settings, Transcript, Word
from tasks.openai_client import RequestFailed, api_key, call_with_retries, masked, new_client
from tasks.transcribe.base import Progress

BACKEND = "openai"
MAX_UPLOAD_BYTES = 25_000_000  # the API's limit is 25 MB; 25 MiB would be the kinder reading, so not that one
# Ten minutes: well under the gpt-4o transcribe models' limit on duration (about 25 minutes), twelve chunks for a
# two-hour episode to keep `openai_requests` busy, and a failed request repeats ten minutes of audio, not an hour.
CHUNK_S = 600.0
SEARCH_FRACTION = 0.2  # a cut is looked for in the last fifth of a chunk: chunks run 8-10 minutes
OVERLAP_S = 2.0  # each side: a word cut in two at a cut where there was no pause is whole in one neighbour
FRAME_S = 0.02  # the loudness envelope's resolution
QUIET_WINDOW_S = 0.5  # a cut goes where half a second is quietest: a real pause, not a gap between syllables
# Opus in Ogg: speech stays clear at 32 kbit/s; it encodes ~370x real time here (MP3 ~250x) and, unlike MP3, its
# container says how many priming samples to drop, so the server's times start at the chunk's first sample.
CONTAINER, CODEC, FILE_NAME, MIME_TYPE = "ogg", "libopus", "chunk.ogg", "audio/ogg"
BIT_RATE = 32_000
# How far Whisper's times may be off: segments of two neighbours closer than this at a cut may hold the same words,
# and two copies of a word heard this far apart were said twice.
TOLERANCE_S = 0.5
MATCHED_WORDS = 24  # at most, on each side of a cut: more than 2 x OVERLAP_S of fast speech holds
TEXT_ONLY_PREFIXES = ("gpt-",)  # gpt-4o-transcribe & co. answer `json` (text only); whisper-1 and servers: segments

# Whisper's languages: verbose_json names them ("english"); the other backends record codes ("en").
LANGUAGE_CODES = {name.replace("_", " "): code for code, name in (pair.split(":") for pair in (
    "en:english zh:chinese de:german es:spanish ru:russian ko:korean fr:french ja:japanese pt:portuguese tr:turkish "
    "pl:polish ca:catalan nl:dutch ar:arabic sv:swedish it:italian id:indonesian hi:hindi fi:finnish vi:vietnamese "
    "he:hebrew uk:ukrainian el:greek ms:malay cs:czech ro:romanian da:danish hu:hungarian ta:tamil no:norwegian "
    "th:thai ur:urdu hr:croatian bg:bulgarian lt:lithuanian la:latin mi:maori ml:malayalam cy:welsh sk:slovak "
    "te:telugu fa:persian lv:latvian bn:bengali sr:serbian az:azerbaijani sl:slovenian kn:kannada et:estonian "
    "mk:macedonian br:breton eu:basque is:icelandic hy:armenian ne:nepali mn:mongolian bs:bosnian kk:kazakh "
    "sq:albanian sw:swahili gl:galician mr:marathi pa:punjabi si:sinhala km:khmer sn:shona yo:yoruba so:somali "
    "af:afrikaans oc:occitan ka:georgian be:belarusian tg:tajik sd:sindhi gu:gujarati am:amharic yi:yiddish lo:lao "
    "uz:uzbek fo:faroese ht:haitian_creole ps:pashto tk:turkmen nn:nynorsk mt:maltese sa:sanskrit "
    "lb:luxembourgish my:myanmar bo:tibetan tl:tagalog mg:malagasy as:assamese tt:tatar haw:hawaiian ln:lingala "
    "ha:hausa ba:bashkir jw:javanese su:sundanese yue:cantonese"
).split())}


class Chunk(NamedTuple):
    """A stretch of the episode sent as one request: the audio from `start_s` to `end_s`, of which the transcript
    keeps what was said from `own_start_s` to `own_end_s` (the rest is overlap its neighbours own)."""

    index: int
    start_s: float
    end_s: float
    own_start_s: float
    own_end_s: float


class ChunkTranscript(NamedTuple):
    """What the API heard in one chunk, in the episode's time; `timed` is False where the model gave only text,
    placed here as one segment over the chunk's own stretch."""

    chunk: Chunk
    segments: tuple[Segment, ...]
    language: str | None
    timed: bool


# Where to cut ---------------------------------------------------------------------------------------------------


def frame_power(samples: np.ndarray, frame_s: float = FRAME_S) -> np.ndarray:
    """Mean power of each `frame_s` of 16 kHz samples (the last partial frame dropped), without a squared copy of
    the whole episode."""
    frame = max(1, round(frame_s * audio_codec.SAMPLE_RATE))
    frames = samples[: samples.size // frame * frame].reshape(-1, frame)
    return np.einsum("ij,ij->i", frames, frames).astype(np.float64) / frame


def quietest_cut(power: np.ndarray, frame_s: float, lo_s: float, hi_s: float) -> float:
    """The moment between `lo_s` and `hi_s` in the middle of the last of its quietest stretches."""
    window = max(1, round(QUIET_WINDOW_S / frame_s))
    # The windows centred between lo_s and hi_s, by their first frame.
    first_start = max(0, round(lo_s / frame_s - window / 2))
    last_start = min(power.size - window, round(hi_s / frame_s - window / 2))
    if last_start < first_start:
        return hi_s
    sums = np.cumsum(np.concatenate(([0.0], power[first_start : last_start + window])))
    level = (sums[window:] - sums[:-window]) / window  # level[k]: the window starting at frame first_start + k
    quiet = level <= level.min() * 1.5 + 1e-10  # 1e-10: -100 dBFS, digital silence
    last = int(np.flatnonzero(quiet)[-1])
    first = last
    while first > 0 and quiet[first - 1]:
        first -= 1
    middle = first_start + (first + last) / 2 + window / 2
    return float(np.clip(middle * frame_s, lo_s, hi_s))


def plan_chunks(
    power: np.ndarray,
    duration_s: float,
    frame_s: float = FRAME_S,
    chunk_s: float = CHUNK_S,
    overlap_s: float = OVERLAP_S,
) -> tuple[Chunk, ...]:
    """Cut `duration_s` of audio, whose loudness `power` gives per `frame_s`, into chunks of at most `chunk_s`
    plus overlap: each cut at the quietest moment of the chunk's last fifth, each chunk's audio reaching
    `overlap_s` past its cuts."""
    cuts = [0.0]
    while duration_s - cuts[-1] > chunk_s:
        end = cuts[-1] + chunk_s
        cuts.append(quietest_cut(power, frame_s, end - chunk_s * SEARCH_FRACTION, end))
    cuts.append(duration_s)
    return tuple(
        Chunk(i, max(0.0, own_start - overlap_s), min(duration_s, own_end + overlap_s), own_start, own_end)
        for i, (own_start, own_end) in enumerate(zip(cuts, cuts[1:]))
    )


def encode_chunk(samples: np.ndarray, bit_rate: int = BIT_RATE) -> bytes:
    """16 kHz mono float samples as an Ogg Opus file."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=CONTAINER) as container:
        # Constrained VBR: free VBR spends up to 1.5 x the rate on tonal sound (music), which the size plan cannot take.
        stream = container.add_stream(CODEC, rate=audio_codec.SAMPLE_RATE, options={"vbr": "constrained"})
        stream.bit_rate = bit_rate
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = audio_codec.SAMPLE_RATE
        for packet in (*stream.encode(frame), *stream.encode(None)):
            container.mux(packet)
    return buffer.getvalue()


# Stitching ------------------------------------------------------------------------------------------------------


def _normal(token: str) -> str:
    return re.sub(r"[^\w']", "", token.lower())


def _tokens(segment: Segment) -> list[str]:
    return [word.text for word in segment.words] if segment.words else segment.text.split()


def _part(segment: Segment, keep: slice) -> Segment | None:
    """The segment with only the words in `keep`, its times narrowed to theirs where it has word times."""
    if not segment.words:
        tokens = segment.text.split()[keep]
        return segment.model_copy(update={"text": " ".join(tokens)}) if tokens else None
    words = segment.words[keep]
    if not words:
        return None
    start = max(segment.start, words[0].start) if keep.start else segment.start
    end = min(segment.end, words[-1].end) if keep.stop is not None else segment.end
    return segment.model_copy(update={"words": words, "text": " ".join(w.text for w in words), "start": min(start, end),
                                      "end": end})


class _Token(NamedTuple):
    segment: int
    index: int
    word: str  # lower case, no punctuation
    start: float | None  # when it was said, as near as the reply tells: None for a text-only reply
    end: float | None


def _near_the_cut(segments: Sequence[Segment], timed: bool, lo_s: float, hi_s: float, last: bool) -> list[_Token]:
    """The words of `segments` that can have been said between `lo_s` and `hi_s`, by their word times, or spread
    evenly over their segment; from a text-only reply, as many of its last (or first) words as its pace of speech
    fits in that time."""
    tokens: list[_Token] = []
    for i, segment in enumerate(segments):
        if segment.words:
            tokens += [_Token(i, k, _normal(w.text), w.start, w.end) for k, w in enumerate(segment.words)]
            continue
        texts = segment.text.split()
        if timed:
            step = (segment.end - segment.start) / max(1, len(texts))
            tokens += [_Token(i, k, _normal(text), segment.start + k * step, segment.start + (k + 1) * step)
                       for k, text in enumerate(texts)]
            continue
        fits = math.ceil(len(texts) / max(1.0, segment.end - segment.start) * (hi_s - lo_s)) + 2
        picked = range(max(0, len(texts) - fits), len(texts)) if last else range(min(fits, len(texts)))
        tokens += [_Token(i, k, _normal(texts[k]), None, None) for k in picked]
    near = [t for t in tokens if t.start is None or (t.end >= lo_s and t.start <= hi_s)]  # type: ignore[operator]
    return near[-MATCHED_WORDS:] if last else near[:MATCHED_WORDS]


def _heard_apart(ours: list[_Token], theirs: list[_Token]) -> bool:
    """Whether two runs of words were heard more than TOLERANCE_S apart (never, where a reply gave no times)."""
    if None in (ours[0].start, ours[-1].end, theirs[0].start, theirs[-1].end):
        return False
    return ours[-1].end + TOLERANCE_S < theirs[0].start or theirs[-1].end + TOLERANCE_S < ours[0].start  # type: ignore


def _splice(before: list[Segment], after: list[Segment], previous: ChunkTranscript, current: ChunkTranscript) -> None:
    """Keep once what both sides of a cut heard: the longest run of words that the previous chunk's segments as
    stitched (`before`; never an earlier chunk's) and the next chunk's segments (`after`) both hold in the overlap,
    heard at the same time where the replies give times, is where the two are joined; what follows the run in
    `before` (the cut clipped it) and what precedes it in `after` are dropped."""
    lo_s, hi_s = current.chunk.start_s - TOLERANCE_S, previous.chunk.end_s + TOLERANCE_S
    tail = _near_the_cut(before, previous.timed, lo_s, hi_s, last=True)
    head = _near_the_cut(after, current.timed, lo_s, hi_s, last=False)
    match = SequenceMatcher(None, [t.word for t in tail], [t.word for t in head], autojunk=False).find_longest_match()
    # One word alone may be chance ("the"), unless it both ends one side and begins the other.
    if match.size < 2 and not (match.size == 1 and match.a == len(tail) - 1 and match.b == 0):
        return
    ours, theirs = tail[match.a : match.a + match.size], head[match.b : match.b + match.size]
    if _heard_apart(ours, theirs):
        return  # the same words, said twice
    i, k = ours[-1].segment, ours[-1].index
    del before[i + 1 :]
    if (kept := _part(before[i], slice(None, k + 1))) is not None:
        before[i] = kept
    i, k = theirs[-1].segment, theirs[-1].index
    del after[:i]
    if (rest := _part(after[0], slice(k + 1, None))) is not None:
        after[0] = rest
    else:
        del after[0]


def _meet(last: Segment, segment: Segment) -> tuple[Segment, Segment]:
    """Two neighbours that overlap in time, made to meet: one ends where the next starts, which never starts
    before `last` does, and neither ends before it starts."""
    if segment.end >= last.end:
        return last, segment.model_copy(update={"start": last.end})
    cut = max(last.start, segment.start)
    return last.model_copy(update={"end": cut}), segment.model_copy(update={"start": cut, "end": max(cut, segment.end)})


def stitch(chunks: Sequence[ChunkTranscript]) -> tuple[Segment, ...]:
    """One transcript from the chunks' in order: each chunk's segments that reach into its own stretch, and where
    segments of two neighbours meet across the cut, what both heard in the overlap once. Starts never go back
    and no segment ends before it starts."""
    stitched: list[Segment] = []
    previous: ChunkTranscript | None = None
    since = 0  # where the previous chunk's segments begin in `stitched`: a cut is spliced with those alone
    for part in chunks:
        own = part.chunk
        segments = [s for s in part.segments if not part.timed or (s.end > own.own_start_s and s.start < own.own_end_s)]
        if previous is not None and len(stitched) > since and segments and (
            not part.timed or not previous.timed or segments[0].start < stitched[-1].end + TOLERANCE_S
        ):
            before = stitched[since:]
            _splice(before, segments, previous, part)
            stitched[since:] = before
        since = len(stitched)
        for segment in segments:
            if stitched and segment.start < stitched[-1].end:  # overlapping neighbours: one ends where one starts
                stitched[-1], segment = _meet(stitched[-1], segment)
            stitched.append(segment)
        previous = part
    return tuple(stitched)


# One request ----------------------------------------------------------------------------------------------------


class _Requester:
    """Sends chunks to the API with bounded retries, each try taking a slot of the shared rate limit if any."""

    def __init__(self, client: openai.OpenAI, settings: Settings, key: str | None, on_retry: Callable[[str], None]):
        self.client, self.settings, self.key, self.on_retry = client, settings, key, on_retry
        self.where = masked(f"the OpenAI API at {client.base_url}".rstrip("/"), key)  # credentials in it masked
        self.model = settings.openai_transcribe_model
        self.timed = not self.model.startswith(TEXT_ONLY_PREFIXES)
        self.stopped = threading.Event()  # set when a chunk has failed: the others send nothing more

    def params(self) -> dict[str, Any]:
        params: dict[str, Any] = {"model": self.model, "response_format": "verbose_json" if self.timed else "json"}
        if self.timed:
            params["timestamp_granularities"] = ["segment", "word"] if self.settings.word_timestamps else ["segment"]
        if self.settings.language:
            params["language"] = self.settings.language
        return params

    def transcribe(self, samples: np.ndarray, chunk: Chunk) -> ChunkTranscript:
        first = round(chunk.start_s * audio_codec.SAMPLE_RATE)
        data = encode_chunk(samples[first : round(chunk.end_s * audio_codec.SAMPLE_RATE)])
        if len(data) > MAX_UPLOAD_BYTES:  # cannot happen at CHUNK_S and BIT_RATE; said plainly if it ever does
            raise TranscriptionError(f"chunk {chunk.index + 1} encoded to {len(data):,} bytes, over the API's limit")
        payload = self._send(data, chunk)
        return parse_reply(payload, chunk, first / audio_codec.SAMPLE_RATE, self.timed, f"{self.where} (chunk "
                           f"{chunk.index + 1})")

    def _send(self, data: bytes, chunk: Chunk) -> dict[str, Any]:
        # A server slower than real time is taken for stuck: http_timeout_s per minute of audio, at least once.
        read_s = max(1.0, (chunk.end_s - chunk.start_s) / 60) * self.settings.http_timeout_s
        timeout = openai.Timeout(read_s, connect=self.settings.http_timeout_s)

        def send() -> dict[str, Any]:
            response = self.client.audio.transcriptions.with_raw_response.create(
                file=(FILE_NAME, data, MIME_TYPE), timeout=timeout, **self.params()
            )
            return self._json(response.http_response.content, chunk)

        try:
            return call_with_retries(send, self.settings, TranscriptionError, self.stopped, key=self.key,
                                     timeout_s=read_s, on_retry=lambda message: self.on_retry(
                                         f"{self.where}, chunk {chunk.index + 1}: {message}"))
        except RequestFailed as exc:
            if exc.refused:
                hint = f"; {exc.reason}" if exc.key_refused or exc.out_of_quota else ""
                raise TranscriptionError(f"{self.where} refused chunk {chunk.index + 1}: {exc.detail}{hint}") from None
            raise TranscriptionError(
                f"{self.where} failed on chunk {chunk.index + 1} {exc.attempts} times; last: {exc.detail}"
            ) from None

    def _json(self, content: bytes, chunk: Chunk) -> dict[str, Any]:
        try:
            payload = json.loads(content)
        except ValueError:  # told, not quoted: the answer is a stranger's bytes
            raise TranscriptionError(
                f"{self.where} answered chunk {chunk.index + 1} with malformed JSON ({len(content):,} bytes)"
            ) from None
        if not isinstance(payload, dict) or not isinstance(payload.get("text"), str):
            raise TranscriptionError(f"{self.where} answered chunk {chunk.index + 1} without a transcript text")
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
        return Word(start=at(raw["start"]), end=at(raw["end"]), text=str(raw["word"]).strip(),
                    probability=raw.get("probability"))

    try:
        segments = [Segment(start=at(s["start"]), end=max(at(s["start"]), at(s["end"])),
                            text=" ".join(str(s["text"]).split()),
                            words=tuple(word(w) for w in s.get("words") or ()))
                    for s in raw_segments]
        loose = [word(w) for w in payload.get("words") or ()]
    except (KeyError, TypeError, ValueError, AttributeError) as exc:  # their messages may quote the answer
        missing = f"no {exc.args[0]!r} in one" if isinstance(exc, KeyError) else type(exc).__name__
        raise TranscriptionError(f"{where} answered with segments of an unexpected shape ({missing})") from None
    if loose and not any(s.words for s in segments):
        placed: list[list[Word]] = [[] for _ in segments]
        for w in loose:
            middle = (w.start + w.end) / 2
            placed[min(range(len(segments)), key=lambda i: max(segments[i].start - middle, middle - segments[i].end,
                                                                 0.0))].append(w)
        segments = [s.model_copy(update={"words": tuple(ws)}) for s, ws in zip(segments, placed)]
    segments.sort(key=lambda s: s.start)  # a server's segments are not always in order
    return ChunkTranscript(chunk, tuple(s for s in segments if s.text or s.words), language, timed=timed)


# The backend ----------------------------------------------------------------------------------------------------


def api_transcript(
    audio: AudioFile,
    settings: Settings,
    on_segment: Callable[[float, float], None],
    chunk_s: float = CHUNK_S,
    on_retry: Callable[[str], None] = lambda message: None,
) -> Transcript:
    """The episode's transcript from the OpenAI audio API (or the compatible server at `openai_base_url`), sent
    in chunks, `openai_requests` at once; `on_segment(seconds_done, seconds_in_total)` follows each finished
    chunk, `on_retry(message)` hears of each request tried again."""
    key = api_key(settings, TranscriptionError)
    if key is None and not settings.openai_base_url:
        raise TranscriptionError(
            "no OpenAI API key: set OPENAI_API_KEY, or name a Prefect Secret block in openai_api_key_secret"
        )
    samples = audio_codec.decode(audio.path, settings.max_audio_duration_s)
    duration_s = samples.size / audio_codec.SAMPLE_RATE
    chunks = plan_chunks(frame_power(samples), duration_s, chunk_s=chunk_s)
    client = new_client(settings, key, openai.Timeout(settings.http_timeout_s))  # each request sets its own
    requester = _Requester(client, settings, key, on_retry)
    done: dict[int, ChunkTranscript] = {}
    with client, ThreadPoolExecutor(settings.openai_requests, thread_name_prefix="openai-transcribe") as pool:
        # Each chunk in a copy of this context: Prefect's settings, client and run context reach its requests.
        pending: set[Future[ChunkTranscript]] = {
            pool.submit(contextvars.copy_context().run, requester.transcribe, samples, chunk) for chunk in chunks
        }
        try:
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    part = future.result()
                    done[part.chunk.index] = part
                    heard = sum(p.chunk.own_end_s - p.chunk.own_start_s for p in done.values())
                    on_segment(duration_s if len(done) == len(chunks) else min(heard, duration_s), duration_s)
        except BaseException:  # the first failure stops the chunks not yet sent, and the retries of the others
            requester.stopped.set()
            for future in pending:
                future.cancel()
            raise
    parts = [done[c.index] for c in chunks]
    languages = Counter(p.language for p in parts if p.language)
    return Transcript(
        episode_id=audio.episode_id,
        audio_sha256=audio.sha256,
        backend=BACKEND,
        model=settings.openai_transcribe_model,
        language=settings.language or (languages.most_common(1)[0][0] if languages else None),
        language_probability=None,
        audio_duration_s=round(duration_s, 3),
        estimated_timing=not all(p.timed for p in parts),
        # Word times, where a server sent them unasked, helped the stitching; the transcript has them if asked.
        segments=tuple(s if settings.word_timestamps else s.model_copy(update={"words": ()}) for s in stitch(parts)),
    )


class OpenAIBackend:
    """The OpenAI audio API behind the transcribe stage's one entry point."""

    def __init__(self, settings: Settings):
        """Nothing to load: the client is made per episode, from the settings of that call."""

    def transcribe(self, audio: AudioFile, episode: Episode, settings: Settings, progress: Progress) -> Transcript:
        return api_transcript(audio, settings, progress.on_segment, on_retry=progress.on_retry)
