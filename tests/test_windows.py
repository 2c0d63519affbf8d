"""Long audio in windows: decoded as a stream, cut at pauses, every sample once and in order."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from tasks import audio as audio_codec
from tasks.errors import AudioTooLongError
from tasks.transcribe.windows import SEARCH_FRACTION, frame_power, streamed_power, stretches, windows
from tests.long_episode import write_episode
from tests.speech import decoded

WINDOW_S = 60.0


@pytest.fixture(scope="module")
def episode(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    path = tmp_path_factory.mktemp("long") / "episode.mp3"
    return path, write_episode(path, 200, seed=3)


def test_windows_hold_every_sample_once_in_order_and_are_cut_in_pauses(episode: tuple[Path, list]) -> None:
    path, script = episode
    whole = decoded(path)
    cut = list(windows(audio_codec.stream(path), WINDOW_S))
    assert len(cut) >= 3
    assert np.array_equal(np.concatenate([w.samples for w in cut]), whole)
    starts = [w.start_s for w in cut]
    assert starts[0] == 0 and all(
        later == pytest.approx(w.start_s + w.samples.size / audio_codec.SAMPLE_RATE)
        for w, later in zip(cut, starts[1:])
    )
    for window in cut[:-1]:
        length_s = window.samples.size / audio_codec.SAMPLE_RATE
        assert WINDOW_S * (1 - SEARCH_FRACTION) <= length_s <= WINDOW_S
    # The last is never a short tail: what a fifth more than a window holds is read into it.
    assert (
        WINDOW_S * SEARCH_FRACTION < cut[-1].samples.size / audio_codec.SAMPLE_RATE <= WINDOW_S * (1 + SEARCH_FRACTION)
    )
    for moment in starts[1:]:  # no cut inside a spoken sentence
        assert not [s for s in script if s.start_s < moment < s.end_s], moment


def test_a_window_longer_than_the_audio_is_the_whole_audio(episode: tuple[Path, list]) -> None:
    path, _ = episode
    (only,) = windows(audio_codec.stream(path), 600)
    assert only.start_s == 0 and np.array_equal(only.samples, decoded(path))


def test_the_stream_stops_at_the_duration_limit_whatever_it_has_yielded(episode: tuple[Path, list]) -> None:
    path, _ = episode
    heard = 0
    with pytest.raises(AudioTooLongError, match="longer than the 100-second limit"):
        for piece in audio_codec.stream(path, max_duration_s=100):
            heard += piece.size
    assert heard <= 100 * audio_codec.SAMPLE_RATE


def test_loudness_and_overlapping_stretches_from_a_stream_are_those_of_the_whole_samples(
    episode: tuple[Path, list],
) -> None:
    path, _ = episode
    whole = decoded(path)
    power, count = streamed_power(audio_codec.stream(path))
    assert count == whole.size and np.array_equal(power, frame_power(whole))
    spans = [(0.0, 62.0), (58.0, 122.5), (118.5, 180.0), (176.0, whole.size / audio_codec.SAMPLE_RATE)]
    rate = audio_codec.SAMPLE_RATE
    for (start_s, end_s), samples in zip(spans, stretches(audio_codec.stream(path), spans), strict=True):
        assert np.array_equal(samples, whole[round(start_s * rate) : round(end_s * rate)])
