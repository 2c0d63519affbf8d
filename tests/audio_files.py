"""Audio files for tests: silence written by PyAV (a live stream's without a duration), and AudioFile records of
copied or written files."""

from __future__ import annotations

import shutil
from pathlib import Path

import av
import numpy as np

from tasks.files import sha256_of
from tasks.models import AudioFile
from tests.conftest import DEMO_DIR, DemoEpisode


def silent_audio(
    path: Path,
    seconds: float,
    rate: int = 16_000,
    container: str = "matroska",
    codec: str = "flac",
    options: dict[str, str] | None = None,
) -> Path:
    """Silence written by PyAV: tiny on disk whatever its length. `options={"live": "1"}` makes Matroska leave the
    duration out, as a live stream's recording does."""
    with av.open(str(path), "w", format=container, options=options or {}) as output:
        stream = output.add_stream(codec, rate=rate, layout="mono")
        total, step = round(seconds * rate), 4096
        for start in range(0, total, step):
            frame = av.AudioFrame.from_ndarray(
                np.zeros((1, min(step, total - start)), np.int16), format="s16", layout="mono"
            )
            frame.sample_rate, frame.pts = rate, start
            output.mux(stream.encode(frame))
        output.mux(stream.encode(None))
    return path


def live_flac(path: Path, seconds: float) -> Path:
    """FLAC in a Matroska container that gives no duration."""
    return silent_audio(path, seconds, options={"live": "1"})


def live_audio(folder: Path, seconds: float) -> AudioFile:
    """Silent FLAC in a Matroska container that gives no duration, as a recorded live stream has none."""
    path = live_flac(folder / "audio.mka", seconds)
    return AudioFile(
        episode_id="e1",
        path=path,
        source_url="http://127.0.0.1/a.mka",
        bytes=path.stat().st_size,
        sha256=sha256_of(path),
    )


def audio_file(source: Path, folder: Path, episode_id: str) -> AudioFile:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "audio.mp3"
    shutil.copyfile(source, path)
    return AudioFile(
        episode_id=episode_id,
        path=path,
        source_url="http://127.0.0.1/x.mp3",
        bytes=path.stat().st_size,
        sha256=sha256_of(path),
    )


def demo_audio(demo: DemoEpisode, folder: Path) -> AudioFile:
    return audio_file(DEMO_DIR / f"{demo.slug}.mp3", folder, demo.slug)
