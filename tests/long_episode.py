"""Episodes of any length from a committed sentence bank, and a check of a transcript against the script they were
built from: which sentences were lost and which were heard twice, and when. Two banks: ESPEAK (tests/fixtures/
sentences.*: 40 sentences in four espeak-ng voices) and REAL (tests/fixtures/real-speech.*: the sentences of two
public-domain recordings of human speech).

An episode is the bank's sentences in a seeded random order (never one twice in a row), with the pauses of speech
between them (short within a paragraph, longer between) and a faint noise floor, as a recording has: a cut must
find its pause, not digital silence. It is written as 48 kbit/s MP3 clip by clip, so building three hours takes
memory for one clip, not for the episode.
"""

from __future__ import annotations

import difflib
import json
import random
import re
from collections.abc import Iterable
from functools import cache
from pathlib import Path
from typing import NamedTuple

import av
import numpy as np

from tasks import audio as audio_codec
from tasks.files import sha256_of
from tasks.models import AudioFile, Segment
from tests.speech import decoded

FIXTURES_DIR = Path(__file__).parent / "fixtures"
NOISE_FLOOR = 10 ** (-55 / 20)  # -55 dBFS of white noise under everything
# A heard piece is a bank sentence when their letters agree this well (difflib ratio over the words, spaced): tiny.en's
# misheard sentences scored 0.78 or more, two different sentences of the bank at most 0.55.
MATCHED = 0.65


class Spoken(NamedTuple):
    sentence: int  # index into its bank's sentences
    start_s: float
    end_s: float


class Bank(NamedTuple):
    """Sentences, each a clip of one audio file: `spans` (in 16 kHz samples) say where."""

    name: str
    sentences: tuple[str, ...]
    audio: Path
    spans: tuple[tuple[int, int], ...]

    def clips(self) -> tuple[np.ndarray, ...]:
        return _clips(self.audio, self.spans)


@cache
def _clips(audio: Path, spans: tuple[tuple[int, int], ...]) -> tuple[np.ndarray, ...]:
    samples = decoded(audio)
    return tuple(samples[start:end] for start, end in spans)


def _read_spans(path: Path) -> tuple[tuple[int, int], ...]:
    return tuple((start, end) for start, end in json.loads(path.read_text(encoding="utf-8")))


ESPEAK = Bank(
    "espeak-ng",
    tuple(json.loads((FIXTURES_DIR / "sentences.json").read_text(encoding="utf-8"))["sentences"]),
    FIXTURES_DIR / "sentences.ogg",
    _read_spans(FIXTURES_DIR / "sentences-spans.json"),
)
REAL = Bank(
    "real speech",
    tuple(sentence["text"] for sentence in json.loads((FIXTURES_DIR / "real-speech.json").read_text())["sentences"]),
    FIXTURES_DIR / "real-speech.ogg",
    _read_spans(FIXTURES_DIR / "real-speech-spans.json"),
)
BANKS = {"espeak": ESPEAK, "real": REAL}


def write_episode(path: Path, duration_s: float, seed: int = 0, bank: Bank = ESPEAK) -> list[Spoken]:
    """An MP3 of about `duration_s` of the bank's sentences at `path`; what is said in it, in order."""
    rng = random.Random(seed)
    noise = np.random.default_rng(seed)
    clips = bank.clips()
    script: list[Spoken] = []
    at, previous = 0, -1
    rate = audio_codec.SAMPLE_RATE
    with av.open(str(path), "w", format="mp3") as container:
        stream = container.add_stream("libmp3lame", rate=rate, layout="mono")
        stream.bit_rate = 48_000

        def write(samples: np.ndarray) -> None:
            samples = samples + noise.normal(0, NOISE_FLOOR, samples.size).astype(np.float32)
            frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
            frame.sample_rate = rate
            for packet in stream.encode(frame):
                container.mux(packet)

        while at < duration_s * rate:
            sentence = rng.choice([n for n in range(len(clips)) if n != previous])
            paragraph_end = rng.random() < 0.2
            pause_s = rng.uniform(1.0, 2.0) if paragraph_end else rng.uniform(0.25, 0.6)
            write(clips[sentence])
            script.append(Spoken(sentence, at / rate, (at + clips[sentence].size) / rate))
            pause = np.zeros(round(pause_s * rate), dtype=np.float32)
            write(pause)
            at += clips[sentence].size + pause.size
            previous = sentence
        for packet in stream.encode(None):
            container.mux(packet)
    return script


