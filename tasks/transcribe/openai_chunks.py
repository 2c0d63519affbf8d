"""transcriber=openai, where to cut: an episode cut into chunks the API takes, each at the quietest moment near
its end, each encoded as mono 16 kHz Opus at 32 kbit/s (2.4 MB for ten minutes; the API refuses uploads over
25 MB, which a half-hour MP3 already passes)."""

from __future__ import annotations

import io
from typing import NamedTuple, cast

import av
import numpy as np

from tasks import audio as audio_codec
from tasks.transcribe.windows import FRAME_S, SEARCH_FRACTION, quietest_cut

# Ten minutes: well under the gpt-4o transcribe models' limit on duration (about 25 minutes), twelve chunks for a
# two-hour episode to keep `openai_requests` busy, and a failed request repeats ten minutes of audio, not an hour.
CHUNK_S = 600.0
OVERLAP_S = 2.0  # each side: a word cut in two at a cut where there was no pause is whole in one neighbour
# Opus in Ogg: speech stays clear at 32 kbit/s; it encodes ~370x real time here (MP3 ~250x) and, unlike MP3, its
# container says how many priming samples to drop, so the server's times start at the chunk's first sample.
CONTAINER, CODEC, FILE_NAME, MIME_TYPE = "ogg", "libopus", "chunk.ogg", "audio/ogg"
BIT_RATE = 32_000


class Chunk(NamedTuple):
    """A stretch of the episode sent as one request: the audio from `start_s` to `end_s`, of which the transcript
    keeps what was said from `own_start_s` to `own_end_s` (the rest is overlap its neighbours own)."""

    number: int  # from 0, in time order
    start_s: float
    end_s: float
    own_start_s: float
    own_end_s: float


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
        stream = cast(
            av.audio.stream.AudioStream,
            container.add_stream(CODEC, rate=audio_codec.SAMPLE_RATE, options={"vbr": "constrained"}),
        )
        stream.bit_rate = bit_rate
        stream.layout = "mono"
        frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="flt", layout="mono")
        frame.sample_rate = audio_codec.SAMPLE_RATE
        for packet in (*stream.encode(frame), *stream.encode(None)):
            container.mux(packet)
    return buffer.getvalue()
