"""SIGKILL the real CLI at random moments of a real run, then let it finish: nothing lost, nothing redone."""

from __future__ import annotations

from pathlib import Path

from tests.crash_resume import run_trials


def test_runs_killed_at_random_moments_then_resumed_lose_and_redo_nothing(tmp_path: Path) -> None:
    report = run_trials(rounds=1, kills_per_round=3, seed=20261127, workdir=tmp_path)

    assert report.problems == []
    assert report.episodes == 8 and report.kills == 3
    assert report.kills_with_work_left >= 1  # else no kill could have lost anything, and the test proved nothing
    assert report.leftovers == []
    assert (report.downloads_redone, report.transcripts_redone, report.complete_episodes_touched) == (0, 0, 0)