def audio_of(path: Path) -> AudioFile:
    """The AudioFile record of an episode written at `path`."""
    return AudioFile(
        episode_id="long",
        path=path,
        source_url="http://127.0.0.1/long.mp3",
        bytes=path.stat().st_size,
        sha256=sha256_of(path),
    )


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9']+", text.lower())


def spelled(text: str) -> str:
    return " ".join(words(text))


@cache
def _spelled_bank(sentences: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(spelled(sentence) for sentence in sentences)


def _best_match(text: str, bank: Bank) -> tuple[int, float]:
    heard = spelled(text)
    scores = [
        difflib.SequenceMatcher(None, heard, said, autojunk=False).ratio() for said in _spelled_bank(bank.sentences)
    ]
    best = int(np.argmax(scores))
    return best, scores[best]


def heard_sentences(segments: Iterable[Segment], bank: Bank = ESPEAK) -> list[Spoken]:
    """The bank sentences a transcript says, in order, each with the times of the segment(s) it was heard in.
    Pieces split at punctuation that make one sentence together (Whisper sometimes ends a sentence early) are joined,
    and two sentences heard as one with a comma between them are split; pieces that match no sentence are left
    out."""
    pieces = [
        (part, segment.start, segment.end)
        for segment in segments
        for piece in re.split(r"(?<=[.?!])\s+|(?<=[.?!][\"')”’])\s+", segment.text)
        if words(piece)
        for part in split_at_comma(piece, bank)
    ]
    heard: list[tuple[str, float, float, int, float]] = []
    for text, start, end in pieces:
        sentence, score = _best_match(text, bank)
        if heard:
            joined = f"{heard[-1][0]} {text}"
            joined_sentence, joined_score = _best_match(joined, bank)
            if joined_score > max(score, heard[-1][4]):
                heard[-1] = (joined, heard[-1][1], end, joined_sentence, joined_score)
                continue
        heard.append((text, start, end, sentence, score))
    return [Spoken(sentence, start, end) for _, start, end, sentence, score in heard if score >= MATCHED]


def split_at_comma(piece: str, bank: Bank) -> list[str]:
    """The piece, or its two halves at a comma where each is a sentence of the bank and they match better apart."""
    whole = _best_match(piece, bank)[1]
    best: tuple[float, list[str]] = (whole, [piece])
    for comma in (m.start() for m in re.finditer(",", piece)):
        halves = [piece[: comma + 1], piece[comma + 1 :]]
        scores = [_best_match(half, bank)[1] for half in halves if words(half)]
        if len(scores) == 2 and min(scores) >= MATCHED and sum(scores) / 2 > best[0]:
            best = (sum(scores) / 2, halves)
    return best[1]


class Comparison(NamedTuple):
    missing: list[Spoken]  # said in the script, not heard
    repeated: list[Spoken]  # heard more often than said (with the heard times)


def compare(script: list[Spoken], heard: list[Spoken]) -> Comparison:
    """What the transcript lost and what it repeated, by aligning the heard sentences with the script's."""
    matcher = difflib.SequenceMatcher(None, [s.sentence for s in script], [s.sentence for s in heard], autojunk=False)
    missing: list[Spoken] = []
    repeated: list[Spoken] = []
    for operation, i1, i2, j1, j2 in matcher.get_opcodes():
        if operation in ("delete", "replace"):
            missing += script[i1:i2]
        if operation in ("insert", "replace"):
            repeated += heard[j1:j2]
    return Comparison(missing, repeated)


def near(spoken: Iterable[Spoken], moments_s: Iterable[float], within_s: float) -> list[Spoken]:
    """Those of `spoken` that lie within `within_s` of any of the moments."""
    moments = list(moments_s)
    return [s for s in spoken if any(s.start_s - within_s <= m <= s.end_s + within_s for m in moments)]
