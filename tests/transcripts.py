"""Transcription test helpers: the word error rate a transcript must stay under, an episode for an audio file, the
settings of the published transcriber, and a check that a transcript's files agree."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import srt
import webvtt

from tasks.models import AudioFile, Episode, Settings, Transcript, TranscriptLink

# tiny.en scored 5-14% on these clips when they were made; the bound leaves room, not a free pass.
MAX_WER = 0.3


def episode_of(audio: AudioFile, *links: TranscriptLink) -> Episode:
    return Episode(episode_id=audio.episode_id, title=audio.episode_id, transcripts=links)


def published_settings(settings: Settings, **options: object) -> Settings:
    return settings.but(transcriber="published", **options)


def assert_files_agree(transcript: Transcript, folder: Path) -> None:
    """transcript.txt, .json, .srt and .vtt all hold the same segments; the subtitles parse with real parsers."""
    assert (folder / "transcript.txt").read_text().strip() == transcript.text
    assert Transcript.model_validate_json((folder / "transcript.json").read_bytes()) == transcript
    texts = [segment.text for segment in transcript.segments]
    starts = [round(segment.start, 3) for segment in transcript.segments]
    subtitles = list(srt.parse((folder / "transcript.srt").read_text()))
    assert [cue.content for cue in subtitles] == texts
    assert [cue.start.total_seconds() for cue in subtitles] == pytest.approx(starts, abs=0.0011)
    captions = webvtt.from_buffer(io.StringIO((folder / "transcript.vtt").read_text())).captions
    assert [caption.text for caption in captions] == texts
    assert [caption.start_in_seconds for caption in captions] == sorted(
        caption.start_in_seconds for caption in captions
    )
    assert all(cue.start <= cue.end for cue in subtitles)
