"""The one audio decoder: the audio containers podcasts use, read by PyAV to 16 kHz mono float32 as a stream of
frames (an episode is never held whole), with no ffmpeg binary needed.

FFmpeg reads many more formats, and some of them open the files or URLs their bytes name: an HLS playlist, a concat
script, an SDP description. A stranger's enclosure could so make podflow read the worker's own files, or wait on a
live playlist for ever. So only DEMUXERS are opened, over the file protocol alone, and the time spent decoding one
file is bounded by `max_decode_s`."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import chain
from pathlib import Path

import av
import numpy as np

from tasks import stopping
from tasks.errors import AudioDecodeError, AudioTooLongError
from tasks.models import Record

# The file name extensions of audio an enclosure URL or a saved episode may carry.
AUDIO_EXTENSIONS = {".mp3", ".m4a", ".mp4", ".aac", ".ogg", ".oga", ".opus", ".wav", ".flac", ".webm"}

SAMPLE_RATE = 16_000
# Rates real audio has, with room below: 8 kHz (telephony) is the lowest any podcast codec uses, 768 kHz (16 x 48 kHz)
# the highest any converter records. Outside them a header lies: at 1 Hz each stored sample is a second of output.
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 4_000, 768_000
MAX_CHANNELS = 64  # seventh-order ambisonics; podcasts have one or two
# FFmpeg's names of the containers of AUDIO_EXTENSIONS: MP3, ADTS AAC, MP4/M4A, Ogg, WAV, FLAC, Matroska/WebM.
DEMUXERS = ("mp3", "aac", "mov", "mp4", "m4a", "3gp", "3g2", "mj2", "ogg", "wav", "flac", "matroska", "webm")
OPEN_OPTIONS = {"format_whitelist": ",".join(DEMUXERS), "protocol_whitelist": "file"}
EINVAL = 22  # what FFmpeg answers for a format outside the whitelist


class AudioProbe(Record):
    codec: str
    sample_rate: int
    channels: int
    bit_rate: int | None
    duration_s: float | None = None


def probe(path: Path) -> AudioProbe:
    """The audio stream's codec, rate and layout as the container declares them (nothing is decoded);
    AudioDecodeError for a rate or channel count no real audio has."""
    try:
        with opened(path) as container:
            context = audio_stream(container, path).codec_context
            return AudioProbe(
                codec=context.name,
                sample_rate=context.sample_rate,
                channels=context.channels,
                bit_rate=container.bit_rate or None,
                duration_s=declared_duration_s(container),
            )
    except av.FFmpegError as exc:
        raise AudioDecodeError(f"{path.name} is not readable audio: {exc.strerror or exc}") from exc


@contextmanager
def opened(path: Path) -> Iterator[av.container.InputContainer]:
    """The file opened for reading, if it is in one of DEMUXERS; AudioDecodeError otherwise."""
    try:
        container = av.open(str(path), container_options=OPEN_OPTIONS)
    except av.ArgumentError as exc:
        if exc.errno != EINVAL:
            raise
        raise AudioDecodeError(
            f"{path.name} is not in an audio format podflow decodes (MP3, AAC, MP4/M4A, Ogg, WAV, FLAC, "
            "Matroska/WebM); playlists, concat scripts and other formats that name further files are refused"
        ) from None
    with container:
        yield container


def timed(frames: Iterator[av.AudioFrame], path: Path, max_decode_s: float) -> Iterator[av.AudioFrame]:
    """The frames, AudioDecodeError once the time spent decoding them (not consuming them) passes `max_decode_s`."""
    spent_s = 0.0
    while True:
        stopping.check(path.name)
        started = time.monotonic()
        frame = next(frames, None)
        spent_s += time.monotonic() - started
        if spent_s > max_decode_s:
            raise AudioDecodeError(f"{path.name} took longer than the max_decode_s={max_decode_s:g} limit to decode")
        if frame is None:
            return
        yield frame


def audio_stream(container: av.container.InputContainer, path: Path) -> av.audio.stream.AudioStream:
    """The first audio stream, its declared rate and channel count checked."""
    stream = next((s for s in container.streams.audio), None)
    if stream is None:
        raise AudioDecodeError(f"{path.name} has no audio stream")
    check_layout(path, stream.codec_context.sample_rate, stream.codec_context.channels)
    return stream


def declared_duration_s(container: av.container.InputContainer) -> float | None:
    """The container's duration, None when it gives none or an impossible one (zero or negative)."""
    return container.duration / av.time_base if container.duration and container.duration > 0 else None


