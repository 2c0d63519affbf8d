"""The one audio decoder against hostile files built here with PyAV or by hand: no duration in the container, a
1 Hz sample rate, absurd layouts. Memory is asserted with tracemalloc (numpy reports its arrays to it), not timed."""

from __future__ import annotations

import struct
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pytest

from tasks import audio as audio_codec
from tasks.errors import AudioDecodeError, AudioTooLongError
from tests.audio_files import live_flac, silent_audio

T = TypeVar("T")
SLACK = 2**20  # one frame in flight and the interpreter's own allocations


def wav_by_hand(path: Path, rate: int, channels: int, frames: int) -> Path:
    """A 16-bit PCM WAV whose 44-byte header says what PyAV would not write."""
    block = 2 * channels
    data = bytes(block * frames)
    header = (
        b"RIFF"
        + struct.pack("<I", 36 + len(data))
        + b"WAVE"
        + b"fmt "
        + struct.pack("<IHHIIHH", 16, 1, channels, rate, rate * block, block, 16)
        + b"data"
        + struct.pack("<I", len(data))
    )
    path.write_bytes(header + data)
    return path


def traced_peak(work: Callable[[], T]) -> tuple[T, int]:
    """What `work` returns, and the most memory it held at once."""
    tracemalloc.start()
    try:
        result = work()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def streamed_count(path: Path, max_duration_s: float = float("inf")) -> int:
    """How many samples the stream gives, none of them kept."""
    return sum(piece.size for piece in audio_codec.stream(path, max_duration_s))


