"""Long episodes: real Whisper on speech built from the sentence banks (tests/long_episode.py): espeak-ng's, and the
sentences of two recordings of human speech.

Windowed transcription adds cuts; each engine's windowed transcript is held against the same engine on the whole
file, sentence by sentence, near every cut. Memory is held flat in the episode's length: the bound a 12-minute
episode (three windows at the default 300 s) is checked against is the 2-minute episode's peak, not a figure that
grows with duration.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tasks import audio as audio_codec
from tasks.models import Episode, Settings, Transcript
from tasks.transcribe.stage import transcribe_audio
from tasks.transcribe.windows import windows
from tests.long_episode import REAL, Spoken, audio_of, compare, heard_sentences, near, write_episode

ROOT = Path(__file__).resolve().parents[1]
WINDOW_S = 60.0  # the smallest the settings allow: cuts every minute
SEAM_S = 15.0  # a sentence lost or repeated this near a cut is the cut's doing
ENGINES: dict[str, dict[str, Any]] = {
    "faster-whisper batched": {"transcriber": "faster-whisper"},
    "faster-whisper classic": {"transcriber": "faster-whisper", "batch_size": 1},
    # openai-whisper runs 10-20x slower here: greedy decoding keeps the suite short.
    "whisper": {"transcriber": "whisper", "beam_size": 1},
}


def transcribed(path: Path, folder: Path, **fields: Any) -> Transcript:
    folder.mkdir()
    return transcribe_audio(
        audio_of(path), Episode(episode_id="long", title="long"), folder, Settings.of(output_dir=folder, **fields)
    )


@pytest.fixture(scope="module")
def episode(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Spoken]]:
    path = tmp_path_factory.mktemp("long") / "episode.mp3"
    return path, write_episode(path, 130, seed=7)


@pytest.mark.parametrize("engine", ENGINES)
def test_no_sentence_is_lost_or_repeated_at_a_cut(
    engine: str, episode: tuple[Path, list[Spoken]], tmp_path: Path
) -> None:
    path, script = episode
    cuts = [w.start_s for w in windows(audio_codec.stream(path), WINDOW_S)][1:]
    assert len(cuts) == 2
    whole = transcribed(path, tmp_path / "whole", transcribe_window_s=600, **ENGINES[engine])
    windowed = transcribed(path, tmp_path / "windowed", transcribe_window_s=WINDOW_S, **ENGINES[engine])
    assert windowed.audio_duration_s == pytest.approx(whole.audio_duration_s, abs=0.001)

    heard_whole, heard_windowed = heard_sentences(whole.segments), heard_sentences(windowed.segments)
    lost_whole, lost_windowed = compare(script, heard_whole), compare(script, heard_windowed)
    at_cuts = near(lost_windowed.missing, cuts, SEAM_S), near(lost_windowed.repeated, cuts, SEAM_S)
    # The whole file is the reference for how well the engine hears; on it, Whisper's classic decoder has lost four
    # sentences in a row here, which the windows (a fresh start every minute) did not.
    assert at_cuts == ([], []), (cuts, at_cuts, lost_whole)
    assert len(lost_windowed.missing) <= len(lost_whole.missing), (lost_windowed, lost_whole)
    assert len(lost_windowed.repeated) <= len(lost_whole.repeated), (lost_windowed, lost_whole)
    # Times are the episode's, not the window's: each sentence is heard in a segment that spans where it was said.
    assert len(heard_windowed) >= 0.9 * len(script)
    for heard in heard_windowed:
        said = [s for s in script if s.sentence == heard.sentence]
        assert any(s.start_s < heard.end_s + 1 and s.end_s > heard.start_s - 1 for s in said), heard


def test_real_speech_is_heard_sentence_by_sentence_none_lost_or_repeated(tmp_path: Path) -> None:
    """Human speech, each sentence said many times over in a random order: the batched decoder's first hearing of a
    stretch sometimes ends early or skips a sentence here, and the rounds after it hear that speech again."""
    path = tmp_path / "real.mp3"
    script = write_episode(path, 150, seed=4, bank=REAL)
    transcript = transcribed(path, tmp_path / "out")
    heard = heard_sentences(transcript.segments, REAL)
    assert compare(script, heard) == ([], [])
    for sentence in heard:  # each where it was said: the rounds' pieces are placed back in the episode's time
        assert any(s.start_s < sentence.end_s + 1 and s.end_s > sentence.start_s - 1 for s in script), sentence


PEAK_RSS = """
import json, resource, sys
from pathlib import Path
from tasks.models import Episode, Settings
from tasks.transcribe.stage import transcribe_audio
from tests.long_episode import audio_of
path, folder = Path(sys.argv[1]), Path(sys.argv[2])
transcript = transcribe_audio(audio_of(path), Episode(episode_id="long", title="long"), folder,
                              Settings.of(output_dir=folder))
print(json.dumps({"peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "seconds": transcript.audio_duration_s, "segments": len(transcript.segments)}))
"""


def peak_rss(path: Path, folder: Path) -> dict[str, float]:
    """The transcribe stage on one episode at default settings, in a process of its own: its peak RSS."""
    folder.mkdir()
    done = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, str(path), str(folder)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        check=True,
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_peak_memory_of_a_12_minute_episode_is_a_2_minute_one(tmp_path: Path) -> None:
    """Whole-file decoding and features took 3.9 GB for an hour; the 12-minute episode would have needed 0.8 GB,
    over ten times what 10% allows. At the default transcribe_window_s (300 s) it is heard in three windows, the
    2-minute one in one. (Smaller windows are no cheaper proof: at 60 s the peak follows what each window holds;
    on one 10-minute episode it rose from 502 MiB after the first window to 619 MiB by the ninth.)"""
    short, long = tmp_path / "short.mp3", tmp_path / "long.mp3"
    write_episode(short, 120, seed=1)
    write_episode(long, 720, seed=2)
    two, twelve = peak_rss(short, tmp_path / "short"), peak_rss(long, tmp_path / "long")
    assert twelve["seconds"] > 710 and twelve["segments"] > 120
    assert twelve["peak_mib"] <= two["peak_mib"] * 1.10, (two, twelve)
