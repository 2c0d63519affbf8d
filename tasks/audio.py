"""The one audio decoder: any container PyAV reads, to 16 kHz mono float32, with no ffmpeg binary needed."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from tasks.errors import AudioDecodeError, AudioTooLongError
from tasks.models import Record

# The file name extensions of audio an enclosure URL or a saved episode may carry.
AUDIO_EXTENSIONS = {".mp3", ".m4a", ".mp4", ".aac", ".ogg", ".oga", ".opus", ".wav", ".flac", ".webm"}

SAMPLE_RATE = 16_000


class AudioProbe(Record):
    codec: str
    sample_rate: int
    channels: int
    bit_rate: int | None
    duration_s: float | None = None


def probe(path: Path) -> AudioProbe:
    """The audio stream's codec, rate and layout as the container declares them (nothing is decoded)."""
    try:
        with av.open(str(path)) as container:
            stream = next((s for s in container.streams if s.type == "audio"), None)
            if stream is None:
                raise AudioDecodeError(f"{path.name} has no audio stream")
            duration = float(container.duration) / av.time_base if container.duration else None
            return AudioProbe(
                codec=stream.codec_context.name,
                sample_rate=stream.codec_context.sample_rate,
                channels=stream.codec_context.channels,
                bit_rate=container.bit_rate or None,
                duration_s=duration,
            )
    except av.FFmpegError as exc:
        raise AudioDecodeError(f"{path.name} is not readable audio: {exc.strerror or exc}") from exc


def decode(path: Path, max_duration_s: float = float("inf")) -> np.ndarray:
    """The whole file as 16 kHz mono float32 samples in [-1, 1]; AudioTooLongError past `max_duration_s`, checked
    while decoding, so a file whose header understates its length cannot fill the memory either."""
    chunks: list[np.ndarray] = []
    decoded = 0
    try:
        with av.open(str(path)) as container:
            stream = next((s for s in container.streams if s.type == "audio"), None)
            if stream is None:
                raise AudioDecodeError(f"{path.name} has no audio stream")
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            for frame in container.decode(stream):
                chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(frame))
                decoded += frame.samples / (frame.sample_rate or SAMPLE_RATE)
                if decoded > max_duration_s:
                    raise AudioTooLongError(f"{path.name} is longer than the {max_duration_s:,.0f}-second limit")
            chunks.extend(out.to_ndarray().reshape(-1) for out in resampler.resample(None))
    except av.FFmpegError as exc:
        raise AudioDecodeError(f"{path.name} cannot be decoded: {exc.strerror or exc}") from exc
    samples = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.float32)
    if samples.size == 0:
        raise AudioDecodeError(f"{path.name} holds no audio samples")
    return samples.astype(np.float32, copy=False)