def check_layout(path: Path, sample_rate: int, channels: int) -> None:
    """AudioDecodeError naming the file and the value unless the rate and channel count are ones real audio has."""
    if not MIN_SAMPLE_RATE <= sample_rate <= MAX_SAMPLE_RATE:
        raise AudioDecodeError(
            f"{path.name} declares a sample rate of {sample_rate:,} Hz; audio is read at "
            f"{MIN_SAMPLE_RATE:,} to {MAX_SAMPLE_RATE:,} Hz"
        )
    if not 1 <= channels <= MAX_CHANNELS:
        raise AudioDecodeError(f"{path.name} declares {channels} channels; audio is read with 1 to {MAX_CHANNELS}")


def too_long(path: Path, max_duration_s: float) -> AudioTooLongError:
    return AudioTooLongError(f"{path.name} is longer than the {max_duration_s:,.0f}-second limit")


def stream(path: Path, max_duration_s: float = math.inf, max_decode_s: float = math.inf) -> Iterator[np.ndarray]:
    """The file as 16 kHz mono float32 samples in [-1, 1], a decoded frame's worth at a time; AudioTooLongError past
    `max_duration_s`, counted on the samples decoded, and AudioDecodeError past `max_decode_s` of decoding."""
    limit = math.floor(max_duration_s * SAMPLE_RATE) if math.isfinite(max_duration_s) else sys.maxsize
    produced = 0
    try:
        with opened(path) as container:
            stream = audio_stream(container, path)
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLE_RATE)
            frames = timed(checked_frames(container.decode(stream), path), path, max_decode_s)
            for frame in chain(frames, [None]):  # None: flush the resampler
                for out in resampler.resample(frame):
                    samples = out.to_ndarray().reshape(-1)
                    produced += samples.size
                    if produced > limit:
                        raise too_long(path, max_duration_s)
                    yield samples
    except av.FFmpegError as exc:
        raise AudioDecodeError(f"{path.name} cannot be decoded: {exc.strerror or exc}") from exc
    if produced == 0:
        raise AudioDecodeError(f"{path.name} holds no audio samples")


def declared_duration_s_of(path: Path) -> float | None:
    try:
        with opened(path) as container:
            return declared_duration_s(container)
    except av.FFmpegError as exc:
        raise AudioDecodeError(f"{path.name} cannot be decoded: {exc.strerror or exc}") from exc


def duration_s(path: Path, max_duration_s: float, max_decode_s: float = math.inf) -> float:
    """The audio's length: the container's when it gives one within the limit, else counted by decoding every frame
    and keeping none; AudioTooLongError past `max_duration_s`, AudioDecodeError past `max_decode_s` of decoding."""
    if (declared_s := probe(path).duration_s) is not None and declared_s <= max_duration_s:
        return declared_s
    seconds = 0.0
    try:
        with opened(path) as container:
            frames = checked_frames(container.decode(audio_stream(container, path)), path)
            for frame in timed(frames, path, max_decode_s):
                seconds += frame.samples / frame.sample_rate
                if seconds > max_duration_s:
                    raise too_long(path, max_duration_s)
    except av.FFmpegError as exc:
        raise AudioDecodeError(f"{path.name} cannot be decoded: {exc.strerror or exc}") from exc
    if seconds == 0:
        raise AudioDecodeError(f"{path.name} holds no audio samples")
    return seconds


def checked_frames(frames: Iterator[av.AudioFrame], path: Path) -> Iterator[av.AudioFrame]:
    """The frames, each checked as the header was: a stream may change its rate or layout mid-way."""
    for frame in frames:
        check_layout(path, frame.sample_rate, frame.layout.nb_channels)
        yield frame