@pytest.mark.parametrize("options", [{}, {"live": "1"}], ids=["duration-in-header", "no-duration"])
def test_the_stream_holds_a_frame_not_the_audio(tmp_path: Path, options: dict[str, str]) -> None:
    """Five minutes are 19 MB of samples; the stream holds one decoded frame at a time, header or no header."""
    path = silent_audio(tmp_path / "episode.mka", 300, options=options)
    count, peak = traced_peak(lambda: streamed_count(path))
    assert count == pytest.approx(300 * audio_codec.SAMPLE_RATE, abs=audio_codec.SAMPLE_RATE // 10)
    assert next(audio_codec.stream(path)).dtype == np.float32
    assert peak < SLACK, peak


def test_the_stream_stops_at_the_limit_counted_on_the_samples_produced(tmp_path: Path) -> None:
    """Ten minutes with no duration in the container, a one-minute limit: refused after a minute of samples."""
    path = live_flac(tmp_path / "live.mka", 600)
    given = 0
    with pytest.raises(AudioTooLongError, match="live.mka is longer than the 60-second limit"):
        for piece in audio_codec.stream(path, max_duration_s=60):
            given += piece.size
    assert given <= 60 * audio_codec.SAMPLE_RATE


def forged_duration(path: Path, duration_ms: float) -> Path:
    """One second of FLAC in Matroska whose Segment Info claims `duration_ms` (the Duration element, an 8-byte
    float, rewritten in place)."""
    data = silent_audio(path, 1).read_bytes()
    at = data.index(b"\x44\x89\x88")  # Duration's ID and its size, 8
    path.write_bytes(data[: at + 3] + struct.pack(">d", duration_ms) + data[at + 11 :])
    return path


@pytest.mark.parametrize(("claim_ms", "declared_s"), [(3.6e15, 3.6e12), (-1e6, None)], ids=["ages", "negative"])
def test_a_header_claiming_ages_changes_nothing_but_the_probe(
    tmp_path: Path, claim_ms: float, declared_s: float | None
) -> None:
    path = forged_duration(tmp_path / "forged.mka", claim_ms)
    assert audio_codec.probe(path).duration_s == declared_s
    count, peak = traced_peak(lambda: streamed_count(path))
    assert count == pytest.approx(audio_codec.SAMPLE_RATE, abs=16)
    assert peak < SLACK, peak
    assert audio_codec.duration_s(path, max_duration_s=6 * 3600) == pytest.approx(1, abs=0.01)  # counted


def test_the_duration_is_counted_without_keeping_the_samples(tmp_path: Path) -> None:
    path = live_flac(tmp_path / "live.mka", 600)
    assert audio_codec.probe(path).duration_s is None
    seconds, peak = traced_peak(lambda: audio_codec.duration_s(path, max_duration_s=3600))
    assert seconds == pytest.approx(600, abs=0.1)
    assert peak < SLACK, peak  # 600 s decoded would be 38 MB
    with pytest.raises(AudioTooLongError, match="live.mka is longer than the 60-second limit"):
        audio_codec.duration_s(path, max_duration_s=60)


def test_the_duration_in_the_header_is_taken_when_it_is_within_the_limit(tmp_path: Path) -> None:
    path = silent_audio(tmp_path / "episode.mka", 120)
    assert audio_codec.duration_s(path, max_duration_s=3600) == pytest.approx(120, abs=0.01)
    # A header past the limit is not taken at its word either way: the audio is counted, and is too long.
    with pytest.raises(AudioTooLongError, match="episode.mka is longer than the 60-second limit"):
        audio_codec.duration_s(path, max_duration_s=60)


def one_hertz_wav(folder: Path) -> Path:
    """Ten minutes at 1 Hz: 1.2 KB on disk, 9.6 million samples once resampled to 16 kHz."""
    return silent_audio(folder / "slow.wav", 600, rate=1, container="wav", codec="pcm_s16le")


@pytest.mark.parametrize(
    ("make", "named"),
    [
        (one_hertz_wav, "slow.wav .*sample rate of 1 Hz"),
        (lambda folder: wav_by_hand(folder / "low.wav", 3_999, 1, 3_999), "low.wav .*sample rate of 3,999 Hz"),
        (lambda folder: wav_by_hand(folder / "high.wav", 1_000_000, 1, 1000), "high.wav .*sample rate of 1,000,000 Hz"),
        (lambda folder: wav_by_hand(folder / "wide.wav", 16_000, 100, 1600), "wide.wav .*100 channels"),
    ],
    ids=["1Hz", "3999Hz", "1MHz", "100-channels"],
)
@pytest.mark.parametrize(
    "read",
    [audio_codec.probe, streamed_count, lambda path: audio_codec.duration_s(path, 6 * 3600)],
    ids=["probe", "stream", "duration_s"],
)
def test_absurd_sample_rates_and_channel_counts_are_refused_naming_the_file_and_value(
    tmp_path: Path, make: Callable[[Path], Path], named: str, read: Callable[[Path], object]
) -> None:
    with pytest.raises(AudioDecodeError, match=named):
        read(make(tmp_path))


@pytest.mark.parametrize("rate", [audio_codec.MIN_SAMPLE_RATE, 8_000, 44_100, 48_000, audio_codec.MAX_SAMPLE_RATE])
def test_every_real_sample_rate_is_read(tmp_path: Path, rate: int) -> None:
    path = wav_by_hand(tmp_path / "ok.wav", rate, 2, rate)  # one second, stereo
    assert audio_codec.probe(path).sample_rate == rate
    assert streamed_count(path) == pytest.approx(audio_codec.SAMPLE_RATE, abs=16)


def local_mp3(folder: Path) -> Path:
    """A real MP3 that a hostile file might name: if it were ever opened, a decoder would find samples in it."""
    return silent_audio(folder / "local.mp3", 5, container="mp3", codec="mp3")


REFUSED = {
    "audio.m3u": "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:5,\n{local}\n#EXT-X-ENDLIST\n",  # HLS
    "audio.m3u8": "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:5,\nfile://{local}\n#EXT-X-ENDLIST\n",
    "live.m3u8": "#EXTM3U\n#EXT-X-TARGETDURATION:3600\n#EXTINF:3600,\nhttp://127.0.0.1:9/s.aac\n",  # never ends
    "disguised.mp3": "#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:5,\nlocal.mp3\n#EXT-X-ENDLIST\n",
    "audio.ffconcat": "ffconcat version 1.0\nfile local.mp3\n",  # concat
    "concat.mp3": "ffconcat version 1.0\nfile 'local.mp3'\n",
    "audio.sdp": "v=0\no=- 0 0 IN IP4 127.0.0.1\ns=x\nc=IN IP4 127.0.0.1\nt=0 0\nm=audio 5004 RTP/AVP 0\n",  # RTP
}


@pytest.mark.parametrize("name", REFUSED)
@pytest.mark.parametrize(
    "read",
    [audio_codec.probe, streamed_count, lambda path: audio_codec.duration_s(path, 6 * 3600)],
    ids=["probe", "stream", "duration_s"],
)
def test_playlists_concat_scripts_and_stream_descriptions_are_refused_unread(
    tmp_path: Path, name: str, read: Callable[[Path], object]
) -> None:
    path = tmp_path / name
    path.write_text(REFUSED[name].format(local=local_mp3(tmp_path)))
    refused = "is not in an audio format podflow decodes|is not readable|cannot be decoded: Invalid data"
    with pytest.raises(AudioDecodeError, match=f"{name} ({refused})"):
        read(path)


@pytest.mark.parametrize(
    ("name", "container", "codec"),
    [
        ("a.mp3", "mp3", "mp3"),
        ("a.aac", "adts", "aac"),
        ("a.m4a", "ipod", "aac"),
        ("a.mp4", "mp4", "aac"),
        ("a.oga", "ogg", "flac"),
        ("a.opus", "ogg", "libopus"),
        ("a.wav", "wav", "pcm_s16le"),
        ("a.flac", "flac", "flac"),
        ("a.mka", "matroska", "flac"),
        ("a.webm", "webm", "libopus"),
    ],
)
def test_every_container_podcasts_use_is_decoded(tmp_path: Path, name: str, container: str, codec: str) -> None:
    path = silent_audio(
        tmp_path / name, 2, rate=48_000 if "opus" in codec else 16_000, container=container, codec=codec
    )
    assert streamed_count(path) == pytest.approx(2 * audio_codec.SAMPLE_RATE, rel=0.1)  # AAC adds priming


def test_decoding_past_max_decode_s_is_an_error_naming_the_limit(tmp_path: Path) -> None:
    path = silent_audio(tmp_path / "long.mka", 600)
    with pytest.raises(AudioDecodeError, match=r"long.mka took longer than the max_decode_s=1e-06 limit to decode"):
        sum(piece.size for piece in audio_codec.stream(path, max_decode_s=1e-6))
    with pytest.raises(AudioDecodeError, match="max_decode_s"):
        audio_codec.duration_s(path, max_duration_s=60, max_decode_s=1e-6)
